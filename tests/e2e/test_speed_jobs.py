"""The speed jobs' probes run against the package as it is (jobs/benchmark.py calls them only after
minutes of training, so a changed signature would first show there): each in a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO, cli_env

pytestmark = pytest.mark.slow


def test_the_step_breakdown_times_every_part_of_a_fast_yaml_step(mnist_dir: Path, tmp_path: Path):
    code = ("import json, sys; sys.path.insert(0, 'jobs'); import speed_probe; from pathlib import Path; "
            f"print(json.dumps(speed_probe.step_breakdown(Path('configs/fast.yaml'), Path({str(mnist_dir)!r}), "
            "steps=3)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    parts = json.loads(proc.stdout.splitlines()[-1])
    assert parts["batch_size"] == 256 and parts["device"] == "cpu"
    assert {"gather", "forward", "backward", "optimizer"} <= parts["ms_per_step"].keys()
    assert all(ms > 0 for ms in parts["ms_per_step"].values())


def test_the_exchange_probe_runs_both_gloo_exchanges_in_two_real_processes(tmp_path: Path):
    out = tmp_path / "exchange.json"
    proc = subprocess.run([sys.executable, "jobs/exchange_probe.py", "--rounds", "1", "--steps", "8", "--batch", "16",
                           "--out", str(out)], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result["exchanges"]) == {"shared memory", "all-gather"}
    for r in result["exchanges"].values():
        assert r["steps"] == 5 and r["after_last_arrival"]["median_ms"] > 0 and r["step"]["median_ms"] > 0
    assert "step speed-up of shared memory" in proc.stdout
