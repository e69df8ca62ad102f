"""Benchmark lenet-dist against the plain PyTorch MNIST loop, in one run on one machine.

    python jobs/benchmark.py [--data-dir data] [--seeds 3] [--quick] [--out jobs/results/benchmark.json]

Measures (medians where repeated; ratios against loops measured in this same run):
  * the seed's own loop (jobs/speed_probe.py: its LeNet, per-sample ToTensor, DataLoader(100), Adam,
    one epoch), once before each fast.yaml seed: training images/s (median) — the speed-up's reference
  * baseline: torchvision MNIST + ToTensor + Normalize + DataLoader(batch_size=100, shuffle=True) +
    Adam(1e-3), our LeNet5, epoch by epoch until 99.0% held-out (or --baseline-epochs)
  * lenet-dist configs/fast.yaml, 1 process with --seeds seeds, and 2 processes (accelerate launch):
    train images/s, seconds from process start (the benchmark's clock at launch) to the end of the
    evaluation that crosses 99.0%, and where start-up goes (imports … first optimizer step)
  * one fast.yaml step split into its parts (batch, augmentation, forward, backward, optimizer), and
    the compute bound: training FLOPs per image against this machine's matmul peak
  * without a GPU, the 2-process gradient exchange (jobs/exchange_probe.py): shared memory against
    gloo's all-gather, after the last rank's arrival and per step
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
sys.path.insert(0, str(REPO / "jobs"))
import speed_probe  # noqa: E402  (a sibling script, not a package)

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
    launched_at, t0 = time.time(), time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"benchmark job failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    run_dir = max(workdir.iterdir(), key=lambda p: p.stat().st_mtime)
    summary = json.loads((run_dir / "summary.json").read_text())
    # the job's clock starts when the package is imported (summary's started_at); the launch came
    # before that (interpreter start-up, a launcher): counted in, from this process's launch time
    before_import = max(0.0, summary["started_at"] - launched_at)
    crossing = next((h for h in summary["history"] if h["test_accuracy"] >= TARGET), None)
    summary["seconds_to_99"] = crossing["elapsed_seconds"] + before_import if crossing else None
    summary["startup_seconds"] = {"interpreter": round(before_import, 4),
                                  **{k: round(v + before_import, 4) for k, v in summary["startup_seconds"].items()}}
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


FAST_KEYS = ("train_images_per_second", "seconds_to_99", "test_accuracy", "world_size", "startup_seconds")


def fast_rows(data: list[str], data_dir: Path, tmp: Path, seeds: int, cuda: bool) -> dict:
    """configs/fast.yaml with each seed: the seed's own loop, 1 process, 2 processes (1 on a GPU
    machine here), in turn, so each ratio of medians compares like moments of a noisy machine (one
    seed-loop run here has read 5.5k and 7.6k images/s an hour apart)."""
    launcher = [str(BIN / "accelerate"), "launch", "--config_file", "configs/accelerate/cpu-2proc.yaml", "-m"]
    if cuda:
        launcher = [str(BIN / "accelerate"), "launch", "--num_processes", "1", "-m"]
    runs, seed_loops, twos = [], [], []
    for seed in range(seeds):
        print(f"the seed's own loop, run {seed + 1} …", flush=True)
        seed_loops.append(speed_probe.seed_loop(data_dir))
        print(f"fast.yaml, 1 process, seed {seed} …", flush=True)
        runs.append(run_job(["-c", "configs/fast.yaml", "--seed", str(seed), *data], tmp / f"fast-s{seed}"))
        print(f"fast.yaml, 2 processes, seed {seed} …", flush=True)
        twos.append(run_job(["-c", "configs/fast.yaml", "--seed", str(seed), *data], tmp / f"fast2-s{seed}", launcher))
    two = sorted(twos, key=lambda r: r["train_images_per_second"])[len(twos) // 2]  # the median run
    crossings = [r["seconds_to_99"] for r in runs]
    one = {"runs": [{k: r[k] for k in FAST_KEYS} for r in runs],
           "train_images_per_second": statistics.median(r["train_images_per_second"] for r in runs),
           "seconds_to_99": statistics.median(c if c is not None else float("inf") for c in crossings),
           "runs_within_8s": sum(c is not None and c <= 8.0 for c in crossings),
           "test_accuracy": statistics.median(r["test_accuracy"] for r in runs),
           "startup_seconds": runs[len(runs) // 2]["startup_seconds"], "world_size": 1,
           "run_dir": runs[0]["run_dir"]}
    rates = [r["train_images_per_second"] for r in seed_loops]
    seed_loop = {**seed_loops[0], "train_images_per_second": statistics.median(rates), "runs": rates}
    return {"seed_loop": seed_loop, "fast_1proc": one,
            "fast_2proc": {**{k: two[k] for k in FAST_KEYS}, "runs": [r["train_images_per_second"] for r in twos]}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=REPO / "data")
    p.add_argument("--seeds", type=int, default=3, help="seeds for fast.yaml and the default config")
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
        res.update(fast_rows(data, a.data_dir, tmp, a.seeds, torch.cuda.is_available()))
        res["eval_images_per_second"] = eval_rate(Path(res["fast_1proc"].pop("run_dir")) / "model", a.data_dir)
        print("one fast.yaml step, part by part …", flush=True)
        res["fast_step"] = speed_probe.step_breakdown(REPO / "configs" / "fast.yaml", a.data_dir.resolve())
        res["compute_bound"] = speed_probe.compute_bound(res["fast_step"]["precision"], res["fast_step"]["device"])
        if not torch.cuda.is_available():
            print("the 2-process gradient exchange …", flush=True)
            subprocess.run([sys.executable, str(REPO / "jobs" / "exchange_probe.py"), "--rounds", "3", "--out",
                            str(tmp / "exchange.json")], check=True, capture_output=True)
            res["exchange"] = json.loads((tmp / "exchange.json").read_text())
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
    fast = res["fast_1proc"]["train_images_per_second"]
    res["speedup_vs_seed_loop"] = fast / res["seed_loop"]["train_images_per_second"]
    res["speedup_vs_baseline"] = fast / res["baseline"]["train_images_per_second"]
    res["two_vs_one_process"] = res["fast_2proc"]["train_images_per_second"] / fast
    res["fraction_of_compute_bound"] = fast / res["compute_bound"]["bound_images_per_second"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print_table(res)


def print_table(res: dict) -> None:
    def fmt(v, spec=".1f"):
        return "—" if v is None or v == float("inf") else format(v, spec)

    ref = res["seed_loop"]["train_images_per_second"]
    b, f1, f2 = res["baseline"], res["fast_1proc"], res["fast_2proc"]
    rows = [(f"the seed's own loop (1 epoch, median of {len(res['seed_loop']['runs'])})", ref, "—", None),
            ("baseline loop (DataLoader+ToTensor+Normalize, Adam)", b["train_images_per_second"],
             b["seconds_to_99"], b["accuracy_by_epoch"][-1]),
            (f"fast.yaml, 1 process (median of {len(f1['runs'])} seeds)", f1["train_images_per_second"],
             f1["seconds_to_99"], f1["test_accuracy"]),
            (f"fast.yaml, 2 processes (median of {len(f2['runs'])} seeds)", f2["train_images_per_second"],
             f2["seconds_to_99"], f2["test_accuracy"])]
    print("| run | train images/s | vs seed's loop | s to 99.0% (from process start) | final held-out acc |")
    print("|---|---:|---:|---:|---:|")
    for label, rate, secs, acc in rows:
        print(f"| {label} | {rate:,.0f} | {rate / ref:.2f}x | {fmt(secs) if secs != '—' else secs} | "
              f"{fmt(acc, '.4f')} |")
    per_seed = ", ".join(f"{fmt(r['seconds_to_99'])} s ({r['test_accuracy']:.4f})" for r in f1["runs"])
    print(f"\nfast.yaml per seed, to 99.0%: {per_seed}; within 8 s: {f1['runs_within_8s']} of {len(f1['runs'])}")
    print("start-up (s since launch, median seed): " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                                 f1["startup_seconds"].items()))
    st = res["fast_step"]
    print(f"one step, batch {st['batch_size']}, {st['precision']} on {st['device']} (ms): "
          + ", ".join(f"{k} {v:.2f}" for k, v in st["ms_per_step"].items())
          + f"; sum {st['sum_ms']:.2f} ms = {st['images_per_second_of_parts']:,.0f} images/s; the loop's other "
          f"work (framework, logging, checks) is the rest of the 1-process rate")
    cb = res["compute_bound"]
    print(f"compute bound: {cb['train_flops_per_image'] / 1e6:.2f} MFLOP per training image, matmul peak "
          f"{cb['matmul_peak_flops'] / 1e9:.0f} GFLOP/s ({cb['precision']}) -> {cb['bound_images_per_second']:,.0f} "
          f"images/s; fast.yaml reaches {res['fraction_of_compute_bound']:.0%} of it")
    print(f"2 processes vs 1: {res['two_vs_one_process']:.2f}x; vs baseline loop: {res['speedup_vs_baseline']:.2f}x")
    if "exchange" in res:
        shm, gloo = (res["exchange"]["exchanges"][k] for k in ("shared memory", "all-gather"))
        print(f"2-process gradient exchange, after the last rank arrives (median / p90 ms): shared memory "
              f"{shm['after_last_arrival']['median_ms']:.2f} / {shm['after_last_arrival']['p90_ms']:.2f}, gloo "
              f"all-gather {gloo['after_last_arrival']['median_ms']:.2f} / {gloo['after_last_arrival']['p90_ms']:.2f}; "
              f"a step {res['exchange']['step_speedup_of_shared_memory']:.2f}x faster with shared memory")
    if "default_mnist" in res:
        d = res["default_mnist"]
        print(f"default config, MNIST: mean held-out {d['mean']:.4f} over {len(d['accuracies'])} seeds "
              f"(spread {d['spread']:.4f}: {', '.join(f'{x:.4f}' for x in d['accuracies'])}); "
              f"Fashion-MNIST {res['default_fashion_mnist']:.4f}")
    print(f"held-out evaluation: {res['eval_images_per_second']:,.0f} images/s; "
          f"`lenet-dist --help`: {res['help_seconds']:.2f} s; machine: {res['machine']}")


if __name__ == "__main__":
    main()
