"""The editing model of the annotation widget: turn mouse shapes into pixels, keep one mask
and its history.

Everything here is plain numpy, at the image's own resolution, so the rules can be read and
tested without a browser. The pixels come from the kit's rasterisers in
``agkit.data.shapes``, with their one convention: coordinates are image pixels, x to the
right, y down; pixel ``mask[i, j]`` covers x in [j, j+1) and y in [i, i+1), and belongs to a
shape when its centre (j + 0.5, i + 0.5) is inside it.

* box (x0, y0, x1, y1): whole-number corners cover ``mask[y0:y1, x0:x1]``;
* brush/eraser: the pixels whose centre lies within ``radius`` of the stroke's polyline;
* polygon: the pixels whose centre lies inside it (even-odd rule).

This module adds what a mouse needs on top: corners in any order, and NaN or infinite
coordinates or a brush radius below 1 rejected with a ValueError before anything changes.
"""

from __future__ import annotations

import math

import numpy as np

from agkit.data.shapes import rasterize_boxes, rasterize_polygons, rasterize_strokes


def finite_points(points, what="point"):
    """points [(x, y), ...] -> K x 2 float array; ValueError naming the first non-finite one."""
    try:
        pts = np.asarray(points, float).reshape(-1, 2)
    except (TypeError, ValueError):
        raise ValueError(
            f"Expected {what}s as (x, y) numbers in image pixels, got {points!r}."
        ) from None
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(
            f"{what} {k} is ({pts[k, 0]}, {pts[k, 1]}): coordinates must be finite "
            "numbers (no NaN or inf); nothing was drawn."
        )
    return pts


def check_radius(radius):
    """The brush radius as a float; ValueError when it is not a finite number >= 1."""
    try:
        value = float(radius)
    except (TypeError, ValueError):
        raise ValueError(
            f"The brush radius must be a number of image pixels, got {radius!r}."
        ) from None
    if isinstance(radius, bool) or not math.isfinite(value) or value < 1:
        raise ValueError(
            f"The brush radius must be a finite number >= 1 image pixel, "
            f"got {radius!r}; nothing was drawn."
        )
    return value


def box_pixels(x0, y0, x1, y1, shape):
    """H x W bool array of the box with corners (x0, y0), (x1, y1) given in any order.

    The box as the mouse drags it; rasterised by ``agkit.data.shapes.rasterize_boxes``.
    """
    (x0, y0), (x1, y1) = finite_points([(x0, y0), (x1, y1)], "box corner")
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    return rasterize_boxes([(x0, y0, x1, y1)], shape) > 0


def stroke_pixels(points, radius, shape):
    """H x W bool array of one brush stroke through `points` [(x, y), ...] (radius >= 1).

    Rasterised by ``agkit.data.shapes.rasterize_strokes``; one point gives a disc.
    """
    pts = finite_points(points, "stroke point")
    radius = check_radius(radius)
    if len(pts) == 0:
        raise ValueError("A stroke needs at least one point.")
    return rasterize_strokes([pts], radius, shape) > 0


def polygon_pixels(points, shape):
    """H x W bool array of the polygon clicked at `points` [(x, y), ...].

    Rasterised by ``agkit.data.shapes.rasterize_polygons``.
    """
    pts = finite_points(points, "polygon vertex")
    if len(pts) < 3:
        raise ValueError(f"A polygon needs at least 3 vertices, got {len(pts)}; click more points.")
    return rasterize_polygons([pts.ravel()], shape) > 0


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
        self._undo = (self._undo + [self.mask])[-self.max_undo :]
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
