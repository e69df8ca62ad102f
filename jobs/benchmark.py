"""Benchmark lenet-dist against the seed's own loop, in one run on one machine (CPU or one GPU).

    python jobs/benchmark.py [--data-dir data] [--seeds 3] [--quick] [--out jobs/results/benchmark.json]
    python jobs/benchmark.py --only best [--seeds 3] [--fashion-seeds 1] [--pause 60]   # best.yaml alone

Measures (medians where repeated; every ratio is against loops measured in this same run, in turn,
so each compares like moments of a noisy machine):
  * the seed's own loop (jobs/seed_loop.py), once before each fast.yaml seed: training images/s
  * baseline: torchvision MNIST + ToTensor + Normalize + DataLoader(100, shuffle) + Adam(1e-3), our
    LeNet5, epoch by epoch until 99.0% held-out (or --baseline-epochs)
  * configs/fast.yaml, 1 process, per seed: as shipped (train.cpu_speedups on) and stock (off)
  * configs/fast.yaml, 2 processes (accelerate launch; on a GPU machine 1 process on the GPU)
  * the compute bound: LeNet5's training FLOPs per image against this machine's matmul peak
  * unless --quick: the default config's held-out accuracy over --seeds seeds, Fashion-MNIST once
  * held-out evaluation images/s; `lenet-dist --help` wall time
  * configs/best.yaml: held-out MNIST per seed (mean, spread, wall time each), Fashion-MNIST per seed
    (--only best runs just this and updates its entry in --out)
On a GPU machine the same command is the GPU benchmark (CUDA_VISIBLE_DEVICES picks the card).
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
FAST_KEYS = ("train_images_per_second", "seconds_to_99", "test_accuracy", "world_size", "mixed_precision")


def baseline(data_dir: Path, max_epochs: int) -> dict:
    """A plain PyTorch loop with our LeNet5: per-sample PIL → ToTensor → DataLoader, in this process."""
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
        if history[-1] >= TARGET:
            crossed = time.perf_counter() - t_start
            break
    return {"train_images_per_second": images / train_seconds, "accuracy_by_epoch": history,
            "seconds_to_99": crossed}


def seed_loop(data_dir: Path) -> float:
    out = subprocess.run([sys.executable, str(REPO / "jobs" / "seed_loop.py"), "--data-dir", str(data_dir)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["train_images_per_second"]


def run_job(args: list[str], workdir: Path, launcher: list[str] | None = None) -> dict:
    """Run a lenet-dist training job as a user would; return its summary plus the outer wall time."""
    cmd = (launcher or [sys.executable, "-m"]) + ["lenet_dist", "train", *args, "--output-dir", str(workdir)]
    env = {**os.environ, "WANDB_MODE": "disabled", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    launched_at, t0 = time.time(), time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"benchmark job failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    run_dir = max(workdir.iterdir(), key=lambda p: p.stat().st_mtime)
    summary = json.loads((run_dir / "summary.json").read_text())
    # the job's clock starts when the package is imported (summary's started_at); the launch came before
    before_import = max(0.0, summary["started_at"] - launched_at)
    crossing = next((h for h in summary["history"] if h["test_accuracy"] >= TARGET), None)
    summary["seconds_to_99"] = crossing["elapsed_seconds"] + before_import if crossing else None
    summary["outer_wall_seconds"] = wall
    summary["run_dir"] = str(run_dir)
    return summary


def best_rows(data: list[str], tmp: Path, seeds: int, fashion_seeds: int, pause: float = 0) -> dict:
    """configs/best.yaml, one run after another (nothing else running): accuracy and wall time. Each
    run starts after `pause` idle seconds: a small VM held at full load for many minutes slows down,
    and the budget is for one run on an otherwise idle machine."""
    out = {}
    for dataset, n in (("mnist", seeds), ("fashion-mnist", fashion_seeds)):
        runs = []
        for seed in range(n):
            time.sleep(pause)
            print(f"best.yaml, {dataset}, seed {seed} …", flush=True)
            r = run_job(["-c", "configs/best.yaml", "--dataset", dataset, "--seed", str(seed), *data],
                        tmp / f"best-{dataset}-s{seed}")
            runs.append({"seed": seed, "test_accuracy": r["test_accuracy"], "wall_seconds": r["outer_wall_seconds"],
                         "evaluated_on": r["evaluated_on"]})
        accs = [r["test_accuracy"] for r in runs]
        out[dataset] = {"runs": runs, "mean": statistics.mean(accs), "spread": max(accs) - min(accs),
                        "max_wall_seconds": max(r["wall_seconds"] for r in runs)}
    return out


def median_row(runs: list[dict]) -> dict:
    return {"train_images_per_second": statistics.median(r["train_images_per_second"] for r in runs),
            "test_accuracy": statistics.median(r["test_accuracy"] for r in runs),
            "runs": [{k: r[k] for k in FAST_KEYS} for r in runs]}


def fast_rows(data: list[str], data_dir: Path, tmp: Path, seeds: int, cuda: bool) -> dict:
    two = [str(BIN / "accelerate"), "launch", "--config_file", "configs/accelerate/cpu-2proc.yaml", "-m"]
    if cuda:
        two = [str(BIN / "accelerate"), "launch", "--num_processes", "1", "-m"]
    rows: dict[str, list] = {"seed_loop": [], "fast": [], "fast_stock": [], "fast_2proc": []}
    fast = ["-c", "configs/fast.yaml"]
    for seed in range(seeds):
        s = ["--seed", str(seed), *data]
        print(f"seed {seed}: the seed's loop, fast.yaml as shipped, stock, 2 processes …", flush=True)
        rows["seed_loop"].append(seed_loop(data_dir))
        rows["fast"].append(run_job([*fast, *s], tmp / f"fast-s{seed}"))
        rows["fast_stock"].append(run_job([*fast, "--set", "train.cpu_speedups=false", *s], tmp / f"stock-s{seed}"))
        rows["fast_2proc"].append(run_job([*fast, *s], tmp / f"two-s{seed}", two))
    out = {"seed_loop": {"train_images_per_second": statistics.median(rows["seed_loop"]), "runs": rows["seed_loop"]}}
    out.update({k: median_row(v) for k, v in rows.items() if k != "seed_loop"})
    out["fast"]["runs_reaching_99"] = sum(r["test_accuracy"] >= TARGET for r in rows["fast"])
    out["model_dir"] = str(Path(rows["fast"][0]["run_dir"]) / "model")
    return out


def compute_bound(precision: str, cuda: bool) -> dict:
    """LeNet5's training FLOPs per image (forward multiply-adds x 2 x 3 for forward, input and weight
    gradients, less the first layer's input gradient) against a square matmul's FLOP/s."""
    import torch
    from torch import nn

    from lenet_dist.model import LeNet5

    macs: list[int] = []
    model = LeNet5()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda mod, i, o: macs.append(o[0].numel() * mod.in_channels * 25))
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(lambda mod, i, o: macs.append(mod.in_features * mod.out_features))
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    flops = 2.0 * (3 * sum(macs) - macs[0])
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    dev, n = (torch.device("cuda"), 4096) if cuda else (torch.device("cpu"), 1024)
    a, b = torch.randn(n, n, dtype=dtype, device=dev), torch.randn(n, n, dtype=dtype, device=dev)
    times = []
    for _ in range(6):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = 2 * n**3 / statistics.median(times[1:])
    return {"train_flops_per_image": flops, "matmul_peak_flops": peak, "precision": precision,
            "bound_images_per_second": peak / flops}


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
    p.add_argument("--seeds", type=int, default=3, help="seeds for fast.yaml and the default config")
    p.add_argument("--baseline-epochs", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="skip the default-config and Fashion-MNIST runs")
    p.add_argument("--out", type=Path, default=REPO / "jobs" / "results" / "benchmark.json")
    p.add_argument("--only", choices=("all", "best"), default="all")
    p.add_argument("--fashion-seeds", type=int, default=1, help="seeds of best.yaml on Fashion-MNIST")
    p.add_argument("--pause", type=float, default=60, help="idle seconds before each best.yaml run")
    a = p.parse_args()
    data = ["--data-dir", str(a.data_dir.resolve())]
    if a.only == "best":
        for dataset in ("mnist", "fashion-mnist"):
            subprocess.run([sys.executable, "-m", "lenet_dist", "data", "fetch", "--dataset", dataset, *data],
                           check=True)
        res = json.loads(a.out.read_text()) if a.out.exists() else {}
        with tempfile.TemporaryDirectory() as tmp:
            res["best"] = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", *sys.argv]),
                           "cpus": len(os.sched_getaffinity(0)),
                           "pause_seconds": a.pause, **best_rows(data, Path(tmp), a.seeds, a.fashion_seeds, a.pause)}
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps(res["best"], indent=2))
        return
    for dataset in ("mnist",) if a.quick else ("mnist", "fashion-mnist"):
        subprocess.run([sys.executable, "-m", "lenet_dist", "data", "fetch", "--dataset", dataset, *data], check=True)
    import torch

    cuda = torch.cuda.is_available()
    res: dict = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", *sys.argv]),
                 "machine": {"platform": platform.platform(), "cpus": len(os.sched_getaffinity(0)),
                             "python": platform.python_version(), "torch": torch.__version__,
                             "gpu": torch.cuda.get_device_name(0) if cuda else None}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("baseline loop …", flush=True)
        res["baseline"] = baseline(a.data_dir, a.baseline_epochs)
        res.update(fast_rows(data, a.data_dir, tmp, a.seeds, cuda))
        res["eval_images_per_second"] = eval_rate(Path(res.pop("model_dir")), a.data_dir)
        res["compute_bound"] = compute_bound(res["fast"]["runs"][0]["mixed_precision"], cuda)
        if not a.quick:
            accs = []
            for seed in range(a.seeds):
                print(f"default config, seed {seed} …", flush=True)
                accs.append(run_job(["--seed", str(seed), *data], tmp / f"default{seed}")["test_accuracy"])
            res["default_mnist"] = {"accuracies": accs, "mean": statistics.mean(accs), "spread": max(accs) - min(accs)}
            print("default config, fashion-mnist …", flush=True)
            res["default_fashion_mnist"] = run_job(["--dataset", "fashion-mnist", *data],
                                                   tmp / "fashion")["test_accuracy"]
            res["best"] = best_rows(data, tmp, a.seeds, a.fashion_seeds, a.pause)
    res["help_seconds"] = help_seconds()
    ref = res["seed_loop"]["train_images_per_second"]
    res["ratios"] = {k: res[k]["train_images_per_second"] / ref for k in ("baseline", "fast", "fast_stock",
                                                                           "fast_2proc")}
    res["ratios"]["two_vs_one_process"] = res["fast_2proc"]["train_images_per_second"] / \
        res["fast"]["train_images_per_second"]
    res["ratios"]["cpu_speedups_vs_stock"] = res["fast"]["train_images_per_second"] / \
        res["fast_stock"]["train_images_per_second"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print_table(res)


def print_table(res: dict) -> None:
    ref = res["seed_loop"]["train_images_per_second"]
    rows = [("the seed's own loop (1 epoch)", res["seed_loop"], None),
            ("baseline loop (DataLoader+ToTensor+Normalize, Adam)", res["baseline"],
             res["baseline"]["accuracy_by_epoch"][-1]),
            ("fast.yaml, 1 process, as shipped (cpu_speedups on)", res["fast"], res["fast"]["test_accuracy"]),
            ("fast.yaml, 1 process, stock (cpu_speedups off)", res["fast_stock"], res["fast_stock"]["test_accuracy"]),
            ("fast.yaml, 2 processes" if res["machine"]["gpu"] is None else "fast.yaml, 1 GPU process",
             res["fast_2proc"], res["fast_2proc"]["test_accuracy"])]
    print(f"\n{res['date']}, {res['machine']}\n`{res['command']}`\n")
    print("| run | train images/s (median) | vs seed's loop | final held-out acc (median) |")
    print("|---|---:|---:|---:|")
    for label, row, acc in rows:
        rate = row["train_images_per_second"]
        print(f"| {label} | {rate:,.0f} | {rate / ref:.2f}x | {'—' if acc is None else format(acc, '.4f')} |")
    cb = res["compute_bound"]
    print(f"\ncompute bound: {cb['train_flops_per_image'] / 1e6:.2f} MFLOP per training image, matmul peak "
          f"{cb['matmul_peak_flops'] / 1e9:.0f} GFLOP/s ({cb['precision']}) -> {cb['bound_images_per_second']:,.0f} "
          f"images/s")
    print(f"fast.yaml runs reaching 99.0%: {res['fast']['runs_reaching_99']} of {len(res['fast']['runs'])}; "
          f"2 processes vs 1: {res['ratios']['two_vs_one_process']:.2f}x; cpu_speedups vs stock: "
          f"{res['ratios']['cpu_speedups_vs_stock']:.2f}x")
    if "default_mnist" in res:
        d = res["default_mnist"]
        print(f"default config, MNIST: mean held-out {d['mean']:.4f} over {len(d['accuracies'])} seeds "
              f"({', '.join(f'{x:.4f}' for x in d['accuracies'])}); Fashion-MNIST {res['default_fashion_mnist']:.4f}")
    for dataset, b in ((d, res["best"][d]) for d in ("mnist", "fashion-mnist") if d in res.get("best", {})):
        runs = ", ".join(f"seed {r['seed']} {r['test_accuracy']:.4f} in {r['wall_seconds']:.0f} s" for r in b["runs"])
        print(f"best.yaml, {dataset}: mean held-out {b['mean']:.4f} (spread {b['spread']:.4f}): {runs}")
    print(f"held-out evaluation: {res['eval_images_per_second']:,.0f} images/s; "
          f"`lenet-dist --help`: {res['help_seconds']:.2f} s")


if __name__ == "__main__":
    main()
