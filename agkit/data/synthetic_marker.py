"""SynthFrac's shortcut: the lead laterality marker ("L" or "R" in a box) and its corners.

``marker_boxes`` says where the S x S image's four corner boxes are (also used by
``agkit.analysis.diagnostics`` to measure attention on the marker); ``_marker_patch`` draws
one box x box marker.
"""

from __future__ import annotations

import numpy as np

# 5 x 7 pixel font for the lead marker: 1 = lead (bright on a radiograph).
_GLYPHS = {
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
}
_CORNERS = ("tl", "tr", "bl", "br")


def marker_boxes(size: int) -> tuple[int, dict[str, tuple[int, int]]]:
    """(side of the marker's square box in pixels, {corner: (top row, left column)}) on a
    size x size image; the corners are "tl", "tr", "bl" and "br"."""
    box = max(7, int(round(0.17 * size)))
    inset = max(2, int(round(0.05 * size)))
    far = size - inset - box
    return box, {"tl": (inset, inset), "tr": (inset, far), "bl": (far, inset), "br": (far, far)}


def _marker_patch(letter: str, box: int) -> np.ndarray:
    """box x box float patch: a faint housing with a bright border and the lead letter."""
    hi = 4  # draw at 4x and average down for smooth edges
    big = box * hi
    yy, xx = np.mgrid[0:big, 0:big]
    glyph = np.array([[c == "1" for c in row] for row in _GLYPHS[letter]], bool)  # 7 x 5
    margin = 0.2 * big
    gy = ((yy - margin) / (big - 2 * margin) * 7).astype(int)
    gx = ((xx - margin - (big - 2 * margin) * 1 / 7) / ((big - 2 * margin) * 5 / 7) * 5).astype(int)
    ok = (gy >= 0) & (gy < 7) & (gx >= 0) & (gx < 5)
    letter_px = np.zeros((big, big), bool)
    letter_px[ok] = glyph[gy[ok], gx[ok]]
    border = np.minimum.reduce([yy, xx, big - 1 - yy, big - 1 - xx]) < max(hi, 0.08 * big)
    patch = 0.25 + 0.45 * border + 0.75 * letter_px
    return patch.reshape(box, hi, box, hi).mean(axis=(1, 3)).astype(np.float32)
