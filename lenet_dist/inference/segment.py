"""Which ink is the digit: for one digit, the largest component and the pieces that belong to it;
for a row (--number), components grouped into digits left to right."""

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
    rest += [b for b in edges if max(b[3], b[4]) < 1.5 * tall]
    big = [b for b in rest if b[4] >= 0.6 * tall]
    top, bottom = float(np.median([b[2] for b in big])), float(np.median([b[2] + b[4] for b in big]))
    in_row = [b for b in rest if max(top - (b[2] + b[4]), b[2] - bottom) <= 0.2 * tall  # a 4's top, a 5's bar stay
              and not (b[3] >= 4 * b[4] and b[3] >= 1.5 * tall)]  # a flat line longer than a digit is tall
    return in_row or rest


def _columns(ink: Ink) -> list[list[Box]]:
    """Components grouped into digits left to right: pieces whose columns overlap are one digit,
    and a small piece (a 5's bar, a 7's stroke) joins the digit it is closest to."""
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
    for i, g in enumerate(groups):
        # a digit is tall (however thin: a 1) or big (however flat: a wide 0); a 5's bar is neither
        if heights[i] >= 0.6 * typical or widths[i] * heights[i] >= 0.35 * typical_area or len(groups) == 1:
            merged.append(list(g))
            continue
        gx0, _, gx1, _ = span(g)
        gaps = [(gx0 - span(groups[j])[2], j) for j in (i - 1,) if j >= 0]
        gaps += [(span(groups[j])[0] - gx1, j) for j in (i + 1,) if j < len(groups)]
        gap, j = min(gaps)
        at_border = gx0 <= 1 or gx1 >= ink.labels.shape[1] - 1
        low = span(g)[3] >= bottom - 0.25 * typical  # near the baseline: not a 5's or 7's bar, nor a 4's corner
        if low and _small_digit(heights[i], widths[i], gap, typical) and not at_border:
            merged.append(list(g))
            continue
        if gap > 0.3 * typical or at_border:
            continue  # a speck on its own, or what is left of a line at the photo's edge
        (merged[-1] if j < i and merged else groups[j]).extend(g)
    # dashes stacked in one column (what is left of grid lines at the photo's edge) are not a digit:
    # every digit has a stroke of some height
    digits = [g for g in merged if any(b[4] >= 0.3 * typical for b in g)]
    return _pen_lifts_joined(digits or merged, typical)


def _pen_lifts_joined(groups: list[list[Box]], typical: float) -> list[list[Box]]:
    """A digit drawn in two strokes that do not touch (a 4's corner beside its upright) is one digit:
    neighbours closer than a pen lift, together no wider than a digit, one of them short of the
    row's height. Two digits side by side are each as tall as the row (a 1 too)."""
    out = [groups[0]] if groups else []
    for g in groups[1:]:
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = span(out[-1]), span(g)
        short = min(ay1 - ay0, by1 - by0) < 0.75 * typical
        if short and bx0 - ax1 < 0.15 * typical and max(ax1, bx1) - min(ax0, bx0) <= 0.9 * typical:
            out[-1] = out[-1] + g
        else:
            out.append(g)
    return out


def _small_digit(height: int, width: int, gap: float, typical: float) -> bool:
    """A digit written much smaller than its neighbours ("704" with a little 0), not a piece of one
    (a 5's bar, a 7's stroke: flat) nor a speck: compact, a third of the row's height or more, and
    clear of its neighbour by more than the gap between a digit's own strokes."""
    return height >= 0.35 * typical and width <= 2.5 * height and gap >= 0.12 * typical


WAIST = 0.5  # touching digits meet in a column with less ink than this share of a typical column's


def _split_touching(ink: Ink, g: list[Box], digit_width: float, row_height: float) -> list[list[Box]]:
    """A piece of ink as tall as the row and as wide as two digits or more, cut in two at its
    thinnest column near the middle when that column is thin (where two digits touch), then each
    half the same way; else as it is (a digit written wide). Each part keeps the components, their
    boxes narrowed to its columns."""
    x0, y0, x1, y1 = span(g)
    w, widest = x1 - x0, max(b[3] for b in g)  # one piece as wide as two digits: a 7's loose bar is not that
    if widest <= 1.8 * digit_width or widest <= 1.3 * (y1 - y0) or y1 - y0 < 0.8 * row_height:
        return [g]
    if w > 8 * digit_width:
        raise SegmentationError(f"a piece of ink {w}x{y1 - y0} px is as wide as {round(w / digit_width)} digits; "
                                "leave a gap between digits")
    cols = np.isin(ink.labels[y0:y1, x0:x1], [b[0] for b in g]).sum(0).astype(np.float64)
    lo, hi = int(0.35 * w), int(0.65 * w) + 1
    cut = lo + int(np.argmin(cols[lo:hi] + 1e-3 * np.abs(np.arange(lo, hi) - w / 2)))
    if cols[cut] > WAIST * float(np.median(cols[cols > 0])):
        return [g]
    halves = [[(lb, max(x, x0 + a), y, min(x + bw, x0 + b) - max(x, x0 + a), bh) for lb, x, y, bw, bh in g
               if min(x + bw, x0 + b) > max(x, x0 + a)] for a, b in ((0, cut), (cut, w))]
    return [part for half in halves for part in _split_touching(ink, half, digit_width, row_height)]


def digit_columns(ink: Ink) -> list[list[Box]]:
    """The digits of a row, left to right; digits that touch are cut apart where they meet."""
    groups = _columns(ink)
    shapes = [(span(g)[2] - span(g)[0], span(g)[3] - span(g)[1]) for g in groups]
    single = [w for w, h in shapes if w <= 1.1 * h]
    digit_width = float(np.median(single)) if single else 0.7 * float(np.median([h for _, h in shapes]))
    out = []
    row_height = float(np.median([h for _, h in shapes]))
    for g in groups:
        out += _split_touching(ink, g, digit_width, row_height)
    return out
