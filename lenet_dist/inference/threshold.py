"""Which pixels are ink, from ink strength (ink.py): Otsu's threshold, and a second look at half of
it for whole pieces of ink that are lighter than the rest (a digit in another pen)."""

from __future__ import annotations

import cv2
import numpy as np

STRONG_SHARE = 0.25  # a piece with less of its ink above Otsu than this is in a lighter pen
# The second look may go under min_ink, the floor for ink anywhere: a digit in a pen a third as dark as
# its neighbours' is fainter than that, and what it finds is kept only as a whole digit-sized piece.
FAINT_FLOOR = 0.6


def ink_mask(strength: np.ndarray, min_ink: float) -> np.ndarray:
    """Otsu's threshold, never below min_ink; and at half of it (never below FAINT_FLOOR x min_ink),
    whole pieces of ink that nothing hardly reaches above it (a digit in a lighter pen than its
    neighbours: a few of its pixels may pass Otsu, most do not) when they are digit-sized."""
    as_u8 = (strength * 255).astype(np.uint8)
    otsu, _ = cv2.threshold(as_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    strong = (strength > max(otsu / 255.0, min_ink)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (strength > max(0.5 * otsu / 255.0, FAINT_FLOOR * min_ink)).astype(np.uint8), connectivity=8)
    if count <= 2:
        return strong
    height, area = stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_AREA]
    has_strong = np.bincount(labels[strong > 0], minlength=count) >= STRONG_SHARE * area
    tallest, largest = height[1:][has_strong[1:]].max(initial=0), area[1:][has_strong[1:]].max(initial=0)
    if tallest == 0:  # nothing for a piece to be lighter than: what passes min_ink is the ink
        return (strength > max(0.5 * otsu / 255.0, min_ink)).astype(np.uint8)
    faint = [i for i in range(1, count) if not has_strong[i] and ((height[i] >= 0.3 * tallest and area[i] >=
             0.1 * largest) or (height[i] >= 0.6 * tallest and area[i] >= 0.02 * largest))]  # a light 1: thin
    return strong | np.isin(labels, faint).astype(np.uint8) if faint else strong
