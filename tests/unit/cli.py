"""Run the real CLI in-process (Typer's CliRunner): the fast tier's way to check what a user sees."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from lenet_dist.cli import app


def invoke(*args: object, cwd: Path | None = None) -> Result:
    here = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(app, [str(a) for a in args], env={"WANDB_MODE": "disabled"})
    finally:
        os.chdir(here)


def one_error_line(result: Result) -> str:
    """A user error: non-zero exit, no traceback, exactly one 'error:' line on stderr."""
    assert result.exit_code not in (0, 1), (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, result.stderr
    return lines[0]
