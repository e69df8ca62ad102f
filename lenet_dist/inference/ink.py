"""Separate ink from paper in a photo, before the digit is cut out (OpenCV, at a working scale of
at most 256 px, so a phone photo costs about a millisecond):

 1. ink strength: light ink on a dark page is inverted; the page's illumination (a max filter on a
    64 px copy) is divided out, so ink is how much darker than its own surroundings a pixel is
 2. ruled and grid lines: the tilt at which some row of ink crosses the whole image (±14°) turns it
    upright; rows and columns of ink edge to edge are removed, strokes across them bridged
 3. a threshold: Otsu, never below MIN_INK; whole lighter digits at half of it
 4. connected components (8-connected, 1-px gaps closed); line remnants and specks dropped
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lenet_dist.inference.threshold import ink_mask

WORK_SIDE = 256  # the working image holds at most WORK_SIDE**2 pixels
MIN_INK = 0.12  # ink is at least 12% darker than the paper around it
LINE_FRACTION = 0.5  # a row of ink across half the width or more, touching both edges, is a line
MAX_TILT = 14
LINE_INK = 0.06  # a ruled line can be this faint: 6% darker than the paper
LINE_MARGIN = 0.1  # on a line, ink is at least this much darker than the line around it

cv2.setNumThreads(1)  # images are small and predict decodes in several processes already


class NoInk(Exception):
    pass


@dataclass
class Ink:
    strength: np.ndarray  # float32 HxW in [0, 1]: 1 = as dark as ink gets, lines removed
    labels: np.ndarray  # int32 HxW component labels (0: none)
    boxes: list[tuple[int, int, int, int, int]]  # (label, x, y, w, h) of the kept components
    areas: dict[int, int]
    tilt: float = 0.0  # degrees the working image was turned (about its centre) to make the page upright

    def photo_box(self, x0: float, y0: float, x1: float, y1: float, photo_hw: tuple[int, int]) -> tuple[int, ...]:
        """A box of this (upright, working-scale) image as x0, y0, x1, y1 in the photo's pixels."""
        h, w = self.strength.shape
        back = cv2.invertAffineTransform(cv2.getRotationMatrix2D((w / 2, h / 2), self.tilt, 1.0))
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ back.T
        sy, sx = photo_hw[0] / h, photo_hw[1] / w
        return (max(0, int(corners[:, 0].min() * sx)), max(0, int(corners[:, 1].min() * sy)),
                min(photo_hw[1], int(np.ceil(corners[:, 0].max() * sx))),
                min(photo_hw[0], int(np.ceil(corners[:, 1].max() * sy))))


def _resized(a: np.ndarray, side: int) -> np.ndarray:
    """At most side x side pixels' worth, whatever the aspect: a long strip (a row of digits) keeps
    the resolution a square photo of one digit has."""
    scale = side / float(np.sqrt(a.shape[0] * a.shape[1]))
    if scale >= 1:
        return a
    return cv2.resize(a, (max(1, round(a.shape[1] * scale)), max(1, round(a.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)


def _ink_is_dark(g: np.ndarray, small: np.ndarray) -> bool:
    """Ink is what stands out most from its surroundings: darker (pen on paper) or lighter (chalk on
    a board, a light digit on black). A border's brightness cannot tell: a shadow can make white
    paper darker than mid-grey. Judged on the working image by the strongest (lightly smoothed)
    departures either way, not by percentiles: a digit on a whole page is a tiny minority."""
    # the surroundings are smooth: blurred on the 64 px copy, not at full size
    around = cv2.resize(cv2.GaussianBlur(small, (0, 0), 0.15 * min(small.shape)), (g.shape[1], g.shape[0]),
                        interpolation=cv2.INTER_LINEAR)
    dev = cv2.GaussianBlur(g, (0, 0), 1.0) - around
    return -float(dev.min()) >= float(dev.max())


def _strength(gray: np.ndarray) -> np.ndarray:
    g = _resized(gray, WORK_SIDE).astype(np.float32) / 255.0
    small = _resized(g, 64)
    if not _ink_is_dark(g, small):
        g, small = 1.0 - g, 1.0 - small
    k = max(3, int(0.2 * min(small.shape)) | 1)
    # a closing removes strokes narrower than k and keeps the edges of shadows where they are
    paper = cv2.morphologyEx(small, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    paper = cv2.GaussianBlur(paper, (0, 0), k / 4)
    paper = cv2.resize(paper, (g.shape[1], g.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(1.0 - g / np.maximum(paper, 1e-3), 0.0, 1.0)


def _rotate(a: np.ndarray, degrees: float, interpolation: int) -> np.ndarray:
    h, w = a.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(a, m, (w, h), flags=interpolation, borderValue=0)


def _page_tilt(faint: np.ndarray) -> float | None:
    """The tilt that makes the page's lines (ruled rows, or a margin or grid column) straight, if it
    has any: the angle at which some row or column is darker than the paper almost edge to edge."""
    small = (_resized(faint.astype(np.float32), 96) > 0.3).astype(np.uint8)

    def longest(angle: float) -> float:
        turned = _rotate(small, angle, cv2.INTER_NEAREST)
        rows = cv2.reduce(turned, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).max() / small.shape[1]
        cols = cv2.reduce(turned, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).max() / small.shape[0]
        return max(rows, cols)

    coarse = max(range(-MAX_TILT, MAX_TILT + 1, 2), key=longest)  # 2° steps, then 0.25° around the best
    fine = max(np.arange(coarse - 1.75, coarse + 1.76, 0.25), key=longest)
    return float(fine) if longest(fine) >= LINE_FRACTION else None


def _line_rows(faint: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rows darker than the paper along most of what the photo covers, from edge to edge. A stroke
    is dark only where it is; a ruled line everywhere, even where it is faint."""
    faint = cv2.dilate(faint, np.ones((3, 1), np.uint8))  # a thin line's pixels may fall in the next row
    width = np.maximum(valid.sum(1), 1)
    coverage = faint.sum(1) / width
    rows = []
    for y in np.flatnonzero(coverage >= LINE_FRACTION):
        cols = np.flatnonzero(valid[y])
        edge = max(2, len(cols) // 10)
        if coverage[y] >= 0.75 or (faint[y, cols[:edge]].any() and faint[y, cols[-edge:]].any()):
            rows.append(y)
    return np.array(rows, dtype=int)


def _remove_rows(strength: np.ndarray, faint: np.ndarray, rows: np.ndarray) -> None:
    """Blank line rows (one pixel either side too), keeping what is much darker than the line (ink
    written along it) and bridging strokes that cross it."""
    h = strength.shape[0]
    coverage = faint.sum(1) / faint.shape[1]
    bands = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1) if len(rows) else []
    for band in bands:
        y0, y1 = band[0], band[-1]
        while y0 > 0 and band[0] - y0 < 3 and coverage[y0 - 1] >= 0.25:  # the edges of a thick or tilted line
            y0 -= 1
        while y1 < h - 1 and y1 - band[-1] < 3 and coverage[y1 + 1] >= 0.25:
            y1 += 1
        y0, y1 = max(0, y0 - 1), min(h - 1, y1 + 1)
        above, below = max(0, y0 - 1), min(h - 1, y1 + 1)
        # ink along or across a line is what is clearly darker than the line itself: faint pencil
        # written on a line stays (a stricter bound removed the top bar of a pencil 5 on a ruled line)
        line = float(np.median(strength[band[0]:band[-1] + 1].max(0)))
        dark = max(1.25 * line, line + LINE_MARGIN)
        keep = strength[y0:y1 + 1] > dark
        crossing = (strength[above] > dark) & (strength[below] > dark)
        fill = np.maximum(strength[above], strength[below]) * crossing
        strength[y0:y1 + 1] = np.where(keep, strength[y0:y1 + 1], fill)


def _could_have_lines(faint: np.ndarray) -> bool:
    """A page line reaches (nearly) two opposite edges; ink that touches neither pair has none."""
    h, w = faint.shape
    eh, ew = max(1, h // 10), max(1, w // 10)
    return bool((faint[:, :ew].any() and faint[:, -ew:].any()) or (faint[:eh].any() and faint[-eh:].any()))


def _remove_lines(strength: np.ndarray) -> tuple[np.ndarray, float]:
    """The strength without the page's lines, turned upright; and the tilt it was turned by."""
    faint = (strength >= LINE_INK).astype(np.uint8)
    tilt = _page_tilt(faint) if _could_have_lines(faint) else None
    if tilt is None:
        return strength, 0.0
    strength, faint = _rotate(strength, tilt, cv2.INTER_LINEAR), _rotate(faint, tilt, cv2.INTER_NEAREST)
    valid = _rotate(np.ones_like(faint), tilt, cv2.INTER_NEAREST)
    _remove_rows(strength, faint, _line_rows(faint, valid))
    strength_t, faint_t = np.ascontiguousarray(strength.T), np.ascontiguousarray(faint.T)
    _remove_rows(strength_t, faint_t, _line_rows(faint_t, np.ascontiguousarray(valid.T)))  # grid, a margin
    return np.ascontiguousarray(strength_t.T), tilt


def _edge_to_edge(box: tuple[int, int, int, int, int], w: int, h: int) -> bool:
    """A thin remnant of a line (or a shadow's edge) that runs from one side of the image to the other:
    across it under a fifth of its height (no digit is 5x wider than tall), or down it under a tenth
    of its width (a tightly cropped 1 is not much wider than that)."""
    _, x, y, bw, bh = box
    if (bw >= w - 2 and bh < 0.2 * h) or (bh >= h - 2 and bw < 0.1 * w):
        return True
    at_border = x <= 0 or y <= 0 or x + bw >= w or y + bh >= h
    return at_border and min(bw, bh) <= 2  # a sliver along the photo's edge: a tilted page's border, a crop


def find_ink(gray: np.ndarray) -> Ink:
    """The ink of a uint8 grayscale photo, as components; NoInk when there is none."""
    strength = _strength(gray)
    if float(strength.max()) < MIN_INK:
        raise NoInk("no ink found (blank or nearly uniform image)")
    strength, tilt = _remove_lines(strength)
    mask = cv2.morphologyEx(ink_mask(strength, MIN_INK), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    comps = [(i, *map(int, stats[i, :4])) for i in range(1, count)]
    areas = {i: int(stats[i, cv2.CC_STAT_AREA]) for i in range(1, count)}
    largest = max(areas.values(), default=0)
    h, w = mask.shape
    kept = [c for c in comps if areas[c[0]] >= max(4, 0.02 * largest) and not _edge_to_edge(c, w, h)]
    if not kept:
        raise NoInk("no digit found (blank page, or only ruled lines)")
    return Ink(strength, labels, kept, areas, tilt)
