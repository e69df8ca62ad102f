"""Chaos job: train, and kill or freeze a random rank at a random moment, N times; the job must end
by itself with the weights of an uninterrupted run.

    python jobs/chaos.py [--faults 3] [--processes 2] [--seed 0] [--hang-timeout 10] [--when step|time]

Runs `accelerate launch --max_restarts <faults + 2> --rdzv_backend c10d -m lenet_dist train` on a
3000-image, 3-epoch job (checkpoints every 5 steps), first uninterrupted, then with the faults:
SIGKILL (a crash) or SIGSTOP (a hang, found by checkpoint.hang_timeout_s) to a random worker, each
at a random step of a new attempt (--when step), or at a random moment of it, start-up, evaluation,
checkpoint writes and the end included (--when time: up to the uninterrupted run's duration after
the attempt's workers appear). Prints what it did, the recovery times and whether the final
weights are bit-identical; exit 1 if not. Local processes only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ARGS = ["--set", "data.train_subset=3000", "--epochs", "3", "--set", "checkpoint.every_steps=5", "--seed", "3",
        "--set", "train.log_every_steps=1", "--tracking", "disabled"]


def _launch(nproc: int, out: Path, restarts: int, hang: float, data: Path) -> subprocess.Popen:
    port = str(random.randint(20000, 40000))
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(nproc), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
           "--max_restarts", str(restarts), "--rdzv_backend", "c10d", "-m", "lenet_dist", "train", "--data-dir",
           str(data), "--output-dir", str(out), "--run-name", "run", *ARGS, "--set",
           f"checkpoint.hang_timeout_s={hang}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(cmd, cwd=out, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _step(metrics: Path) -> int:
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    return json.loads(lines[-1])["step"] if lines else 0


def _workers(restart: int) -> list[int]:
    """The training workers of the group the elastic agent restarted `restart` times."""
    from lenet_dist.faults import processes_with

    return [pid for pid in processes_with({"TORCHELASTIC_RESTART_COUNT": str(restart)})
            if b"RANK=" in Path(f"/proc/{pid}/environ").read_bytes()]


def _starts(run: Path) -> list[dict]:
    lines = (run / "attempts.jsonl").read_text().splitlines() if (run / "attempts.jsonl").exists() else []
    return [r for r in map(json.loads, lines) if r["kind"] == "start"]


def _at_a_step(run: Path, job: subprocess.Popen, rng: random.Random, fault: int, _: float):
    """The workers of attempt `fault`, once it has trained 2-20 steps further."""
    while len(_starts(run)) <= fault and job.poll() is None:
        time.sleep(0.1)
    at = _step(run / "metrics.jsonl") + rng.randint(2, 20)
    while _step(run / "metrics.jsonl") < at and job.poll() is None:
        time.sleep(0.05)
    return _workers(fault), f"at step {_step(run / 'metrics.jsonl')}"


def _at_a_moment(run: Path, job: subprocess.Popen, rng: random.Random, fault: int, clean: float):
    """The workers of attempt `fault`, a random moment (up to an uninterrupted run's length) after
    they appear: while importing, joining the group, loading, training, evaluating or saving."""
    while len(_workers(fault)) == 0 and job.poll() is None:
        time.sleep(0.05)
    wait = rng.uniform(0, clean)
    time.sleep(wait)
    return _workers(fault), f"{wait:.1f} s after its attempt's workers appeared (step {_step(run / 'metrics.jsonl')})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faults", type=int, default=3)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hang-timeout", type=float, default=10.0)
    p.add_argument("--data-dir", type=Path, default=REPO / "data")
    p.add_argument("--when", choices=["step", "time"], default="step")
    a = p.parse_args()
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ref, out = Path(tmp) / "ref", Path(tmp) / "chaos"
        ref.mkdir()
        out.mkdir()
        t0 = time.time()
        assert _launch(a.processes, ref, 0, a.hang_timeout, a.data_dir).wait() == 0, "the reference run failed"
        clean = time.time() - t0
        job, t0, stopped = _launch(a.processes, out, a.faults + 3, a.hang_timeout, a.data_dir), time.time(), []
        for fault in range(a.faults):
            victims, where = (_at_a_step if a.when == "step" else _at_a_moment)(out / "run", job, rng, fault, clean)
            if job.poll() is not None or not victims:
                print(f"fault {fault + 1}: the job had already finished; stopping the faults here")
                break
            pid, how = rng.choice(victims), rng.choice([signal.SIGKILL, signal.SIGSTOP])
            os.kill(pid, how)
            stopped += [pid] if how == signal.SIGSTOP else []
            print(f"fault {fault + 1}: {how.name} to worker pid {pid} {where}")
            while job.poll() is None and not _workers(fault + 1):  # until the launcher restarts the group
                time.sleep(0.1)
        code = job.wait(timeout=1800)
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        chaos = time.time() - t0
        same = (out / "run" / "model" / "model.safetensors").read_bytes() == \
            (ref / "run" / "model" / "model.safetensors").read_bytes() if code == 0 else False
        attempts = json.loads((out / "run" / "summary.json").read_text())["attempts"] if code == 0 else []
        print(f"uninterrupted {clean:.1f} s; with faults {chaos:.1f} s, exit {code}, {len(attempts)} attempts; "
              f"final weights {'bit-identical' if same else 'DIFFERENT'}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
