"""Make a user's image look like an MNIST digit before the model sees it.

MNIST digits are light ink on black, size-normalised into a 20x20 box keeping the aspect ratio,
anti-aliased, and centred by centre of mass in 28x28. A photo of handwriting is dark ink on light
paper, any size, off-centre, RGB(A), JPEG, maybe rotated by EXIF, often on ruled paper in uneven
light. The steps, in order:

 1–3. decode.py: open safely (truncated files, decompression bombs, pipes are refused), reduced
    as it decodes when very large, EXIF orientation, transparency onto white paper, 8-bit grayscale
 4. an image already in MNIST form (28x28, light on dark) is used as it is
 5. the ink, separated from the paper (ink.py): illumination divided out, ruled/grid lines
    removed with the page turned upright, Otsu threshold, connected components
 6. the digit: the largest component and the pieces next to it (a 5's bar, a broken 4), specks
    and lines left out; for --number every column of components is a digit, left to right
 7. its ink strength, cropped, resized into 20x20 keeping its aspect ratio (anti-aliased)
 8. placed in 28x28 so that its centre of mass is at the centre
With `mnist_like=True` only steps 1–3 run, plus a plain resize to 28x28 when needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from lenet_dist.inference.decode import MAX_PIXELS, PreprocessError, Reserve, read_gray
from lenet_dist.inference.ink import Ink, NoInk, find_ink
from lenet_dist.inference.segment import Box, SegmentationError, main_digit, span
from lenet_dist.inference.slots import Slot, digit_slots

CLOSER_BELOW = 48  # digits shorter than this in the working image are found again in the full photo


def _centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    total = a.sum()
    ys, xs = np.indices(a.shape)
    return float((ys * a).sum() / total), float((xs * a).sum() / total)


def _centred(crop: np.ndarray) -> np.ndarray:
    """Steps 7–8: an ink crop (float, bright ink) into MNIST's 20x20 box, centred by mass in 28x28."""
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = Image.fromarray((np.clip(crop, 0, 1) * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    d = np.asarray(digit, dtype=np.float32) / 255.0
    canvas = np.zeros((28, 28), dtype=np.float32)
    cy, cx = _centre_of_mass(d) if d.sum() > 0 else (d.shape[0] / 2, d.shape[1] / 2)
    top = int(np.clip(round(14 - cy), 0, 28 - d.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - d.shape[1]))
    canvas[top:top + d.shape[0], left:left + d.shape[1]] = d
    return canvas


def _cut(ink: Ink, group: list[Box]) -> np.ndarray:
    """The ink strength of these components only, stretched so that the core of the strokes (the
    median of the pixels at least half as strong as the darkest) reaches 1, as an MNIST stroke's
    does however blurred or faint the scan, in the box of the pixels at least half as strong (as
    MNIST's 20x20 box holds the pen's strokes)."""
    x0, y0 = min(b[1] for b in group), min(b[2] for b in group)
    x1, y1 = max(b[1] + b[3] for b in group), max(b[2] + b[4] for b in group)
    mine = np.isin(ink.labels[y0:y1, x0:x1], [b[0] for b in group]).astype(np.uint8)
    mine = cv2.dilate(mine, np.ones((5, 5), np.uint8))  # keep the anti-aliased edge of each stroke
    crop = ink.strength[y0:y1, x0:x1] * mine
    top = float(np.percentile(crop[mine > 0], 99))
    crop = np.clip(crop / max(float(np.median(crop[crop >= 0.5 * top])), 1e-3), 0, 1)
    ys, xs = np.nonzero(crop >= 0.5)
    if len(ys) < 4:
        return crop
    (y0, y1), (x0, x1) = np.percentile(ys, [1, 99]).round().astype(int), np.percentile(xs, [1, 99]).round().astype(int)
    return crop[y0:y1 + 1, x0:x1 + 1]  # the 1st-99th percentile box: a stray pixel does not shrink the digit


def _digit(ink: Ink, group: list[Box]) -> np.ndarray:
    """Steps 7-8 for one digit. One put together from pieces that do not touch (strokes with a pen
    lift between them, a faint stretch lost to the threshold) has its gaps of a pixel or two at
    MNIST's scale closed: MNIST's digits are unbroken strokes, and a broken 9 reads as a 7."""
    image = _centred(_cut(ink, group))
    if len({b[0] for b in group}) > 1:
        image = cv2.morphologyEx(image, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    return image


def _border(gray: np.ndarray) -> np.ndarray:
    return np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])


def _already_mnist(gray: np.ndarray) -> bool:
    return gray.shape == (28, 28) and float(np.median(_border(gray))) < 128


def _closer(gray: np.ndarray, ink: Ink, groups: list[list[Box]]) -> np.ndarray | None:
    """Step 6's second look: the full-resolution photo around the digits, when they are small in the
    working image (a digit on a whole page, photographed from arm's length) and the photo has more
    pixels than that; None when a second look would see nothing new."""
    x0, y0, x1, y1 = span([b for g in groups for b in g])
    tall = max(span(g)[3] - span(g)[1] for g in groups)
    if gray.shape[0] < 1.2 * ink.strength.shape[0] or tall >= CLOSER_BELOW:
        return None
    margin = max(tall, x1 - x0 if len(groups) == 1 else 0)  # a digit's worth of paper around: the page's light
    px0, py0, px1, py1 = ink.photo_box(x0 - margin, y0 - margin, x1 + margin, y1 + margin, gray.shape)
    return gray[py0:py1, px0:px1]


def _segmented(gray: np.ndarray, segment) -> tuple[Ink, tuple[list[Slot], bool]]:
    """find_ink then `segment` (slots of digits, and whether digit-sized ink was left out), looked at
    again closer up when the digits are small in the working image; the first look stands if the
    second finds nothing."""
    try:
        ink = find_ink(gray)
        found = segment(ink)
    except (NoInk, SegmentationError) as exc:
        raise PreprocessError(str(exc)) from None
    crop = _closer(gray, ink, [g for slot in found[0] for g in slot[0]])
    if crop is not None:
        try:
            near = find_ink(crop)
            return near, segment(near)
        except (NoInk, SegmentationError):
            pass
    return ink, found


SMALL_SCAN = 64  # an image no bigger than this on both sides is a low-resolution scan of its digit(s)
SCAN_HEIGHT = 128  # what such a scan is enlarged to, before the ink is looked for


def _enlarged_scan(gray: np.ndarray) -> np.ndarray:
    """A low-resolution scan, cropped tight around its digits (a form's box, a postal scanner's
    crop), enlarged smoothly and given a margin of its own paper: at a few pixels a stroke is one
    pixel wide and runs edge to edge, which the ink steps would take for a ruled line."""
    if max(gray.shape) > SMALL_SCAN:
        return gray
    scale = SCAN_HEIGHT / gray.shape[0]
    big = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)), SCAN_HEIGHT), interpolation=cv2.INTER_CUBIC)
    border = _border(gray)
    paper = int(np.max(border)) if float(np.median(border)) >= 128 else int(np.min(border))
    pad = SCAN_HEIGHT // 4
    return cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=paper)


def to_mnist(gray: np.ndarray) -> np.ndarray:
    """Steps 4–8 on a uint8 grayscale image: float32 28x28 in [0, 1], bright ink on black."""
    if _already_mnist(gray):
        return gray.astype(np.float32) / 255.0
    gray = _enlarged_scan(gray)
    ink, (slots, _) = _segmented(gray, lambda ink: ([[[main_digit(ink)]]], False))
    return _digit(ink, slots[0][0][0])


@dataclass
class Row:
    """A row of handwritten digits as predict --number weighs it: every digit image that some reading
    needs, each as to_mnist makes it, and the row's slots left to right, each a list of readings
    (indices into `images`), the likelier by the ink's shape first."""

    images: np.ndarray  # [k, 28, 28]
    slots: list[list[list[int]]]
    left_out: bool = False  # ink the size of a small digit was taken for a speck: a person should look

    def first_reading(self) -> list[np.ndarray]:
        return [self.images[i] for slot in self.slots for i in slot[0]]


def to_row(gray: np.ndarray) -> Row:
    """A row of digits, found and cut apart (segment.digit_slots), with the other ways to cut it."""
    ink, (slots, left_out) = _segmented(_enlarged_scan(gray), digit_slots)
    images: list[np.ndarray] = []
    known: dict[str, int] = {}  # a digit that two readings share is one image
    indexed = []
    for slot in slots:
        readings = []
        for reading in slot:
            ids = []
            for g in reading:
                key = repr(sorted(g))
                if key not in known:
                    known[key] = len(images)
                    images.append(_digit(ink, g))
                ids.append(known[key])
            readings.append(ids)
        indexed.append(readings)
    return Row(np.stack(images), indexed, left_out)


def to_digits(gray: np.ndarray) -> list[np.ndarray]:
    """A row of separate handwritten digits, left to right, each as to_mnist makes it, cut the way
    their shape suggests."""
    return to_row(gray).first_reading()


def load_image(path: Path | bytes, mnist_like: bool = False, max_pixels: int = MAX_PIXELS,
               reserve: Reserve | None = None) -> np.ndarray:
    """An image file as float32 28x28 in [0, 1] (bright ink on black), ready to normalise."""
    gray = read_gray(path, max_pixels, reserve)
    if mnist_like:
        if gray.shape != (28, 28):
            gray = np.asarray(Image.fromarray(gray).resize((28, 28), Image.Resampling.BILINEAR))
        return gray.astype(np.float32) / 255.0
    return to_mnist(gray)


__all__ = ["MAX_PIXELS", "PreprocessError", "load_image", "read_gray", "to_digits", "to_mnist", "to_row", "Row"]
