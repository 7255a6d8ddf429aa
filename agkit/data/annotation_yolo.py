"""YOLO label files -> ``Shapes`` in normalised coordinates (frame (1, 1)).

A YOLO line ``cls xc yc w h`` is a box; ``cls x1 y1 x2 y2 x3 y3 ...`` (three or more points,
YOLO's segmentation format) is a polygon, never a box.
Every coordinate is in [0, 1]; a missing or empty file (a negative image) has no shapes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from agkit.data.annotation_shapes import Shapes, _read_text, _warn_skipped

__all__ = ["read_yolo", "yolo_classes"]


def _yolo_lines(path: Path) -> Iterator[tuple[int, int, list[float]]]:
    """(line number, class, coordinates) per non-empty line of a YOLO label file."""
    for n, line in enumerate(_read_text(path, "a YOLO label file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            values = []
        if len(values) < 5 or (len(values) > 5 and (len(values) % 2 == 0 or len(values) < 7)):
            raise ValueError(
                f"{path}:{n}: expected 'cls xc yc w h' (a box) or "
                f"'cls x1 y1 x2 y2 x3 y3 ...' (a polygon), got {line!r}."
            )
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{path}:{n}: NaN or inf in {line!r}; YOLO values are numbers.")
        if values[0] < 0 or values[0] % 1:
            raise ValueError(f"{path}:{n}: the class must be a whole number >= 0, got {line!r}.")
        if not all(0 <= v <= 1 for v in values[1:]):
            raise ValueError(
                f"{path}:{n}: YOLO coordinates are normalised to [0, 1], got {line!r}; values "
                "> 1 look like pixels: divide x and w by the image width, y and h by its height."
            )
        yield n, int(values[0]), values[1:]


def read_yolo(path, classes=None) -> Shapes:
    """One YOLO label file -> its shapes in normalised coordinates (frame (1, 1)).

    Lines are "cls xc yc w h" (a box) or "cls x1 y1 x2 y2 x3 y3 ..." (a polygon of three or
    more points, YOLO's segmentation format), every coordinate in [0, 1]. classes: class
    numbers to keep (None: all). A missing or empty file (a negative image) gives no shapes.
    A box or polygon of no area is skipped with a warning; any other bad line is a
    ValueError naming the file and line.
    """
    keep = None if classes is None else {int(c) for c in classes}
    path = Path(path)
    shapes = Shapes(frame=(1.0, 1.0))
    if not path.is_file():
        return shapes
    skipped = []
    for n, cls, xy in _yolo_lines(path):
        if keep is not None and cls not in keep:
            continue
        if len(xy) == 4:
            xc, yc, w, h = xy
            if w == 0 or h == 0:
                skipped.append(f"line {n}: a box of width or height 0")
                continue
            shapes.boxes.append((xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2))
        else:
            xs, ys = np.asarray(xy[0::2]), np.asarray(xy[1::2])
            if np.dot(xs, np.roll(ys, -1)) == np.dot(ys, np.roll(xs, -1)):  # shoelace area 0
                skipped.append(f"line {n}: a polygon of no area")
                continue
            shapes.polygons.append(xy)
    _warn_skipped(str(path), skipped)
    return shapes


def yolo_classes(path) -> set[int]:
    """The class numbers that appear in one YOLO label file (empty if missing)."""
    path = Path(path)
    return {cls for _, cls, _ in _yolo_lines(path)} if path.is_file() else set()
