"""How well `predict --number` reads rows of handwritten digits, by the kind of row that goes wrong.

Rows of 3-6 real held-out MNIST digits (test digits from 2000 on: no other job uses them) photographed
on notebook paper (lenet_dist/data/paper.py), 100 rows of each kind:

  spaced    the digits apart, as in `data samples --style number`
  tight     gaps of a few pixels
  touching  two neighbours drawn so close that their ink touches or overlaps
  small     one digit half to two thirds the size of the others, on the same baseline
  light     one digit in a much lighter pen (35-50% of the ink)
  strokes   one digit drawn in two strokes that do not touch (a band cut through its ink)

    python jobs/number_probe.py --checkpoint runs/<run>/model [--out jobs/results/number_probe.json]

A row counts when every digit is read and nothing else; `silent` counts the wrong rows not flagged
uncertain (the ones a person would trust); `ceiling` is the share of rows none of whose digits the
model misreads as MNIST images, before any photo: roughly the most that reading the photos can reach.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
KINDS = ("spaced", "tight", "touching", "small", "light", "strokes")
ROWS = 100
FIRST_DIGIT = 2000


def _two_strokes(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """The digit with a 2-px band cut through its ink where that leaves two pieces of real size."""
    ink = digit > 60
    for _ in range(30):
        cut = digit.copy()
        if rng.random() < 0.5:
            y = int(rng.integers(6, 22))
            cut[y:y + 2] = 0
        else:
            x = int(rng.integers(6, 22))
            cut[:, x:x + 2] = 0
        count, labels = cv2.connectedComponents((cut > 60).astype(np.uint8), connectivity=8)
        n = count - 1
        sizes = sorted(np.bincount(labels.ravel())[1:], reverse=True)
        if n == 2 and sizes[1] >= 0.2 * ink.sum():
            return cut
    return None


def make_rows(kind: str, images: np.ndarray, labels: np.ndarray, out: Path,
              seed: int) -> tuple[dict[str, str], dict[str, range]]:
    """The rows of one kind as photos in `out`: each file's number, and which test digits it shows."""
    from lenet_dist.data.paper import number_photo

    rng = np.random.default_rng([seed, KINDS.index(kind)])
    out.mkdir(parents=True, exist_ok=True)
    truth, shown, next_digit = {}, {}, FIRST_DIGIT + KINDS.index(kind) * 1000
    while len(truth) < ROWS:
        n = int(rng.integers(3, 7))
        digits = [images[i] for i in range(next_digit, next_digit + n)]
        number = "".join(str(labels[i]) for i in range(next_digit, next_digit + n))
        next_digit += n
        odd = int(rng.integers(n))
        gaps, sizes, strengths = list(rng.uniform(0.9, 1.1, n - 1)), [1.0] * n, [1.0] * n
        if kind == "tight":
            gaps = list(rng.uniform(0.72, 0.8, n - 1))
        elif kind == "touching":
            gaps[min(odd, n - 2)] = float(rng.uniform(0.5, 0.62))
        elif kind == "small":
            sizes[odd] = float(rng.uniform(0.5, 0.67))
        elif kind == "light":
            strengths[odd] = float(rng.uniform(0.35, 0.5))
        elif kind == "strokes":
            cut = _two_strokes(digits[odd], rng)
            if cut is None:
                continue
            digits[odd] = cut
        name = f"{len(truth):04d}.png"
        number_photo(digits, rng, gaps, sizes, strengths).save(out / name)
        truth[name], shown[name] = number, range(next_digit - n, next_digit)
    return truth, shown


def _read_as_mnist(checkpoint: Path, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Which test digits the model reads right from the MNIST originals, as the held-out evaluation
    does. Rows with a digit misread there are lost whatever the photo's cutting does (bar a lucky
    reading of the photo)."""
    import torch

    from lenet_dist.checkpoint import load_model

    model, meta = load_model(checkpoint, as_evaluated=True)
    x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    with torch.inference_mode():
        return (model(meta.normalization.apply(x)).argmax(1).numpy() == labels)


def score(folder: Path, truth: dict[str, str], checkpoint: Path) -> dict:
    cmd = [str(Path(sys.executable).parent / "lenet-dist"), "predict", str(folder), "--number", "--checkpoint",
           str(checkpoint), "--csv", "--device", "cpu"]
    rows = list(csv.DictReader(subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()))
    right = [r["number"] == truth[Path(r["file"]).name] for r in rows]
    wrong = [(Path(r["file"]).name, truth[Path(r["file"]).name], r["number"] or r["error"])
             for r, ok in zip(rows, right, strict=True) if not ok]
    silent = sum(r["uncertain"] != "true" for r, ok in zip(rows, right, strict=True) if not ok and not r["error"])
    return {"rows": len(rows), "exact": sum(right) / len(rows), "silent": silent, "wrong": wrong[:8]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=REPO / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "jobs" / "results" / "number_probe.json")
    args = parser.parse_args()
    from lenet_dist.data.datasets import MNIST
    from lenet_dist.data.fetch import ensure_dataset
    from lenet_dist.data.tensors import read_idx
    from lenet_dist.fileio import write_json_atomic

    raw = ensure_dataset("mnist", args.data_dir).raw_dir(args.data_dir)
    images = read_idx(raw / MNIST.files["test"][0].name, 3)
    labels = read_idx(raw / MNIST.files["test"][1].name, 1)
    right = _read_as_mnist(args.checkpoint, images, labels)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            truth, shown = make_rows(kind, images, labels, Path(tmp) / kind, args.seed)
            results[kind] = score(Path(tmp) / kind, truth, args.checkpoint)
            results[kind]["ceiling"] = sum(all(right[i] for i in r) for r in shown.values()) / len(shown)
            print(f"{kind:9s} exact {results[kind]['exact']:.3f}  ceiling {results[kind]['ceiling']:.2f}  silent-wrong "
                  f"{results[kind]['silent']}  e.g. {results[kind]['wrong'][:3]}", flush=True)
    results["all"] = {key: sum(r[key] for r in results.values()) / len(KINDS) for key in ("exact", "ceiling")}
    print(f"all       exact {results['all']['exact']:.3f}  ceiling {results['all']['ceiling']:.3f}")
    write_json_atomic(args.out, {"checkpoint": str(args.checkpoint), "seed": args.seed, **results})


if __name__ == "__main__":
    main()
