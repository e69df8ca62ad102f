"""Benchmark `lenet-dist predict` on 1000 user-like PNG files (real held-out digits drawn dark on
light paper, off-centre, varied canvases, RGB/RGBA), and its accuracy with and without the
MNIST-style preprocessing.

    python jobs/predict_benchmark.py --checkpoint runs/<run>/model [--n 1000] [--repeats 3]

Times the whole command (process start, model load, decoding, preprocessing, inference) as a user
runs it; prints medians.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def accuracy(out: str, labels: dict[str, str]) -> float:
    rows = list(csv.DictReader(out.splitlines()))
    return sum(r["label"] == labels[Path(r["file"]).name] for r in rows) / len(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=REPO / "data")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    from lenet_dist.data.fetch import ensure_dataset
    from lenet_dist.data.samples import write_samples

    spec = ensure_dataset("mnist", a.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        labels_csv = write_samples(spec, a.data_dir, folder, a.n, "user", seed=1, png_only=True)
        labels = {r["file"]: r["label"] for r in csv.DictReader(labels_csv.read_text().splitlines())}
        cmd = [str(BIN / "lenet-dist"), "predict", str(folder), "--checkpoint", str(a.checkpoint), "--csv",
               "--device", "cpu"]
        times, out = [], ""
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            times.append(time.perf_counter() - t0)
        raw = subprocess.run([*cmd, "--no-preprocess"], capture_output=True, text=True, check=True).stdout
    print(f"{a.n} PNG files: median {statistics.median(times):.2f} s for the whole `lenet-dist predict` command "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)}); accuracy with preprocessing "
          f"{accuracy(out, labels):.4f}, without {accuracy(raw, labels):.4f}; checkpoint {a.checkpoint}")


if __name__ == "__main__":
    main()
