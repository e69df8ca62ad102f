"""The gradient exchange between 2 CPU processes: shared memory against gloo's all-gather.

    python jobs/exchange_probe.py [--rounds 6] [--steps 60] [--batch 128] [--out jobs/results/exchange_probe.json]

Starts 2 gloo processes (torch.distributed.run, one thread each, as `accelerate launch` on 2 cores).
Each trains a DDP LeNet5 on random images in bf16 autocast, fast.yaml's per-rank batch, with the
exchange that lenet-dist registers (lenet_dist.training.gradient_sync), in alternating rounds of
each. Per step: the whole step's wall time and the time from the later rank's arrival at the
exchange to the earlier rank's return (clocks are shared: one machine). Prints medians, means and
p90s per exchange and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXCHANGES = ("shared memory", "all-gather")


def worker(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from lenet_dist.model import LeNet5
    from lenet_dist.training import gradient_sync
    from lenet_dist.training.distributed import close_distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    inside: list[tuple[float, float]] = []

    def timed(hook):  # registered in its place: when this rank entered the exchange and left it
        def wrapper(state, bucket):
            entered = time.perf_counter()
            result = hook(state, bucket)
            inside.append((entered, time.perf_counter()))
            return result
        return wrapper

    gradient_sync._shared_memory_mean = timed(gradient_sync._shared_memory_mean)
    gradient_sync._all_gather_mean = timed(gradient_sync._all_gather_mean)
    models = {}
    for exchange in EXCHANGES:
        torch.manual_seed(0)
        models[exchange] = DistributedDataParallel(LeNet5().to(memory_format=torch.channels_last))
        used = gradient_sync.gather_gradients_on_gloo(models[exchange], shared_memory=exchange == EXCHANGES[0])
        assert used == exchange, used
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(args.batch, 1, 28, 28, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    stamps: dict[str, list] = {e: [] for e in EXCHANGES}
    for _ in range(args.rounds):
        for exchange in EXCHANGES:
            model = models[exchange]
            opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
            for step in range(args.steps):
                inside.clear()
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = F.cross_entropy(model(x).float(), y)
                loss.backward()  # the exchange runs inside
                opt.step()
                opt.zero_grad(set_to_none=True)
                if step >= 3 and len(inside) == 1:  # DDP rebuilds its buckets on the second step
                    stamps[exchange].append((start, *inside[0], time.perf_counter()))
    Path(args.out_dir, f"rank{rank}.json").write_text(json.dumps(stamps))
    close_distributed()
    # With two DDP models alive, 3 runs in 70 aborted at interpreter exit, after the group was gone
    # ("terminate called without an active exception"; one model, as in training: 0 in 100): skip it
    os._exit(0)


def _stats(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"median_ms": round(statistics.median(ordered) * 1e3, 3),
            "mean_ms": round(statistics.mean(ordered) * 1e3, 3),
            "p90_ms": round(ordered[int(0.9 * len(ordered))] * 1e3, 3)}


def summarise(out_dir: Path) -> dict:
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(2)]
    result = {}
    for exchange in EXCHANGES:
        steps = list(zip(*(r[exchange] for r in ranks), strict=True))  # a step: each rank's (start, in, out, end)
        result[exchange] = {
            "steps": len(steps),
            "after_last_arrival": _stats([min(s[2] for s in st) - max(s[1] for s in st) for st in steps]),
            "step": _stats([max(s[3] for s in st) - min(s[0] for s in st) for st in steps]),
        }
    ratio = result[EXCHANGES[1]]["step"]["median_ms"] / result[EXCHANGES[0]]["step"]["median_ms"]
    return {"exchanges": result, "step_speedup_of_shared_memory": round(ratio, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=128, help="per rank (fast.yaml: 256 over 2 ranks)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "exchange_probe.json")
    p.add_argument("--worker-out", dest="out_dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.out_dir:
        return worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
               "--rounds", str(args.rounds), "--steps", str(args.steps),
               "--batch", str(args.batch), "--worker-out", tmp]
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        result = summarise(Path(tmp))
    for exchange, r in result["exchanges"].items():
        print(f"{exchange:>13}: after the last arrival {r['after_last_arrival']['median_ms']:.2f} ms median "
              f"({r['after_last_arrival']['mean_ms']:.2f} mean, {r['after_last_arrival']['p90_ms']:.2f} p90); "
              f"step {r['step']['median_ms']:.2f} ms median over {r['steps']} steps")
    print(f"step speed-up of shared memory: {result['step_speedup_of_shared_memory']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
