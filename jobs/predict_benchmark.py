"""Benchmark `lenet-dist predict` as a user runs it, on image files made from real held-out digits:

  user    1000 photo-like PNGs: dark ink on light paper, off-centre, varied canvases, RGB/RGBA
  paper   1000 phone photos of notebook paper: ruled/grid lines, margin, tint, shadows, pencil or
          ballpoint, tilt up to 12 degrees, JPEG down to quality 35
  number  300 photos of rows of 3-6 separate digits on such paper, read with --number

    python jobs/predict_benchmark.py --checkpoint runs/<run>/model [--repeats 3] [--out FILE.json]

Times the whole command (process start, model load, decoding, preprocessing, inference) and prints
medians; accuracy with and without the preprocessing; how many wrong answers were flagged uncertain.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SETS = {"user": (1000, 1, 0), "paper": (1000, 2, 0), "number": (300, 3, 1000)}  # n, seed, first test digit


def _score(out: str, labels: dict[str, str], key: str) -> dict:
    rows = list(csv.DictReader(out.splitlines()))
    right = [r[key] == labels[Path(r["file"]).name] for r in rows]
    wrong_flagged = sum(r["uncertain"] == "true" for r, ok in zip(rows, right, strict=True) if not ok)
    right_flagged = sum(r["uncertain"] == "true" for r, ok in zip(rows, right, strict=True) if ok)
    return {"accuracy": sum(right) / len(rows), "wrong": len(rows) - sum(right), "wrong_flagged_uncertain":
            wrong_flagged, "right_flagged_uncertain": right_flagged, "errors": sum(bool(r["error"]) for r in rows)}


def run_set(style: str, checkpoint: Path, data_dir: Path, repeats: int, tmp: Path) -> dict:
    from lenet_dist.data.fetch import ensure_dataset
    from lenet_dist.data.samples import write_samples

    n, seed, offset = SETS[style]
    folder = tmp / style
    labels_csv = write_samples(ensure_dataset("mnist", data_dir), data_dir, folder, n, style, seed=seed,
                               offset=offset, png_only=style == "user")
    labels = {r["file"]: r["label"] for r in csv.DictReader(labels_csv.read_text().splitlines())}
    (folder / "labels.csv").unlink()
    cmd = [str(BIN / "lenet-dist"), "predict", str(folder), "--checkpoint", str(checkpoint), "--csv", "--device",
           "cpu", *(["--number"] if style == "number" else [])]
    times, out = [], ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        times.append(time.perf_counter() - t0)
    result = {"n": n, "seconds_median": statistics.median(times), "seconds": times,
              **_score(out, labels, "number" if style == "number" else "label")}
    if style != "number":
        raw = subprocess.run([*cmd, "--no-preprocess"], capture_output=True, text=True).stdout
        result["accuracy_without_preprocessing"] = _score(raw, labels, "label")["accuracy"]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=REPO / "data")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--out", type=Path, default=REPO / "jobs" / "results" / "predict_benchmark.json")
    a = p.parse_args()
    results = {"checkpoint": str(a.checkpoint)}
    with tempfile.TemporaryDirectory() as tmp:
        for style in a.sets:
            r = results[style] = run_set(style, a.checkpoint, a.data_dir, a.repeats, Path(tmp))
            print(f"{style:7} {r['n']:5} files: accuracy {r['accuracy']:.4f} (without preprocessing "
                  f"{r.get('accuracy_without_preprocessing', float('nan')):.4f}); {r['wrong']} wrong, "
                  f"{r['wrong_flagged_uncertain']} of them flagged uncertain ({r['right_flagged_uncertain']} right "
                  f"answers flagged); {r['errors']} error rows; whole command median {r['seconds_median']:.2f} s")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
