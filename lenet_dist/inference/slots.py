"""The ways to cut a row of ink into digits: the columns segment.py finds, joined where a digit was
drawn in strokes that do not touch, cut where digits touch, and, where the ink's shape leaves it
open, the other reading too, for predict to weigh with the model (recognition decides what
geometry cannot)."""

from __future__ import annotations

import numpy as np

from lenet_dist.inference.ink import Ink
from lenet_dist.inference.segment import Box, SegmentationError, columns, span

Digits = list[list[Box]]  # one reading of a stretch of a row: its digits, each a group of components
Slot = list[Digits]  # the ways to read one stretch of a row


def _pen_lift_slots(groups: list[list[Box]], typical: float) -> list[Slot]:
    """A digit drawn in two strokes that do not touch (a 4's corner beside its upright) is one digit:
    neighbours closer than a pen lift, together no wider than a digit, one of them short of the
    row's height. Two digits side by side are each as tall as the row (a 1 too). Neighbours that
    could be either (close, together hardly wider than a digit is tall) keep the other reading too,
    for the model to weigh."""
    def pair(i: int) -> str | None:  # "one": a pen lift; "either": the model decides; None: two digits
        if i + 1 >= len(groups):
            return None
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = span(groups[i]), span(groups[i + 1])
        gap, width = bx0 - ax1, max(ax1, bx1) - min(ax0, bx0)
        if min(ay1 - ay0, by1 - by0) < 0.75 * typical and gap < 0.15 * typical and width <= 0.9 * typical:
            return "one"
        return "either" if gap < 0.3 * typical and width <= 1.2 * typical else None

    slots: list[Slot] = []
    i = 0
    while i < len(groups):
        a, kind = groups[i], pair(i)
        if kind == "either" and pair(i + 1) == "one":  # the next piece is the rest of its own digit
            kind = None
        if kind is None:
            slots.append([[a]])
            i += 1
            continue
        b = groups[i + 1]
        slots.append([[a + b], [a, b]] if kind == "one" else [[a, b], [a + b]])
        i += 2
    return slots


WAIST = 0.5  # touching digits meet in a column with less ink than this share of a typical column's


def _waist(ink: Ink, g: list[Box]) -> tuple[int, float, float]:
    """The thinnest column near the middle of a group (x from its left), its ink, and a typical
    column's ink."""
    x0, y0, x1, y1 = span(g)
    w = x1 - x0
    cols = np.isin(ink.labels[y0:y1, x0:x1], [b[0] for b in g]).sum(0).astype(np.float64)
    lo, hi = int(0.35 * w), int(0.65 * w) + 1
    cut = lo + int(np.argmin(cols[lo:hi] + 1e-3 * np.abs(np.arange(lo, hi) - w / 2)))
    return cut, float(cols[cut]), float(np.median(cols[cols > 0]))


def _halves(g: list[Box], cut: int) -> list[list[Box]]:
    """A group cut at column `cut` (from its left): each part keeps the components, their boxes
    narrowed to its columns."""
    x0, _, x1, _ = span(g)
    return [[(lb, max(x, x0 + a), y, min(x + bw, x0 + b) - max(x, x0 + a), bh) for lb, x, y, bw, bh in g
             if min(x + bw, x0 + b) > max(x, x0 + a)] for a, b in ((0, cut), (cut, x1 - x0))]


def _wide(g: list[Box], digit_width: float, row_height: float, digits: float, height: float) -> bool:
    """As tall as the row, with one piece of ink wider than `digits` digits and `height` times its
    own height (a 7's loose bar beside its stroke is not one piece)."""
    _, y0, _, y1 = span(g)
    widest = max(b[3] for b in g)
    return widest > digits * digit_width and widest > height * (y1 - y0) and y1 - y0 >= 0.8 * row_height


def _split_touching(ink: Ink, g: list[Box], digit_width: float, row_height: float) -> list[list[Box]]:
    """A piece of ink as tall as the row and as wide as two digits or more, cut in two at its
    thinnest column near the middle when that column is thin (where two digits touch), then each
    half the same way; else as it is (a digit written wide)."""
    if not _wide(g, digit_width, row_height, 1.8, 1.3):
        return [g]
    x0, y0, x1, y1 = span(g)
    if x1 - x0 > 8 * digit_width:
        raise SegmentationError(f"a piece of ink {x1 - x0}x{y1 - y0} px is as wide as {round((x1 - x0) / digit_width)} "
                                "digits; leave a gap between digits")
    cut, ink_there, typical_column = _waist(ink, g)
    if ink_there > WAIST * typical_column:
        return [g]
    return [part for half in _halves(g, cut) for part in _split_touching(ink, half, digit_width, row_height)]


def _touching_options(ink: Ink, digits: Digits, digit_width: float, row_height: float) -> list[Digits]:
    """These digits cut where they touch, and the other reading worth weighing: uncut when a cut was
    made; for one wide piece that was not cut, cut at its waist or near its middle (digits that cross
    rather than meet)."""
    cut = [part for g in digits for part in _split_touching(ink, g, digit_width, row_height)]
    if len(cut) > len(digits):
        return [cut, digits]
    if len(digits) == 1 and _wide(digits[0], digit_width, row_height, 1.3, 1.0):
        w = span(digits[0])[2] - span(digits[0])[0]
        cuts = dict.fromkeys([_waist(ink, digits[0])[0], round(0.42 * w), round(0.5 * w), round(0.58 * w)])
        return [cut] + [_halves(digits[0], c) for c in cuts]
    return [cut]


def digit_slots(ink: Ink) -> tuple[list[Slot], bool]:
    """The digits of a row, left to right, as slots: each stretch of the row with its readings, the
    likelier by its shape first (see _pen_lift_slots, _split_touching); and whether ink the size of
    a small digit was left out (segment.columns)."""
    groups, left_out = columns(ink)
    shapes = [(span(g)[2] - span(g)[0], span(g)[3] - span(g)[1]) for g in groups]
    single = [w for w, h in shapes if w <= 1.1 * h]
    row_height = float(np.median([h for _, h in shapes]))
    digit_width = float(np.median(single)) if single else 0.7 * row_height
    slots = []
    for slot in _pen_lift_slots(groups, row_height):
        readings = [r for digits in slot for r in _touching_options(ink, digits, digit_width, row_height)]
        slots.append([r for k, r in enumerate(readings) if r not in readings[:k]])
    return slots, left_out
