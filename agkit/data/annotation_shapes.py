"""The annotated shapes of one image (``Shapes``), and what every annotation parser shares.

The parsers read annotation files into ``Shapes`` (polygons, boxes, discs and decoded COCO
RLE masks of one image, with the frame their coordinates refer to); ``Shapes.rasterize``
draws them at the image's real size. They never hand on an annotation that draws no pixel:
a malformed file or value (bad JSON/XML, not UTF-8, NaN, a missing key, YOLO coordinates
outside [0, 1]) is a ValueError naming the file and the annotation or line, and a well-formed
shape that covers no pixel centre is skipped with one warning per file that counts them.

The parsers are ``annotation_coco.read_coco``, ``annotation_yolo.read_yolo`` and
``annotation_voc.read_voc``; ``MaskStore.import_coco/import_yolo`` and the real-dataset
loaders use these same parsers. ``Shapes.rasterize`` gives an H x W uint8 0/1 mask in the
pixel convention of ``agkit.data.shapes``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agkit.data.shapes import check_shape, rasterize_boxes, rasterize_discs, rasterize_polygons

__all__ = ["Shapes"]


@dataclass
class Shapes:
    """The annotated shapes of one image.

    polygons: flat [x1, y1, x2, y2, ...] lists; boxes: (x0, y0, x1, y1); discs: (x, y)
        centres filled to ``radius``; masks: h x w uint8 0/1 arrays covering the whole frame
        (decoded COCO RLE), resampled to the image's size by pixel centre.
    frame: (width, height) the coordinates refer to: (1.0, 1.0) for normalised YOLO
        coordinates, the annotated image size for COCO/VOC; None when they are already in
        the pixels of the image as stored. Coordinates are rescaled to the real image size.
    """

    polygons: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    discs: list = field(default_factory=list)
    radius: float = 0.0
    frame: tuple[float, float] | None = None
    masks: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.polygons or self.boxes or self.discs or self.masks)

    def rasterize(self, shape) -> np.ndarray:
        """The filled shapes as an H x W uint8 0/1 mask, with (H, W) = shape."""
        height, width = check_shape(shape)
        sx, sy = (
            (1.0, 1.0) if self.frame is None else (width / self.frame[0], height / self.frame[1])
        )

        def scale(xy):  # rounding drops float noise such as 0.1 * 40 = 4.000000000000001
            return [round(float(v) * (sx if k % 2 == 0 else sy), 6) for k, v in enumerate(xy)]

        mask = rasterize_polygons([scale(p) for p in self.polygons], shape)
        mask |= rasterize_boxes([scale(b) for b in self.boxes], shape)
        if self.discs:  # a radius is in pixels of the frame: scale it like x
            mask |= rasterize_discs([scale(c) for c in self.discs], self.radius * sx, shape)
        for m in self.masks:  # the frame pixel holding each image pixel's centre
            rows = ((np.arange(height) + 0.5) * m.shape[0] / height).astype(int)
            cols = ((np.arange(width) + 0.5) * m.shape[1] / width).astype(int)
            mask |= m[np.ix_(rows, cols)]
        return mask


def _read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a file, or a ValueError naming the file and the line that is not."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); {what} must be "
            "UTF-8: re-save it as UTF-8 (e.g. from a Latin-1 editor, 'Save as' UTF-8)."
        ) from None


def _numbers(values, what: str, where: str, n: int | None = None) -> list[float]:
    """values as finite floats, or a ValueError naming where they come from."""
    shown = repr(values) if len(repr(values)) <= 80 else repr(values)[:77] + "..."
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {what} must be numbers, got {shown}.") from None
    if n is not None and len(numbers) != n:
        raise ValueError(f"{where}: {what} must be {n} numbers, got {shown}.")
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{where}: {what} must be finite numbers, got {shown} (NaN or inf).")
    return numbers


def _warn_skipped(where: str, skipped: list[str]) -> None:
    """One warning for the annotations of one file that draw no pixel (and were left out)."""
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(
            f"{where}: {len(skipped)} annotation(s) draw no pixel and were skipped: "
            f"{'; '.join(skipped[:5])}{more}. Fix or delete them to get their masks.",
            stacklevel=3,
        )
