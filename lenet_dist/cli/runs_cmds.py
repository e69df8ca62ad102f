"""Looking at runs: `report` (redraw report.png), `runs compare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lenet_dist.cli.app import JsonOpt, app, runs_app


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """(Re)draw <run>/report.png from metrics.jsonl: loss and accuracy per epoch, confusion matrix."""
    from lenet_dist.tracking.report import write_report

    typer.echo(f"wrote {write_report(run_dir)}")


@runs_app.command("compare")
def runs_compare(
    paths: Annotated[list[Path], typer.Argument(help="run directories, or folders of them (e.g. runs/)")],
    as_json: JsonOpt = False,
) -> None:
    """A table of runs (a sweep's, say) from their summary.json, best held-out accuracy first."""
    from lenet_dist.tracking.runs import compare, print_table

    rows = compare(paths)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        print_table(rows)


@runs_app.command("status", hidden=True)
def runs_status(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Print the run's status if this SLURM attempt wrote its summary.json (slurm/train.sh asks)."""
    from lenet_dist.tracking.runs import attempt_status

    typer.echo(attempt_status(run_dir))
