"""Image files made from real test digits, to try `predict` on: `mnist` style (28x28 as in the
dataset) or `user` style (dark ink on light paper, scaled, off-centre on canvases of varied
sizes and aspect ratios, RGB or RGBA, PNG or JPEG: what a photo or scan of handwriting gives)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from lenet_dist.data.tensors import read_idx
from lenet_dist.data.datasets import DatasetSpec


def _user_like(digit: np.ndarray, rng: np.random.Generator, png_only: bool) -> tuple[Image.Image, str]:
    side = int(rng.integers(40, 220))  # the 28x28 digit drawn at this size
    canvas_w = int(side * rng.uniform(1.1, 3.0))
    canvas_h = int(side * rng.uniform(1.1, 3.0))
    glyph = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    ink = np.asarray(glyph, dtype=np.float32) / 255.0
    x0 = int(rng.integers(0, canvas_w - side + 1))
    y0 = int(rng.integers(0, canvas_h - side + 1))
    coverage = np.zeros((canvas_h, canvas_w), dtype=np.float32)
    coverage[y0:y0 + side, x0:x0 + side] = ink
    paper = rng.uniform(200, 255, size=3)
    pen = rng.uniform(0, 70, size=3)
    rgb = paper * (1 - coverage[..., None]) + pen * coverage[..., None]
    rgb += rng.normal(0, 3, size=rgb.shape)  # sensor noise
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:  # a drawing app's export: transparent paper, opaque ink
        alpha = np.clip(coverage * 255 * 1.5, 0, 255).astype(np.uint8)
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "png"
    return Image.fromarray(rgb, "RGB"), "jpg" if rng.random() < 0.5 and not png_only else "png"


def write_samples(spec: DatasetSpec, data_dir: Path, out_dir: Path, n: int, style: str, seed: int = 0,
                  offset: int = 0, png_only: bool = False) -> Path:
    """Write n images from test digits [offset, offset+n) and labels.csv (file, label); return the csv."""
    images_file, labels_file = spec.files["test"]
    raw = spec.raw_dir(data_dir)
    images = read_idx(raw / images_file.name, 3)[offset:offset + n]
    labels = read_idx(raw / labels_file.name, 1)[offset:offset + n]
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (digit, label) in enumerate(zip(images, labels, strict=True)):
        if style == "mnist":
            img, ext = Image.fromarray(digit), "png"
        else:
            img, ext = _user_like(digit, rng, png_only)
        name = f"{offset + i:05d}.{ext}"
        img.save(out_dir / name, quality=int(rng.integers(80, 96))) if ext == "jpg" else img.save(out_dir / name)
        rows.append((name, spec.classes[int(label)]))
    with open(out_dir / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("file", "label"), *rows])
    return out_dir / "labels.csv"
