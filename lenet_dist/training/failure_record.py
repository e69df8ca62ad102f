"""A deterministic failure ends a launch at its first attempt, whatever the launcher.

torchrun's elastic agent (and `accelerate launch --max_restarts N`) restarts every worker group
that exits non-zero, so a config error, bad data, a divergence or a clean stop would run again N
times. The first attempt that ends this way records its exit code and line in a file keyed by the
launch (the elastic run id, else the agent's pid) on this node; a restarted attempt of the same
launch finds it and exits at once with the same code, before it reads a config or trains anything.
A peer lost (exit 76) or a crash is not recorded: those are what restarts are for.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from lenet_dist.errors import UserError
from lenet_dist.fileio import write_json_atomic


class RecordedFailure(UserError):
    """The failure an earlier attempt of this launch recorded, with its exit code."""

    def __init__(self, exit_code: int, message: str):
        super().__init__(f"{message} (an earlier attempt of this launch ended so; not retried)")
        self.exit_code = exit_code


def marker(launch_key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", launch_key)[:100]
    return Path(tempfile.gettempdir()) / f"lenet-dist-{os.getuid()}" / f"failed-{safe}.json"


def record(launch_key: str, exit_code: int, message: str) -> None:
    path = marker(launch_key)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_json_atomic(path, {"exit_code": exit_code, "message": message})


def forget(launch_key: str) -> None:
    """A new launch (its first attempt) starts clean even if an old launch had the same key."""
    marker(launch_key).unlink(missing_ok=True)


def recorded(launch_key: str) -> RecordedFailure | None:
    try:
        saved = json.loads(marker(launch_key).read_text())
        return RecordedFailure(int(saved["exit_code"]), str(saved["message"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
