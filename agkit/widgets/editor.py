"""The editing model of the annotation widget: rasterise shapes, keep one mask and its history.

Everything here is plain numpy, at the image's own resolution, so the rules can be read and
tested without a browser. Coordinates are image pixels, x to the right, y down, measured on
pixel *edges*: pixel ``mask[i, j]`` covers x in [j, j+1) and y in [i, i+1), so its centre is
(j + 0.5, i + 0.5).

* box (x0, y0, x1, y1): covers ``mask[y0:y1, x0:x1]``, corners rounded to the nearest edge
  (``agkit.data.masks.rasterize_boxes``);
* brush/eraser: the pixels whose centre lies within ``radius`` of the stroke's polyline;
* polygon: the pixels whose centre lies inside it.

Every function rejects NaN or infinite coordinates and a brush radius below 1 with a
ValueError before anything is changed.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.path import Path as PolygonPath

from agkit.data.masks import rasterize_boxes


def finite_points(points, what="point"):
    """points [(x, y), ...] -> K x 2 float array; ValueError naming the first non-finite one."""
    try:
        pts = np.asarray(points, float).reshape(-1, 2)
    except (TypeError, ValueError):
        raise ValueError(f"Expected {what}s as (x, y) numbers in image pixels, "
                         f"got {points!r}.") from None
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"{what} {k} is ({pts[k, 0]}, {pts[k, 1]}): coordinates must be finite "
                         "numbers (no NaN or inf); nothing was drawn.")
    return pts


def check_radius(radius):
    """The brush radius as a float; ValueError when it is not a finite number >= 1."""
    try:
        value = float(radius)
    except (TypeError, ValueError):
        raise ValueError(f"The brush radius must be a number of image pixels, "
                         f"got {radius!r}.") from None
    if isinstance(radius, bool) or not math.isfinite(value) or value < 1:
        raise ValueError(f"The brush radius must be a finite number >= 1 image pixel, "
                         f"got {radius!r}; nothing was drawn.")
    return value


def box_pixels(x0, y0, x1, y1, shape):
    """H x W bool array, True on mask[y0:y1, x0:x1]; corners in any order, clipped to the image."""
    (x0, y0), (x1, y1) = finite_points([(x0, y0), (x1, y1)], "box corner")
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    return rasterize_boxes([(x0, y0, x1, y1)], shape) > 0


def stroke_pixels(points, radius, shape):
    """H x W bool array, True where the pixel centre is within `radius` of the polyline.

    points: sequence of (x, y) in image pixels; one point gives a disc. radius >= 1.
    """
    h, w = shape
    pts = finite_points(points, "stroke point")
    radius = check_radius(radius)
    if len(pts) == 0:
        raise ValueError("A stroke needs at least one point.")
    if len(pts) == 1:
        pts = np.vstack([pts, pts])
    out = np.zeros(shape, bool)
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
        # only look at the segment's bounding box grown by the radius
        x0 = max(int(np.floor(min(ax, bx) - radius)), 0)
        x1 = min(int(np.ceil(max(ax, bx) + radius)) + 1, w)
        y0 = max(int(np.floor(min(ay, by) - radius)), 0)
        y1 = min(int(np.ceil(max(ay, by) + radius)) + 1, h)
        if x0 >= x1 or y0 >= y1:
            continue
        cy, cx = np.mgrid[y0:y1, x0:x1] + 0.5  # pixel centres
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else np.clip(((cx - ax) * dx + (cy - ay) * dy) / length2, 0, 1)
        dist2 = (cx - ax - t * dx) ** 2 + (cy - ay - t * dy) ** 2
        out[y0:y1, x0:x1] |= dist2 <= radius * radius
    return out


def polygon_pixels(points, shape):
    """H x W bool array, True where the pixel centre is inside the polygon [(x, y), ...].

    The one polygon rasteriser of the widget; kept alone so that it can be replaced by the
    kit's shared rasteriser with the same pixel-centre rule.
    """
    pts = finite_points(points, "polygon vertex")
    if len(pts) < 3:
        raise ValueError(f"A polygon needs at least 3 vertices, got {len(pts)}; click more points.")
    h, w = shape
    x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(pts.max(0)).astype(int) + 1, (w, h))
    out = np.zeros(shape, bool)
    if x0 < x1 and y0 < y1:
        cy, cx = np.mgrid[y0:y1, x0:x1] + 0.5  # pixel centres
        inside = PolygonPath(pts).contains_points(np.column_stack([cx.ravel(), cy.ravel()]))
        out[y0:y1, x0:x1] = inside.reshape(cx.shape)
    return out


class MaskEditor:
    """One mask being edited, with undo/redo.

    mask: H x W uint8 array of 0/1 (a copy is kept). Every edit pushes the previous mask on
    the undo stack (at most `max_undo` of them) and empties the redo stack. An edit that is
    rejected (bad coordinates or radius) raises before anything changes.
    """

    def __init__(self, mask, max_undo=50):
        self.mask = (np.asarray(mask) > 0).astype(np.uint8)
        self.max_undo = max_undo
        self._undo, self._redo = [], []

    def _apply(self, pixels, value):
        new = self.mask.copy()
        new[pixels] = value
        if np.array_equal(new, self.mask):
            return False  # nothing changed: no history entry, nothing to save
        self._undo = (self._undo + [self.mask])[-self.max_undo:]
        self._redo = []
        self.mask = new
        return True

    def draw_box(self, x0, y0, x1, y1):
        return self._apply(box_pixels(x0, y0, x1, y1, self.mask.shape), 1)

    def paint(self, points, radius):
        return self._apply(stroke_pixels(points, radius, self.mask.shape), 1)

    def erase(self, points, radius):
        return self._apply(stroke_pixels(points, radius, self.mask.shape), 0)

    def fill_polygon(self, points):
        return self._apply(polygon_pixels(points, self.mask.shape), 1)

    def clear(self):
        return self._apply(np.ones(self.mask.shape, bool), 0)

    def snapshot(self):
        """The whole state, to take an edit back with restore() (masks never change in place)."""
        return self.mask, self._undo[:], self._redo[:]

    def restore(self, state):
        self.mask, self._undo, self._redo = state

    def _step(self, source, target):
        """Move one state from the source stack to the mask, the mask onto target."""
        if not source:
            return False
        target.append(self.mask)
        self.mask = source.pop()
        return True

    def undo(self):
        return self._step(self._undo, self._redo)

    def redo(self):
        return self._step(self._redo, self._undo)
