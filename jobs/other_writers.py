"""Digits by writers outside MNIST, from low-resolution scans: how the model reads them, and how far
`lenet-dist finetune` takes it with 20 of their digits per class.

The source is UCI's Optical Recognition of Handwritten Digits (optdigits; E. Alpaydin, C. Kaynak,
1998): 1797 digits by 13 people (none of them MNIST's writers) on forms scanned by NIST's programs
and reduced to 8x8 pixels of 17 grey levels. scikit-learn ships them in its wheel
(sklearn/datasets/data/digits.csv.gz); this job takes that one file from the wheel on PyPI and
checks its sha256. Nothing here trains on them except the fine-tuning measured below, and the
fine-tuned model is scored only on the digits it did not see.

    python jobs/other_writers.py --checkpoint runs/<run> [--out jobs/results/other_writers.json]

Sets, each digit a PNG of dark ink on white paper as a scanner would give it:
  lowres    the 8x8 scan itself
  blurry    the scan enlarged to 32x32 (bicubic) and blurred: a soft, out-of-focus scan
Then: `finetune` on 20 digits per class (seeded pick), scored on the other 1597 (lowres), and the
fine-tuned model's held-out MNIST accuracy.
"""

from __future__ import annotations

import argparse
import collections
import csv
import gzip
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WHEEL = "scikit-learn==1.9.1"
MEMBER = "sklearn/datasets/data/digits.csv.gz"
SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
TEACH_PER_CLASS = 20


def fetch(cache: Path) -> Path:
    """digits.csv.gz, from the scikit-learn wheel on PyPI (once), checked."""
    path = cache / "digits.csv.gz"
    if not path.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--only-binary=:all:",
                            "-d", tmp, "-q"], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
            data = zipfile.ZipFile(wheel).read(MEMBER)
        cache.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if hashlib.sha256(path.read_bytes()).hexdigest() != SHA256:
        raise SystemExit(f"{path}: sha256 differs from the optdigits file this job was written for")
    return path


def write_sets(csv_gz: Path, out: Path) -> dict[str, list[tuple[Path, int]]]:
    with gzip.open(csv_gz) as f:
        rows = np.loadtxt(f, delimiter=",")
    scans, labels = rows[:, :64].reshape(-1, 8, 8), rows[:, 64].astype(int)
    sets: dict[str, list[tuple[Path, int]]] = {"lowres": [], "blurry": []}
    for i, (scan, label) in enumerate(zip(scans, labels, strict=True)):
        page = Image.fromarray((255 - scan * 255 / 16).round().astype(np.uint8))
        images = {"lowres": page, "blurry": page.resize((32, 32), Image.Resampling.BICUBIC)
                  .filter(ImageFilter.GaussianBlur(1.2))}
        for name, image in images.items():
            path = out / name / str(label) / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
            sets[name].append((path, int(label)))
    return sets


def score(files: list[tuple[Path, int]], checkpoint: Path, folder: Path) -> dict:
    cmd = [str(BIN / "lenet-dist"), "predict", str(folder), "-r", "--checkpoint", str(checkpoint), "--csv",
           "--device", "cpu"]
    rows = {Path(r["file"]).resolve(): r for r in
            csv.DictReader(subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines())}
    right, confusions = 0, collections.Counter()
    for path, label in files:
        got = rows[path.resolve()]["label"]
        right += got == str(label)
        if got != str(label):
            confusions[f"{label}->{got or 'error'}"] += 1
    return {"n": len(files), "accuracy": right / len(files), "confusions": dict(confusions.most_common(8))}


def finetune(sets: dict, checkpoint: Path, data_dir: Path, tmp: Path, seed: int) -> dict:
    by_class: dict[int, list[Path]] = collections.defaultdict(list)
    for path, label in sets["lowres"]:
        by_class[label].append(path)
    rng = random.Random(seed)
    teach, rest = tmp / "teach", tmp / "rest"
    for label, paths in by_class.items():
        rng.shuffle(paths)
        for k, path in enumerate(paths):
            dest = (teach if k < TEACH_PER_CLASS else rest) / str(label) / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())
    t0 = time.perf_counter()
    done = subprocess.run([str(BIN / "lenet-dist"), "finetune", str(teach), "--checkpoint", str(checkpoint),
                           "--output-dir", str(tmp / "runs"), "--run-name", "ft", "--data-dir", str(data_dir),
                           "--tracking", "disabled"], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": str(BIN), "HOME": str(tmp)})
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"finetune failed: {done.stderr[-2000:]}")
    rest_files = [(p, int(p.parent.name)) for p in sorted(rest.glob("*/*.png"))]
    summary = json.loads((tmp / "runs" / "ft" / "summary.json").read_text())
    return {"teach_images": TEACH_PER_CLASS * 10, "wall_seconds_one_thread": wall,
            "before": score(rest_files, checkpoint, rest), "after": score(rest_files, tmp / "runs" / "ft", rest),
            "mnist_test_accuracy_after": summary["test_accuracy"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="a model checkpoint or run directory")
    p.add_argument("--data-dir", type=Path, default=REPO / "data")
    p.add_argument("--seed", type=int, default=0, help="which 20 digits per class are taught")
    p.add_argument("--out", type=Path, default=REPO / "jobs" / "results" / "other_writers.json")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = write_sets(fetch(a.data_dir / "optdigits"), tmp / "sets")
        res = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", *sys.argv]),
               "checkpoint": str(a.checkpoint)}
        for name, files in sets.items():
            res[name] = score(files, a.checkpoint, tmp / "sets" / name)
            print(f"{name}: {res[name]['accuracy']:.4f} of {res[name]['n']}; {res[name]['confusions']}", flush=True)
        res["finetune"] = finetune(sets, a.checkpoint, a.data_dir.resolve(), tmp / "ft", a.seed)
        f = res["finetune"]
        print(f"finetune on {f['teach_images']} digits ({f['wall_seconds_one_thread']:.0f} s, 1 thread): the other "
              f"{f['after']['n']} {f['before']['accuracy']:.4f} -> {f['after']['accuracy']:.4f}; held-out MNIST "
              f"{f['mnist_test_accuracy_after']:.4f}")
    from lenet_dist.fileio import write_json_atomic

    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(a.out, res)


if __name__ == "__main__":
    main()
