"""Compare finished (or stopped) runs from their summary.json files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lenet_dist.errors import UserError
from lenet_dist.records import RecordError, RunSummary

COLUMNS = ("run_name", "status", "dataset", "world_size", "epochs_completed", "test_accuracy",
           "best_test_accuracy", "train_images_per_second", "wall_time_seconds", "restarts")


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories among `paths`: each a run directory or a folder of them."""
    found = []
    for p in paths:
        if (p / RunSummary.FILE).is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(d for d in p.iterdir() if (d / RunSummary.FILE).is_file()))
    if not found:
        raise UserError(f"no runs (directories with summary.json) under {', '.join(map(str, paths))}")
    return found


def compare(paths: list[Path]) -> list[dict[str, Any]]:
    """One row per run, best held-out accuracy first."""
    rows = []
    for run in find_runs(paths):
        try:
            s = RunSummary.read(run).model_dump(mode="json")
        except RecordError as exc:
            raise UserError(str(exc)) from None
        rows.append({k: s[k] for k in COLUMNS} | {"run_dir": str(run), "config": str(run / "config.yaml")})
    return sorted(rows, key=lambda r: -(r["test_accuracy"] or 0))


def attempt_status(run_dir: Path) -> str:
    """The run's status if this SLURM job attempt wrote its summary, else '' (a stale summary of an
    earlier attempt must not decide what this attempt does); a failed run's status is followed by
    its exit code ("failed 74")."""
    try:
        s = RunSummary.read(run_dir)
    except RecordError:
        return ""
    mine = (s.slurm.get("slurm_job_id") == os.environ.get("SLURM_JOB_ID")
            and s.slurm.get("slurm_restart_count", "0") == os.environ.get("SLURM_RESTART_COUNT", "0"))
    if not mine:
        return ""
    return f"{s.status} {s.exit_code}" if s.status == "failed" and s.exit_code else s.status


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} runs, best held-out accuracy first")
    for col in ("run", "status", "dataset", "world", "epochs", "test acc", "best acc", "train img/s", "wall s"):
        table.add_column(col, justify="left" if col in ("run", "status", "dataset") else "right")

    def num(v, spec):
        return "—" if v is None else format(v, spec)

    for r in rows:
        table.add_row(r["run_name"], r["status"], r["dataset"], str(r["world_size"]), str(r["epochs_completed"]),
                      num(r["test_accuracy"], ".4f"), num(r["best_test_accuracy"], ".4f"),
                      num(r["train_images_per_second"], ",.0f"), num(r["wall_time_seconds"], ".1f"))
    Console(width=120).print(table)
