"""W&B offline/online/disabled with real processes, read back with wandb's own reader; report.png."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ..conftest import BIN, cli_env, launch, launch_cmd, read_summary, run_cli

pytestmark = pytest.mark.slow  # real launches: subprocesses, multi-process, the SLURM cluster

TINY = ["--set", "data.train_subset=3000", "--epochs", "2", "--set", "train.log_every_steps=5"]


def _records(wandb_file: Path) -> list[dict]:
    """The .wandb transaction log, decoded by wandb itself (`wandb leet inspect --json`)."""
    done = subprocess.run([str(BIN / "wandb"), "leet", "inspect", "--json", str(wandb_file)], capture_output=True,
                          text=True, check=True, env=cli_env())
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _history(records: list[dict]) -> list[dict]:
    return [r["history"]["item"] for r in records if r["type"] == "history"]


def test_offline_two_process_run_writes_exactly_one_wandb_run(mnist_dir: Path, tmp_path: Path):
    proc = launch(2, "train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", "w", "--tracking",
                  "offline", "--set", "tracking.log_model=true", *TINY, cwd=tmp_path, env=cli_env(WANDB_MODE=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "w"
    [wandb_file] = list(run.glob("wandb/offline-run-*/*.wandb"))  # one run, written by one process
    assert not (tmp_path / "wandb").exists()
    records = _records(wandb_file)
    config = next(r["run"]["config"]["update"] for r in records if r["type"] == "run")
    assert config["world_size"] == 2 and config["optim"]["lr"] == 0.003 and "torch" in config["versions"]
    history = _history(records)
    train_steps = [h["_step"] for h in history if "train/loss" in h]
    assert train_steps == list(range(5, 47, 5))
    evals = [h for h in history if "eval/test_accuracy" in h]
    summary = read_summary(run)
    assert [e["eval/test_accuracy"] for e in evals] == [h["test_accuracy"] for h in summary["history"]]
    assert any(h.get("eval/confusion_matrix._type") == "table-file" for h in history)
    assert any(h.get("eval/misclassified._type") == "table-file" for h in history)
    assert summary["tracking"]["mode"] == "offline" and summary["tracking"]["run_id"] in wandb_file.name
    [model] = [r["artifact"] for r in records if r["type"] == "artifact" and r["artifact"]["type"] == "model"]
    assert model["name"] == "model-w"
    assert sorted(c["path"] for c in model["manifest"]["contents"]) == ["meta.json", "model.safetensors"]


def test_stop_and_resume_continue_the_same_wandb_run(mnist_dir: Path, tmp_path: Path):
    args = ["train", "--data-dir", str(mnist_dir), "--output-dir", str(tmp_path), "--run-name", "r", "--tracking",
            "offline", "--set", "data.train_subset=20000", "--epochs", "2", "--set", "train.log_every_steps=5"]
    proc = subprocess.Popen([str(BIN / "python"), "-m", "lenet_dist", *args], cwd=tmp_path, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "r" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 4):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 75
    resumed = run_cli(*args, "--resume", "auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    files = sorted((tmp_path / "r").glob("wandb/offline-run-*/*.wandb"), key=lambda p: p.stat().st_mtime)
    assert len(files) == 2 and len({f.stem for f in files}) == 1, "one W&B run id across the restart"
    steps = [h["_step"] for f in files for h in _history(_records(f)) if "train/loss" in h]
    assert steps == sorted(set(steps)) and steps[-1] == 2 * (20000 // 128) // 5 * 5, "steps continue, no restart"


def test_online_without_network_falls_back_to_offline_quickly(mnist_dir: Path, tmp_path: Path):
    env = cli_env(WANDB_MODE="online", WANDB_API_KEY="x" * 40)
    t0 = time.time()
    proc = run_cli("train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", "o", *TINY, cwd=tmp_path,
                   env=env)
    elapsed = time.time() - t0
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("logging offline instead") == 1
    assert read_summary(tmp_path / "o")["tracking"]["mode"] == "offline"
    assert list((tmp_path / "o").glob("wandb/offline-run-*/*.wandb"))
    assert elapsed < 90, f"{elapsed:.0f}s: tracking must not hang the job"


def test_disabled_writes_nothing_under_wandb(mnist_dir: Path, tmp_path: Path):
    env = cli_env()
    env.pop("WANDB_MODE")
    proc = run_cli("train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", "d", "--tracking",
                   "disabled", *TINY, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("wandb"))
    assert (tmp_path / "d" / "metrics.jsonl").stat().st_size > 0


def test_report_png_is_written_and_regenerated(small_run: Path, tmp_path: Path):
    from PIL import Image

    png = small_run / "report.png"
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width >= 800 and img.height >= 300
    os.unlink(png)
    proc = run_cli("report", small_run, cwd=tmp_path)
    assert proc.returncode == 0 and png.is_file()
    bad = run_cli("report", tmp_path, cwd=tmp_path)
    assert bad.returncode != 0 and "metrics.jsonl" in bad.stderr and "Traceback" not in bad.stderr


def test_a_crashed_attempt_is_failed_in_wandb_and_the_restart_continues_the_same_run(mnist_dir: Path,
                                                                                      tmp_path: Path):
    args = ["train", "--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", "c", "--tracking", "offline",
            *TINY, "--set", "checkpoint.every_steps=5"]
    env = cli_env(WANDB_MODE="", LENET_DIST_FAULT="after-step:12@1")
    proc = subprocess.Popen(launch_cmd(2, *args), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _sigterm_the_survivor_once_it_records_the_failure(tmp_path / "c" / "attempts.jsonl", proc)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "ending this attempt so the job restarts" in stderr, stderr
    resumed = launch(2, *args, "--resume", "auto", cwd=tmp_path, env=cli_env(WANDB_MODE=""))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    files = sorted((tmp_path / "c").glob("wandb/offline-run-*/*.wandb"), key=lambda p: p.stat().st_mtime)
    assert len(files) == 2 and len({f.stem for f in files}) == 1, "one W&B run id across the restart"
    first, second = _records(files[0]), _records(files[1])
    [exit1] = [r["exit"] for r in first if r["type"] == "exit"]
    [exit2] = [r["exit"] for r in second if r["type"] == "exit"]
    assert exit1.get("exit_code", 0) != 0 and exit2.get("exit_code", 0) == 0, (exit1, exit2)
    steps = [h["_step"] for f in (first, second) for h in _history(f) if "train/loss" in h]
    assert steps == sorted(set(steps)) and steps[-1] == 2 * (3000 // 128) // 5 * 5, "its steps continue"
    s = read_summary(tmp_path / "c")
    assert [a["ended"] for a in s["attempts"]] == ["crashed", "completed"] and s["tracking"]["run_id"] in files[0].name


def _sigterm_the_survivor_once_it_records_the_failure(attempts: Path, proc: subprocess.Popen) -> None:
    """The launcher SIGTERMs the surviving workers as soon as it sees one die; the worst moment for it
    to land is just after the survivor noticed, while it is closing W&B. Make it land there."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        records = [json.loads(line) for line in attempts.read_text().splitlines()] if attempts.exists() else []
        if any(r["kind"] == "failure" for r in records):
            os.kill(next(r["pid"] for r in records if r["kind"] == "start"), signal.SIGTERM)
            return
        time.sleep(0.005)
