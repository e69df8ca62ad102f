"""Shared fixtures: the real MNIST files (fetched once through the real fetch chain), a small
trained run, and helpers that run the real CLI and real multi-process launches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LENET_DIST_TEST_DATA", REPO / "data"))
BIN = Path(sys.executable).parent


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", **extra}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m lenet_dist ARGS` as a user would run it."""
    return subprocess.run([sys.executable, "-m", "lenet_dist", *map(str, args)], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A port no one listens on now: fixed or pid-derived ports collide between launches."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_cmd(nproc: int, *args: str, launcher_args: tuple[str, ...] = ()) -> list[str]:
    """`accelerate launch --multi_gpu --num_processes N -m lenet_dist ARGS` (real gloo DDP on CPU)."""
    return [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(nproc),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), *launcher_args, "-m", "lenet_dist", *map(str, args)]


def launch(nproc: int, *args: str, cwd: Path, env: dict | None = None, timeout: float = 600,
           launcher_args: tuple[str, ...] = ()):
    return subprocess.run(launch_cmd(nproc, *args, launcher_args=launcher_args), cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """A user error: non-zero exit, no traceback, and exactly one 'error:' line."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def wait_until_step(metrics: Path, step: int, timeout: float = 120) -> None:
    """Until a running job's metrics.jsonl reaches `step`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if lines and json.loads(lines[-1])["step"] >= step:
            return
        time.sleep(0.1)
    raise AssertionError(f"training never reached step {step}")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    from lenet_dist.data.fetch import ensure_dataset

    ensure_dataset("mnist", DATA_DIR)
    return DATA_DIR


SMALL = ["--set", "data.train_subset=6000", "--set", "tracking.mode=disabled", "--epochs", "1"]


@pytest.fixture(scope="session")
def small_run(mnist_dir: Path, tmp_path_factory) -> Path:
    """A run trained once for the session: 6000 images, 1 epoch, held-out accuracy ~0.9."""
    out = tmp_path_factory.mktemp("runs")
    proc = run_cli("train", "--data-dir", mnist_dir, "--output-dir", out, "--run-name", "small",
                   "--set", "augment.enabled=false", *SMALL, cwd=out)
    assert proc.returncode == 0, proc.stderr
    return out / "small"


@pytest.fixture(scope="session")
def model_dir(mnist_dir: Path, tmp_path_factory) -> Path:
    """The default recipe (augmentation, AdamW, one-cycle), 3 epochs instead of 15 to keep CI short."""
    out = tmp_path_factory.mktemp("predict-runs")
    proc = run_cli("train", "--data-dir", mnist_dir, "--output-dir", out, "--run-name", "m", "--epochs", "3",
                   "--tracking", "disabled", cwd=out)
    assert proc.returncode == 0, proc.stderr
    return out / "m" / "model"
