"""Which ink is the digit: for one digit, the largest component and the pieces that belong to it;
for a row (--number), components grouped into digits left to right (slots.py weighs how to cut them)."""

from __future__ import annotations

import numpy as np

from lenet_dist.inference.ink import Ink

Box = tuple[int, int, int, int, int]  # component label, x, y, width, height


class SegmentationError(Exception):
    """The ink cannot be split into digits; the message is for the user."""


def _page_edge(box: Box, w: int, h: int) -> bool:
    """A long straight piece running off the photo: the page's edge against a dark table (the light
    estimate smears across it) or a ruler; a digit rarely both touches the border and is 4x as long
    as it is wide."""
    _, x, y, bw, bh = box
    touches = x <= 1 or y <= 1 or x + bw >= w - 1 or y + bh >= h - 1
    return touches and max(bw, bh) >= 4 * min(bw, bh) and (bw >= 0.25 * w or bh >= 0.25 * h)


def main_digit(ink: Ink) -> list[Box]:
    """The largest component and the pieces that belong with it. Pieces that look like the page's
    edge are passed over, unless all else is a tenth as big: specks beside a lone 1 at the border."""
    h, w = ink.labels.shape
    largest = max(ink.areas[b[0]] for b in ink.boxes)
    inner = [b for b in ink.boxes if not _page_edge(b, w, h)]
    if not inner or max(ink.areas[b[0]] for b in inner) < 0.1 * largest:
        inner = ink.boxes
    main = max(inner, key=lambda b: ink.areas[b[0]])
    reach = 0.3 * max(main[3], main[4])
    x0, y0, x1, y1 = main[1] - reach, main[2] - reach, main[1] + main[3] + reach, main[2] + main[4] + reach
    return [b for b in inner if b is main or (ink.areas[b[0]] >= 0.03 * ink.areas[main[0]]
            and b[1] < x1 and b[1] + b[3] > x0 and b[2] < y1 and b[2] + b[4] > y0)]


def span(group: list[Box]) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of a group of components."""
    return (min(b[1] for b in group), min(b[2] for b in group),
            max(b[1] + b[3] for b in group), max(b[2] + b[4] for b in group))


def _on_the_page(ink: Ink) -> list[Box]:
    """A row's components less what is not on it: the page's edges (edge-like pieces, see _page_edge,
    half as long again as the row's other pieces are tall; a 1 at the border of a tight crop is as
    tall as the rest), and what line removal left of the page's edges and corners: pieces well
    above or below the row, and flat lines along it. The row is where its tall pieces are."""
    h, w = ink.labels.shape
    edges = [b for b in ink.boxes if _page_edge(b, w, h)]
    rest = [b for b in ink.boxes if b not in edges]
    if not rest:
        return ink.boxes
    largest = max(ink.areas[b[0]] for b in rest)  # the digits' height, not the remnants' (often more of them)
    tall = float(np.median([b[4] for b in rest if ink.areas[b[0]] >= 0.25 * largest]))
    pen = float(np.median([ink.areas[b[0]] / max(b[3], b[4]) for b in rest]))  # a stroke's width, roughly
    rest += [b for b in edges if max(b[3], b[4]) < 1.5 * tall and not _edge_line(b, rest, pen, tall, ink)]
    rest = [b for b in rest if not (min(b[1], w - b[1] - b[3]) <= 0.03 * w  # the paper's edge a few pixels in
                                    and _edge_line(b, [r for r in rest if r is not b], pen, tall, ink))]
    big = [b for b in rest if b[4] >= 0.6 * tall]
    top, bottom = float(np.median([b[2] for b in big])), float(np.median([b[2] + b[4] for b in big]))
    in_row = [b for b in rest if max(top - (b[2] + b[4]), b[2] - bottom) <= 0.2 * tall  # a 4's top, a 5's bar stay
              and not (b[3] >= 4 * b[4] and b[3] >= 1.5 * tall)]  # a flat line longer than a digit is tall
    return in_row or rest


def _edge_line(b: Box, rest: list[Box], pen: float, tall: float, ink: Ink) -> bool:
    """An edge-like piece thinner than the pen and a digit's height or more from the row's ink: the
    page's edge, not a 1 that the crop cut close to."""
    gap = min((max(r[1] - (b[1] + b[3]), b[1] - (r[1] + r[3])) for r in rest), default=0)
    return ink.areas[b[0]] / max(b[3], b[4]) < 0.6 * pen and gap > 0.6 * tall


def columns(ink: Ink) -> tuple[list[list[Box]], bool]:
    """Components grouped into digits left to right: pieces whose columns overlap are one digit,
    and a small piece (a 5's bar, a 7's stroke) joins the digit it is closest to. And whether ink
    as tall as a small digit was left out as a speck (the reading should then be checked)."""
    groups: list[list[Box]] = []
    boxes = _on_the_page(ink)
    tall = float(np.median([b[4] for b in boxes]))
    for b in sorted(boxes, key=lambda b: b[1]):
        if groups:
            gx0, _, gx1, _ = span(groups[-1])
            overlap = min(gx1, b[1] + b[3]) - max(gx0, b[1])
            cut = overlap > -4 and b[1] + b[3] - gx0 <= 0.9 * tall  # halves of a digit a removed line split
            if overlap >= 0.3 * min(b[3], gx1 - gx0) or cut:
                groups[-1].append(b)
                continue
        groups.append([b])
    heights = [span(g)[3] - span(g)[1] for g in groups]
    widths = [span(g)[2] - span(g)[0] for g in groups]
    typical = float(np.median(heights))
    bottom = float(np.median([span(g)[3] for g, h in zip(groups, heights, strict=True) if h >= 0.6 * typical]))
    typical_area = float(np.median([w * h for w, h in zip(widths, heights, strict=True)]))
    merged: list[list[Box]] = []
    home: dict[int, int] = {}  # a group's place in `merged`; absent: left out, or taken in by its right neighbour
    left_out = False
    for i, g in enumerate(groups):
        gx0, gy0, gx1, gy1 = span(g)  # a group that took in a small piece on its left is judged with it
        h, w = gy1 - gy0, gx1 - gx0
        # a digit is tall (however thin: a 1) or big (however flat: a wide 0); a 5's bar is neither
        if h >= 0.6 * typical or w * h >= 0.35 * typical_area or len(groups) == 1:
            home[i] = len(merged)
            merged.append(list(g))
            continue
        gaps = [(gx0 - span(groups[i - 1])[2], i - 1)] if i - 1 in home else []
        gaps += [(span(groups[i + 1])[0] - gx1, i + 1)] if i + 1 < len(groups) else []
        gap, j = min(gaps) if gaps else (float("inf"), i)
        at_border = gx0 <= 1 or gx1 >= ink.labels.shape[1] - 1
        low = gy1 >= bottom - 0.25 * typical  # near the baseline: not a 5's or 7's bar, nor a 4's corner
        if low and _small_digit(h, w, gap, typical) and not at_border:
            home[i] = len(merged)
            merged.append(list(g))
            continue
        if gap > 0.3 * typical or at_border:  # a speck on its own, or what is left of a line at the photo's edge
            left_out = left_out or (h >= 0.35 * typical and not at_border)  # or a digit we cannot tell from one
            continue
        if j < i:
            merged[home[j]].extend(g)
        else:
            groups[j] = groups[j] + g
    # dashes stacked in one column (what is left of grid lines at the photo's edge) are not a digit:
    # every digit has a stroke of some height
    digits = [g for g in merged if any(b[4] >= 0.3 * typical for b in g)]
    return digits or merged, left_out


def _small_digit(height: int, width: int, gap: float, typical: float) -> bool:
    """A digit written much smaller than its neighbours ("704" with a little 0), not a piece of one
    (a 5's bar, a 7's stroke: flat) nor a speck: compact, a third of the row's height or more, and
    clear of its neighbour by more than the gap between a digit's own strokes."""
    return height >= 0.35 * typical and width <= 2.5 * height and gap >= 0.12 * typical
