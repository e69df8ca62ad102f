"""One-shot GPU benchmark: the benchmark's GPU rows in a few minutes, as JSON.

    python jobs/gpu_benchmark.py [--data-dir data] [--out jobs/results/gpu_benchmark.json] [--default-config]

Given one GPU (CUDA_VISIBLE_DEVICES picks it): the seed's own loop on the GPU; configs/fast.yaml with
3 seeds (data resident on the device, bf16 autocast where the card has it: `mixed_precision: auto`),
each with time to 99.0% from process start and its start-up breakdown; one step part by part; the
bf16 matmul peak and the fraction of it reached; held-out evaluation images/s; with --default-config
also the default config once (15 epochs, augmentation on). Without a GPU it runs the same rows on
the CPU, which proves the script works (the default config is then skipped unless asked for).
Budget: about 2 minutes on a recent GPU; it stops adding rows after --budget-s seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "jobs"))
import benchmark  # noqa: E402  (sibling scripts, not a package)
import speed_probe  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=REPO / "data")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--default-config", action="store_true", help="also train the default config once")
    p.add_argument("--budget-s", type=float, default=270.0, help="add no new row after this many seconds")
    p.add_argument("--out", type=Path, default=REPO / "jobs" / "results" / "gpu_benchmark.json")
    a = p.parse_args()
    t_start = time.perf_counter()
    import torch

    cuda = torch.cuda.is_available()
    res: dict = {"device": torch.cuda.get_device_name(0) if cuda else "cpu (no GPU: proves the script runs)",
                 "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None}
    data = ["--data-dir", str(a.data_dir.resolve())]

    def within_budget(row: str) -> bool:
        left = a.budget_s - (time.perf_counter() - t_start)
        if left <= 0:
            res.setdefault("skipped_for_time", []).append(row)
        return left > 0

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("the seed's own loop …", flush=True)
        res["seed_loop"] = speed_probe.seed_loop(a.data_dir)
        runs = []
        for seed in range(a.seeds):
            if within_budget(f"fast seed {seed}"):
                print(f"fast.yaml, seed {seed} …", flush=True)
                r = benchmark.run_job(["-c", "configs/fast.yaml", "--seed", str(seed), *data], tmp / f"s{seed}")
                runs.append({k: r[k] for k in (*benchmark.FAST_KEYS, "mixed_precision", "run_dir")})
        res["fast"] = runs
        if runs:
            res["fast_median_images_per_second"] = statistics.median(r["train_images_per_second"] for r in runs)
            res["eval_images_per_second"] = benchmark.eval_rate(Path(runs[0]["run_dir"]) / "model", a.data_dir)
        res["fast_step"] = speed_probe.step_breakdown(REPO / "configs" / "fast.yaml", a.data_dir.resolve())
        res["compute_bound"] = speed_probe.compute_bound(res["fast_step"]["precision"], res["fast_step"]["device"])
        if runs:
            res["fraction_of_compute_bound"] = (res["fast_median_images_per_second"]
                                                / res["compute_bound"]["bound_images_per_second"])
            res["speedup_vs_seed_loop"] = (res["fast_median_images_per_second"]
                                           / res["seed_loop"]["train_images_per_second"])
        if a.default_config and within_budget("default config"):
            print("default config …", flush=True)
            r = benchmark.run_job([*data], tmp / "default")
            res["default"] = {k: r[k] for k in ("test_accuracy", "train_images_per_second", "wall_time_seconds")}
    res["seconds"] = time.perf_counter() - t_start
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "fast"}, indent=2))
    for r in res["fast"]:
        print(f"fast.yaml: {r['train_images_per_second']:,.0f} images/s, 99.0% at {r['seconds_to_99']} s, "
              f"final {r['test_accuracy']:.4f} ({r['mixed_precision']})")


if __name__ == "__main__":
    main()
