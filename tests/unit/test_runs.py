"""`runs compare` and the SLURM script's status question, from real summary.json files."""

from pathlib import Path

import pytest

from lenet_dist.errors import UserError
from lenet_dist.tracking.runs import attempt_status, compare

from .test_records import _summary


def test_runs_are_compared_best_first(tmp_path: Path):
    for name, acc in [("low", 0.9), ("high", 0.99), ("stopped", None)]:
        (tmp_path / name).mkdir()
        _summary(run_name=name, test_accuracy=acc, status="completed" if acc else "stopped").write(tmp_path / name)
    rows = compare([tmp_path])
    assert [r["run_name"] for r in rows] == ["high", "low", "stopped"]
    assert rows[0]["config"].endswith("high/config.yaml")


def test_no_runs_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="no runs"):
        compare([tmp_path])


def test_a_broken_summary_is_a_user_error_naming_it(tmp_path: Path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "summary.json").write_text("{}")
    with pytest.raises(UserError, match="summary.json"):
        compare([tmp_path])


def test_only_this_slurm_attempts_summary_counts(tmp_path: Path, monkeypatch):
    _summary(status="stopped", slurm={"slurm_job_id": "7", "slurm_restart_count": "1"}).write(tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert attempt_status(tmp_path) == "stopped"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert attempt_status(tmp_path) == "", "an earlier attempt's summary"
    assert attempt_status(tmp_path / "missing") == ""
