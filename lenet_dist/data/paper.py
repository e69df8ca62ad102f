"""Held-out digits as phone photos of notebook paper: ruled (sometimes grid) lines, a margin line,
tinted paper, pencil or ballpoint ink, a lighting gradient and shadows, tilt up to 12 degrees,
sensor noise and JPEG down to quality 35. `digit_photo` draws one digit sitting on a line;
`number_photo` a row of separate digits (a postcode, a year). Used by `data samples --style
paper|number` and the predict benchmark, so anyone can reproduce the measurement."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

PAPERS = [(252, 252, 250), (250, 246, 228), (240, 244, 250), (236, 236, 232), (250, 240, 235)]
RULE_COLOURS = [(150, 180, 220), (170, 190, 215), (160, 160, 170), (120, 160, 210)]
INKS = {"pencil": (90, 90, 95), "blue": (30, 50, 150), "black": (25, 25, 30)}


def _glyph(digit: np.ndarray, side: int) -> np.ndarray:
    """The 28x28 digit as ink coverage in [0, 1] at `side` pixels."""
    return np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32) / 255


def _page(h: int, w: int, spacing: float, first: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paper colour (h, w, 3) and the rule coverage (h, w): ruled lines, maybe a grid and a margin."""
    paper = np.empty((h, w, 3), np.float32)
    paper[:] = np.array(PAPERS[rng.integers(len(PAPERS))], np.float32) - rng.uniform(0, 12)
    rules = np.zeros((h, w), np.float32)
    thick = max(1, round(spacing * rng.uniform(0.02, 0.05)))
    strength = rng.uniform(0.35, 0.8)
    for y in np.arange(first % spacing, h, spacing):
        rules[int(y):int(y) + thick] = strength
    if rng.random() < 0.2:  # squared paper
        for x in np.arange(rng.uniform(0, spacing), w, spacing):
            rules[:, int(x):int(x) + thick] = np.maximum(rules[:, int(x):int(x) + thick], strength)
    return paper, rules


def _photograph(rgb: np.ndarray, rng: np.random.Generator, out_hw: tuple[int, int]) -> Image.Image:
    """Light it unevenly, maybe cast a shadow, tilt, crop to out_hw, add noise."""
    h, w = rgb.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs / w + np.sin(angle) * ys / h)
    light = 1 - rng.uniform(0.0, 0.4) * (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    if rng.random() < 0.4:  # a soft shadow (a hand, the phone) over part of the page
        a = rng.uniform(0, 2 * np.pi)
        edge = (np.cos(a) * (xs - w / 2) + np.sin(a) * (ys - h / 2)) / (0.08 * max(h, w))
        light *= 1 - rng.uniform(0.2, 0.45) / (1 + np.exp(-(edge - rng.uniform(-4, 4))))
    img = Image.fromarray(np.clip(rgb * light[..., None], 0, 255).astype(np.uint8))
    img = img.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BICUBIC)
    oh, ow = out_hw
    top, left = (h - oh) // 2, (w - ow) // 2
    img = img.crop((left, top, left + ow, top + oh)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    arr = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(1, 5), (oh, ow, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _ink(rgb: np.ndarray, coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    kind = list(INKS)[rng.integers(len(INKS))]
    alpha = coverage * (rng.uniform(0.55, 0.85) if kind == "pencil" else rng.uniform(0.85, 1.0))
    if kind == "pencil":  # graphite is grainy
        alpha *= np.clip(rng.normal(1, 0.15, coverage.shape), 0.4, 1.2).astype(np.float32)
    ink = np.array(INKS[kind], np.float32)
    return rgb * (1 - alpha[..., None]) + ink * alpha[..., None]


def _compose(glyphs: list[tuple[np.ndarray, int, int]], out_hw: tuple[int, int], spacing: float, baseline: int,
             rng: np.random.Generator) -> Image.Image:
    """Glyphs (coverage, top, left) on ruled paper, on a canvas with room to tilt, then photographed."""
    oh, ow = out_hw
    pad = int(0.25 * max(oh, ow)) + 4
    h, w = oh + 2 * pad, ow + 2 * pad
    paper, rules = _page(h, w, spacing, baseline + pad, rng)
    rule_colour = np.array(RULE_COLOURS[rng.integers(len(RULE_COLOURS))], np.float32)
    rgb = paper * (1 - rules[..., None]) + rule_colour * rules[..., None]
    if rng.random() < 0.3:  # a red margin line clear of the writing
        x = int(rng.choice([rng.uniform(0.02, 0.12), rng.uniform(0.88, 0.98)]) * ow) + pad
        rgb[:, x:x + max(1, round(spacing * 0.03))] = (215, 90, 95)
    coverage = np.zeros((h, w), np.float32)
    for glyph, top, left in glyphs:
        region = coverage[pad + top:pad + top + glyph.shape[0], pad + left:pad + left + glyph.shape[1]]
        np.maximum(region, glyph[:region.shape[0], :region.shape[1]], out=region)
    return _photograph(_ink(rgb, coverage, rng), rng, out_hw)


def empty_page(rng: np.random.Generator, side: int = 200) -> Image.Image:
    """Ruled paper with nothing written on it, photographed the same way."""
    return _compose([], (side, side), side * rng.uniform(0.25, 0.4), side // 2, rng)


def digit_photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(48, 160))  # the 28x28 box; its ink is ~20/28 of it
    spacing = side * rng.uniform(0.75, 1.15)
    oh, ow = int(side * rng.uniform(1.5, 2.6)), int(side * rng.uniform(1.5, 2.6))
    top = int((oh - side) / 2 + rng.uniform(-0.15, 0.15) * side)
    left = int((ow - side) / 2 + rng.uniform(-0.2, 0.2) * side)
    baseline = top + int(side * 24 / 28 + rng.uniform(-0.1, 0.1) * side)  # the digit sits on a line
    return _compose([(_glyph(digit, side), top, left)], (oh, ow), spacing, baseline, rng)


def number_photo(digits: list[np.ndarray], rng: np.random.Generator, gaps: list[float] | None = None,
                 sizes: list[float] | None = None, strengths: list[float] | None = None) -> Image.Image:
    """A row of digits: by default each box starts 0.9-1.1 box widths after the last, so the ink of
    neighbours never touches. `gaps`: each box's start after the last, in box widths (about 0.7 and
    less: wide neighbours touch); `sizes`: each digit's size relative to the row's, standing on the
    row's baseline; `strengths`: each digit's ink, relative (a lighter pen, a pencil)."""
    n = len(digits)
    side = int(rng.integers(48, 110))
    spacing = side * rng.uniform(0.8, 1.15)
    sizes = sizes or [1.0] * n
    strengths = strengths or [1.0] * n
    steps = np.cumsum([0, *(gaps or rng.uniform(0.9, 1.1, n - 1))]) * side
    margin = int(side * rng.uniform(0.3, 0.6))
    ow, oh = int(steps[-1] + side + 2 * margin), int(side * rng.uniform(1.5, 2.2))
    top = (oh - side) // 2
    glyphs = []
    for d, x, size, strength in zip(digits, steps, sizes, strengths, strict=True):
        own = max(8, round(side * size))
        glyphs.append((_glyph(d, own) * strength, top + side - own + int(rng.uniform(-0.05, 0.05) * side),
                       margin + int(x + (side - own) / 2)))
    return _compose(glyphs, (oh, ow), spacing, top + int(side * 24 / 28), rng)
