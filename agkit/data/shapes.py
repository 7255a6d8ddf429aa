"""Shapes <-> masks: the rasterisers and masks -> boxes/polygons, in one pixel convention.

One pixel convention for every shape (the one COCO, YOLO, Pascal VOC boxes and the
annotation widget's canvas use):

* coordinates are continuous image coordinates, x to the right, y down; pixel
  ``mask[r, c]`` is the unit square [c, c + 1) x [r, r + 1), so its centre is
  (c + 0.5, r + 0.5) and the image spans [0, W] x [0, H];
* a pixel belongs to a shape when its *centre* is inside the shape. A centre exactly on
  a box or polygon edge counts on the left and top edges and not on the right and bottom
  ones, so shapes that share an edge never both claim a pixel, and a box (x0, y0, x1, y1)
  with whole-number corners covers exactly ``mask[y0:y1, x0:x1]``;
* polygons are filled with the even-odd rule; a disc (or a brush stroke, a thick
  polyline) includes the centres at exactly ``radius`` from its middle (line).

``mask_to_polygons`` walks the pixel edges of a mask, so ``rasterize_polygons`` of its
output gives the mask back exactly (for masks without holes).

Annotation files (COCO, YOLO, Pascal VOC) are read into shapes by ``annotation_shapes``
and its parsers ``annotation_coco``, ``annotation_yolo`` and ``annotation_voc``. Every mask
here is an H x W uint8 array of 0/1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import ndimage

__all__ = [
    "rasterize_boxes",
    "rasterize_polygons",
    "rasterize_discs",
    "rasterize_strokes",
    "mask_to_boxes",
    "mask_to_polygons",
    "as_binary_mask",
    "check_shape",
]


def check_shape(shape) -> tuple[int, int]:
    """(H, W) as two positive ints, or a ValueError."""
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W), got {shape!r}.") from None
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive (H, W), got {shape!r}.")
    return h, w


def as_binary_mask(mask, what: str = "mask") -> np.ndarray:
    """Validate a mask (H x W, values 0/1 or bool) and return it as H x W uint8 0/1."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        hint = (
            " (drop the channel axis, e.g. mask[0])"
            if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1])
            else ""
        )
        raise ValueError(f"{what} must be a 2-D H x W array but has shape {arr.shape}{hint}.")
    if arr.size == 0:
        raise ValueError(f"{what} is empty (shape {arr.shape}); a mask needs at least one pixel.")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"{what} has dtype {arr.dtype}; pass a numeric or bool array with 0/1.")
    bad = (arr != 0) & (arr != 1)  # also catches NaN
    if bad.any():
        values = np.unique(arr[bad])[:5]
        if np.all(np.isin(arr, (0, 255))):
            fix = "it looks like a 0/255 image: pass (mask > 0)"
        else:
            fix = "threshold it first, e.g. (mask > 0.5)"
        raise ValueError(
            f"{what} must contain only 0 and 1 (or bool) but has values like "
            f"{values.tolist()}; {fix}."
        )
    return arr.astype(np.uint8)


# ------------------------------------------------------------------------ rasterising
def _first_centre_at_or_after(v: float, limit: int) -> int:
    """Index of the first pixel whose centre c + 0.5 is >= v, clipped to [0, limit]."""
    return min(max(math.ceil(v - 0.5), 0), limit)


def rasterize_boxes(boxes: Iterable, shape) -> np.ndarray:
    """Union of boxes as an H x W uint8 0/1 mask (convention: the module docstring).

    boxes: iterable of (x0, y0, x1, y1) corners; pixel (r, c) is filled when
    x0 <= c + 0.5 < x1 and y0 <= r + 0.5 < y1. Parts outside the image are dropped.
    """
    h, w = check_shape(shape)
    mask = np.zeros((h, w), np.uint8)
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box)
        if x1 < x0 or y1 < y0:
            raise ValueError(
                f"box {tuple(box)} has x1 < x0 or y1 < y0: boxes are corners (x0, y0, x1, y1); "
                "convert a COCO/[x, y, w, h] box with x1 = x + w, y1 = y + h."
            )
        c0, c1 = _first_centre_at_or_after(x0, w), _first_centre_at_or_after(x1, w)
        r0, r1 = _first_centre_at_or_after(y0, h), _first_centre_at_or_after(y1, h)
        mask[r0:r1, c0:c1] = 1
    return mask


def _even_odd(xs: np.ndarray, ys: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Which points (px, py) lie inside the polygon (xs, ys): even-odd crossings of a ray
    to the right. Half-open tests put points on left/top edges inside, right/bottom outside."""
    inside = np.zeros(px.shape, bool)
    for k in range(len(xs)):
        x0, y0, x1, y1 = xs[k - 1], ys[k - 1], xs[k], ys[k]
        if y0 == y1:
            continue  # a horizontal edge is never crossed by a horizontal ray
        crosses = (y0 > py) != (y1 > py)
        x_at = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (px < x_at)
    return inside


def rasterize_polygons(polygons: Iterable, shape) -> np.ndarray:
    """Union of polygons as an H x W uint8 0/1 mask (convention: the module docstring).

    polygons: iterable of flat COCO-style lists [x1, y1, x2, y2, ...] of at least three
    points; a pixel is filled when its centre is inside (even-odd rule).
    """
    h, w = check_shape(shape)
    mask = np.zeros((h, w), np.uint8)
    for poly in polygons:
        flat = np.asarray([float(v) for v in poly])
        if len(flat) % 2:
            raise ValueError(
                f"a polygon must be a flat list [x1, y1, x2, y2, ...] with an even "
                f"length, got {len(flat)} numbers."
            )
        if len(flat) < 6:
            raise ValueError(
                f"a polygon needs at least 3 points (it covers no area otherwise), "
                f"got {len(flat) // 2}; draw a box for fewer points."
            )
        if not np.isfinite(flat).all():
            raise ValueError("polygon coordinates must be finite numbers (found NaN or inf).")
        xs, ys = flat[0::2], flat[1::2]
        c0, c1 = _first_centre_at_or_after(xs.min(), w), _first_centre_at_or_after(xs.max(), w)
        r0, r1 = _first_centre_at_or_after(ys.min(), h), _first_centre_at_or_after(ys.max(), h)
        if c0 >= c1 or r0 >= r1:
            continue
        py, px = np.mgrid[r0:r1, c0:c1] + 0.5  # pixel centres inside the bounding box
        mask[r0:r1, c0:c1] |= _even_odd(xs, ys, px, py)
    return mask


def rasterize_strokes(strokes: Iterable, radius: float, shape) -> np.ndarray:
    """Union of thick polylines (brush strokes) as an H x W uint8 0/1 mask.

    strokes: iterable of polylines, each a sequence of (x, y) points (or a flat list
    [x1, y1, x2, y2, ...]); one point is a disc. Pixel (r, c) is filled when its centre
    (c + 0.5, r + 0.5) is within ``radius`` (inclusive) of a segment of some polyline.
    """
    h, w = check_shape(shape)
    radius = float(radius)
    if not radius >= 0:
        raise ValueError(f"radius must be >= 0, got {radius}.")
    mask = np.zeros((h, w), bool)
    for stroke in strokes:
        pts = np.asarray(stroke, float).reshape(-1, 2)
        if len(pts) == 0:
            raise ValueError("a stroke needs at least one (x, y) point.")
        if not np.isfinite(pts).all():
            raise ValueError("stroke coordinates must be finite numbers (found NaN or inf).")
        pts = np.vstack([pts, pts]) if len(pts) == 1 else pts
        for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:], strict=True):
            # only the pixels whose centres can be near: the segment's box grown by radius
            c0 = _first_centre_at_or_after(min(ax, bx) - radius, w)
            c1 = _first_centre_at_or_after(np.nextafter(max(ax, bx) + radius, np.inf), w)
            r0 = _first_centre_at_or_after(min(ay, by) - radius, h)
            r1 = _first_centre_at_or_after(np.nextafter(max(ay, by) + radius, np.inf), h)
            if c0 >= c1 or r0 >= r1:
                continue
            py, px = np.mgrid[r0:r1, c0:c1] + 0.5  # pixel centres
            dx, dy = bx - ax, by - ay
            length2 = dx * dx + dy * dy
            t = 0.0 if length2 == 0 else np.clip(((px - ax) * dx + (py - ay) * dy) / length2, 0, 1)
            mask[r0:r1, c0:c1] |= (px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2 <= radius**2
    return mask.astype(np.uint8)


def rasterize_discs(centers: Iterable, radius: float, shape) -> np.ndarray:
    """Union of filled discs as an H x W uint8 0/1 mask (convention: the module docstring).

    centers: iterable of (x, y); pixel (r, c) is filled when
    (c + 0.5 - x)**2 + (r + 0.5 - y)**2 <= radius**2 for some centre (CUB parts: radius 50).
    A disc is a stroke of one point (``rasterize_strokes``).
    """
    return rasterize_strokes([[c] for c in centers], radius, shape)


# -------------------------------------------------------------- masks -> boxes/polygons
def components(mask: np.ndarray) -> list[tuple[np.ndarray, tuple[slice, slice]]]:
    """4-connected components of a 0/1 mask: (component as bool crop, its slices)."""
    labels, _ = ndimage.label(mask)
    found = ndimage.find_objects(labels)
    return [((labels[sl] == k + 1), sl) for k, sl in enumerate(found) if sl is not None]


def mask_to_boxes(mask) -> list[tuple[int, int, int, int]]:
    """One (x0, y0, x1, y1) box per 4-connected component; ``rasterize_boxes`` convention."""
    mask = as_binary_mask(mask)
    return [(sl[1].start, sl[0].start, sl[1].stop, sl[0].stop) for _, sl in components(mask)]


def _outline(region: np.ndarray) -> list[tuple[int, int]]:
    """Corners (x, y) of the pixel-edge outline of one hole-free 4-connected region, in order.

    Walks the pixel edges that separate the region from the outside (each corner has exactly
    one outgoing edge because the region has no holes and no diagonal pinches) and keeps the
    corners where the direction changes.
    """
    p = np.pad(region, 1)
    inside = p[1:-1, 1:-1]
    step = {}  # corner -> next corner, walking clockwise with the region on the right
    for y, x in zip(*np.nonzero(inside & ~p[:-2, 1:-1]), strict=True):  # top edge, walking right
        step[(x, y)] = (x + 1, y)
    for y, x in zip(*np.nonzero(inside & ~p[1:-1, 2:]), strict=True):  # right edge, walking down
        step[(x + 1, y)] = (x + 1, y + 1)
    for y, x in zip(*np.nonzero(inside & ~p[2:, 1:-1]), strict=True):  # bottom edge, walking left
        step[(x + 1, y + 1)] = (x, y + 1)
    for y, x in zip(*np.nonzero(inside & ~p[1:-1, :-2]), strict=True):  # left edge, walking up
        step[(x, y + 1)] = (x, y)
    start = corner = min(step)
    corners = []
    while True:
        corners.append((int(corner[0]), int(corner[1])))
        corner = step[corner]
        if corner == start:
            break
    n = len(corners)
    return [
        corners[k]
        for k in range(n)
        if (corners[k][0] - corners[k - 1][0], corners[k][1] - corners[k - 1][1])
        != (corners[(k + 1) % n][0] - corners[k][0], corners[(k + 1) % n][1] - corners[k][1])
    ]


def mask_to_polygons(mask) -> list[list[float]]:
    """One flat COCO polygon [x1, y1, ...] per 4-connected component (holes are filled).

    The points are pixel corners on the component's outline, so
    ``rasterize_polygons(mask_to_polygons(m), m.shape)`` equals ``m`` for masks without holes.
    """
    mask = as_binary_mask(mask)
    polygons = []
    for region, sl in components(mask):
        points = _outline(ndimage.binary_fill_holes(region))
        polygons.append([float(v) for x, y in points for v in (x + sl[1].start, y + sl[0].start)])
    return polygons
