"""Benchmark lenet-dist against the plain PyTorch MNIST loop, in one run on one machine.

    python jobs/benchmark.py [--data-dir data] [--seeds 3] [--quick] [--out jobs/results/benchmark.json]

Measures (medians where repeated; ratios against the baseline measured in this same run):
  * baseline: torchvision MNIST + ToTensor + DataLoader(batch_size=100, shuffle=True) + Adam(1e-3),
    same LeNet5, epoch by epoch until 99.0% held-out (or --baseline-epochs): images/s, time to 99.0%
  * lenet-dist configs/fast.yaml, 1 process and 2 processes (accelerate launch): train images/s,
    time from process start to the epoch that crosses 99.0%
  * default config: held-out accuracy over --seeds seeds (mean, spread), and Fashion-MNIST once
  * held-out evaluation images/s; `lenet-dist --help` wall time
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET = 0.99


def baseline(data_dir: Path, max_epochs: int) -> dict:
    """The loop the seed project used, run in this process: per-sample PIL → ToTensor → DataLoader."""
    import torch
    import torch.nn.functional as F
    from torchvision import datasets, transforms

    from lenet_dist.data.datasets import MNIST
    from lenet_dist.model import LeNet5

    t_start = time.perf_counter()
    torch.manual_seed(0)
    norm = MNIST.normalization
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((norm.mean,), (norm.std,))])
    train = datasets.MNIST(str(data_dir), train=True, download=False, transform=tf)
    test = datasets.MNIST(str(data_dir), train=False, download=False, transform=tf)
    loader = torch.utils.data.DataLoader(train, batch_size=100, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test, batch_size=1000)
    model = LeNet5()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_seconds, images, history, crossed = 0.0, 0, [], None
    for _ in range(max_epochs):
        model.train()
        t0 = time.perf_counter()
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            images += len(y)
        train_seconds += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in test_loader)
        history.append(correct / len(test))
        if crossed is None and history[-1] >= TARGET:
            crossed = time.perf_counter() - t_start
            break
    return {"train_images_per_second": images / train_seconds, "accuracy_by_epoch": history,
            "seconds_to_99": crossed}


def run_job(args: list[str], workdir: Path, launcher: list[str] | None = None) -> dict:
    """Run a lenet-dist training job as a user would; return its summary plus the outer wall time."""
    cmd = (launcher or [sys.executable, "-m"]) + ["lenet_dist", "train", *args, "--output-dir", str(workdir)]
    env = {**os.environ, "WANDB_MODE": "disabled", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"benchmark job failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    run_dir = max(workdir.iterdir(), key=lambda p: p.stat().st_mtime)
    summary = json.loads((run_dir / "summary.json").read_text())
    # time from process start: the job's own clock starts at package import; the difference between
    # the outer wall time and the job's is interpreter start-up plus exit, counted in (conservative)
    startup = max(0.0, wall - summary["wall_time_seconds"])
    crossing = next((h for h in summary["history"] if h["test_accuracy"] >= TARGET), None)
    summary["seconds_to_99"] = crossing["elapsed_seconds"] + startup if crossing else None
    summary["outer_wall_seconds"] = wall
    summary["run_dir"] = str(run_dir)
    return summary


def eval_rate(model_dir: Path, data_dir: Path, repeats: int = 5) -> float:
    import torch

    from lenet_dist.checkpoint import load_model
    from lenet_dist.data.datasets import MNIST
    from lenet_dist.data.tensors import load_split
    from lenet_dist.training.evaluation import evaluate

    model, _ = load_model(model_dir)
    model = model.to(memory_format=torch.channels_last)
    split = load_split(MNIST, data_dir, "test")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        evaluate(model, split, MNIST, memory_format=torch.channels_last)
        times.append(time.perf_counter() - t0)
    return len(split) / statistics.median(times)


def help_seconds(repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "lenet-dist"), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=REPO / "data")
    p.add_argument("--seeds", type=int, default=3, help="default-config seeds for the accuracy spread")
    p.add_argument("--baseline-epochs", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="skip the default-config and Fashion-MNIST runs")
    p.add_argument("--out", type=Path, default=REPO / "jobs" / "results" / "benchmark.json")
    a = p.parse_args()
    data = ["--data-dir", str(a.data_dir.resolve())]
    for dataset in ("mnist",) if a.quick else ("mnist", "fashion-mnist"):
        subprocess.run([sys.executable, "-m", "lenet_dist", "data", "fetch", "--dataset", dataset, *data], check=True)

    res: dict = {"machine": {"platform": platform.platform(), "cpus": len(os.sched_getaffinity(0)),
                             "python": platform.python_version()}}
    import torch

    res["machine"]["torch"] = torch.__version__
    res["machine"]["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("baseline loop …", flush=True)
        res["baseline"] = baseline(a.data_dir, a.baseline_epochs)
        print("fast.yaml, 1 process …", flush=True)
        fast1 = run_job(["-c", "configs/fast.yaml", *data], tmp / "fast1")
        print("fast.yaml, 2 processes …", flush=True)
        launcher = [str(BIN / "accelerate"), "launch", "--config_file", "configs/accelerate/cpu-2proc.yaml", "-m"]
        if torch.cuda.is_available():
            launcher = [str(BIN / "accelerate"), "launch", "--num_processes", "1", "-m"]
        fast2 = run_job(["-c", "configs/fast.yaml", *data], tmp / "fast2", launcher)
        res["fast_1proc"] = {k: fast1[k] for k in ("train_images_per_second", "seconds_to_99", "test_accuracy",
                                                   "world_size")}
        res["fast_2proc"] = {k: fast2[k] for k in ("train_images_per_second", "seconds_to_99", "test_accuracy",
                                                   "world_size")}
        res["eval_images_per_second"] = eval_rate(Path(fast1["run_dir"]) / "model", a.data_dir)
        if not a.quick:
            accs = []
            for seed in range(a.seeds):
                print(f"default config, seed {seed} …", flush=True)
                accs.append(run_job(["--seed", str(seed), *data], tmp / f"default{seed}")["test_accuracy"])
            res["default_mnist"] = {"accuracies": accs, "mean": statistics.mean(accs),
                                    "spread": max(accs) - min(accs)}
            print("default config, fashion-mnist …", flush=True)
            res["default_fashion_mnist"] = run_job(["--dataset", "fashion-mnist", *data],
                                                   tmp / "fashion")["test_accuracy"]
    res["help_seconds"] = help_seconds()
    base = res["baseline"]["train_images_per_second"]
    res["speedup_1proc"] = res["fast_1proc"]["train_images_per_second"] / base
    res["speedup_2proc"] = res["fast_2proc"]["train_images_per_second"] / base
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print_table(res)


def print_table(res: dict) -> None:
    def fmt(v, spec=".1f"):
        return "—" if v is None else format(v, spec)

    b = res["baseline"]
    rows = [
        ("baseline loop (DataLoader+ToTensor, Adam)", fmt(b["train_images_per_second"], ",.0f"), "1.00x",
         fmt(b["seconds_to_99"]), fmt(b["accuracy_by_epoch"][-1], ".4f")),
    ]
    for key, label in (("fast_1proc", "fast.yaml, 1 process"), ("fast_2proc", "fast.yaml, 2 processes")):
        r = res[key]
        rows.append((label, fmt(r["train_images_per_second"], ",.0f"),
                     f"{r['train_images_per_second'] / b['train_images_per_second']:.2f}x",
                     fmt(r["seconds_to_99"]), fmt(r["test_accuracy"], ".4f")))
    print("| run | train images/s | vs baseline | s to 99.0% (from process start) | final held-out acc |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if "default_mnist" in res:
        d = res["default_mnist"]
        print(f"\ndefault config, MNIST: mean held-out {d['mean']:.4f} over {len(d['accuracies'])} seeds "
              f"(spread {d['spread']:.4f}: {', '.join(f'{x:.4f}' for x in d['accuracies'])}); "
              f"Fashion-MNIST {res['default_fashion_mnist']:.4f}")
    print(f"held-out evaluation: {res['eval_images_per_second']:,.0f} images/s; "
          f"`lenet-dist --help`: {res['help_seconds']:.2f} s; machine: {res['machine']}")


if __name__ == "__main__":
    main()
