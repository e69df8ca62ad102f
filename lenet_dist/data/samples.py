"""Image files made from real test digits, to try `predict` on: `mnist` style (28x28 as in the
dataset) or `user` style (dark ink on light paper, scaled, off-centre on canvases of varied
sizes and aspect ratios, RGB or RGBA, PNG or JPEG: what a photo or scan of handwriting gives)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from lenet_dist.data.datasets import DatasetSpec
from lenet_dist.data.paper import digit_photo, number_photo
from lenet_dist.data.tensors import read_idx
from lenet_dist.errors import ConfigError


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


def _groups(spec: DatasetSpec, data_dir: Path, n: int, style: str, offset: int,
            rng: np.random.Generator) -> list[tuple[np.ndarray, str]]:
    """(image or row of images, label) for n samples from the test digits starting at `offset`;
    a `number` sample is a row of 3-6 consecutive digits, labelled with their string."""
    images_file, labels_file = spec.files["test"]
    raw = spec.raw_dir(data_dir)
    lengths = rng.integers(3, 7, n) if style == "number" else np.ones(n, int)
    starts = np.cumsum([0, *lengths])
    if offset + starts[-1] > len(read_idx(raw / labels_file.name, 1)):
        raise ConfigError(f"not enough test digits for {n} {style} samples from digit {offset}; ask for fewer")
    images = read_idx(raw / images_file.name, 3)[offset:offset + int(starts[-1])]
    labels = read_idx(raw / labels_file.name, 1)[offset:offset + int(starts[-1])]
    groups = [(images[a:b], "".join(spec.classes[int(v)] for v in labels[a:b]))
              for a, b in zip(starts[:-1], starts[1:], strict=True)]
    return groups if style == "number" else [(g[0], label) for g, label in groups]


def write_samples(spec: DatasetSpec, data_dir: Path, out_dir: Path, n: int, style: str, seed: int = 0,
                  offset: int = 0, png_only: bool = False) -> Path:
    """Write n images from test digits starting at `offset` and labels.csv (file, label); return the csv."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (digit, label) in enumerate(_groups(spec, data_dir, n, style, offset, rng)):
        if style == "mnist":
            img, ext = Image.fromarray(digit), "png"
        elif style == "user":
            img, ext = _user_like(digit, rng, png_only)
        else:
            photo = digit_photo(digit, rng) if style == "paper" else number_photo(list(digit), rng)
            img, ext = photo, "png" if png_only or rng.random() < 0.2 else "jpg"
        name = f"{offset + i:05d}.{ext}"
        low_quality = style in ("paper", "number")
        quality = int(rng.integers(35, 96) if low_quality else rng.integers(80, 96))
        img.save(out_dir / name, quality=quality) if ext == "jpg" else img.save(out_dir / name)
        rows.append((name, label))
    with open(out_dir / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("file", "label"), *rows])
    return out_dir / "labels.csv"
