"""Guidance masks from the annotation files that come with real datasets.

Annotation files describe shapes (COCO polygons, YOLO or Pascal VOC boxes, CUB part
points); a mask is those shapes filled in at the image's own resolution. Parsing happens
once when a dataset is opened; rasterising happens when an image is read, so opening a
dataset of thousands of images stays quick and holds no pixel masks in memory.

``ShapeMasks`` is the callable ``image_id -> H x W uint8 mask | None`` that GuidedDataset
takes as its ``masks`` argument; GuidedDataset then resizes, crops and flips image and
mask together.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agkit.data.masks import rasterize_boxes, rasterize_discs, rasterize_polygons
from agkit.data.real_io import image_shape


@dataclass
class Shapes:
    """The annotated shapes of one image.

    kind:   "polygons" (items: flat [x1, y1, x2, y2, ...] lists), "boxes" (items:
            (x0, y0, x1, y1)) or "discs" (items: (x, y) centres, filled to ``radius``).
    frame:  (width, height) of the image the coordinates refer to; (1.0, 1.0) for
            normalised YOLO coordinates; None when they are already in the pixels of the
            image as stored. Coordinates are rescaled to the real image size when they differ.
    """

    kind: str
    items: list
    frame: tuple[float, float] | None = None
    radius: float = 0.0

    def rasterize(self, shape: tuple[int, int]) -> np.ndarray:
        """The filled shapes as an H x W uint8 0/1 mask, with (H, W) = shape."""
        height, width = shape
        sx, sy = (1.0, 1.0) if self.frame is None else (width / self.frame[0], height / self.frame[1])

        def scale(xy):  # rounding drops float noise such as 0.1 * 40 = 4.000000000000001
            return [round(v * (sx if k % 2 == 0 else sy), 6) for k, v in enumerate(xy)]

        if self.kind == "polygons":
            mask = rasterize_polygons([scale(p) for p in self.items], shape)
        elif self.kind == "boxes":
            mask = rasterize_boxes([scale(b) for b in self.items], shape)
        elif self.kind == "discs":
            mask = rasterize_discs([scale(c) for c in self.items], self.radius, shape)
        else:
            raise ValueError(f"unknown shape kind {self.kind!r}; use 'polygons', 'boxes' or 'discs'.")
        return np.asarray(mask, dtype=np.uint8)


class ShapeMasks:
    """Callable image_id -> H x W uint8 mask (None when the image has no shapes).

    shapes: image_id -> Shapes. files/keys: where to read each image's size from
    (``files`` as in real_io, ``keys`` image_id -> file key).
    """

    def __init__(self, shapes: dict, files, keys: dict):
        self.shapes, self.files, self.keys = shapes, files, keys

    def __contains__(self, image_id) -> bool:
        return image_id in self.shapes

    def __call__(self, image_id: str) -> np.ndarray | None:
        shapes = self.shapes.get(image_id)
        if shapes is None or not shapes.items:
            return None
        return shapes.rasterize(image_shape(self.files, self.keys[image_id]))


# ---------------------------------------------------------------------------------------
# Parsers: annotation file(s) -> {file stem: Shapes}
# ---------------------------------------------------------------------------------------


def read_coco_polygons(path) -> dict[str, Shapes]:
    """COCO instance annotations -> polygons per image, keyed by the file_name's stem.

    Polygon segmentations are used as they are; an annotation stored as RLE (iscrowd=1)
    falls back to its bbox, drawn as a rectangle polygon.
    """
    coco = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    images = {im["id"]: im for im in coco.get("images", [])}
    result: dict[str, Shapes] = {}
    for ann in coco.get("annotations", []):
        image = images.get(ann["image_id"])
        if image is None:
            continue
        stem = Path(image["file_name"]).stem
        shapes = result.setdefault(stem, Shapes("polygons", [], (image["width"], image["height"])))
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, list) and segmentation:
            shapes.items += [list(map(float, p)) for p in segmentation if len(p) >= 6]
        elif ann.get("bbox"):
            x, y, w, h = map(float, ann["bbox"])
            shapes.items.append([x, y, x + w, y, x + w, y + h, x, y + h])
    return result


def read_yolo_boxes(path, classes=None) -> Shapes:
    """One YOLO label file ("cls xc yc w h" per line, normalised) -> boxes of ``classes``.

    classes: iterable of class numbers to keep (None keeps all). A missing or empty
    file gives no boxes.
    """
    keep = None if classes is None else {int(c) for c in classes}
    boxes = []
    path = Path(path)
    lines = path.read_text(encoding="utf-8-sig").splitlines() if path.is_file() else []
    for line in lines:
        parts = line.split()
        if len(parts) < 5:
            continue
        cls, xc, yc, w, h = int(float(parts[0])), *map(float, parts[1:5])
        if keep is None or cls in keep:
            boxes.append((xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2))
    return Shapes("boxes", boxes, frame=(1.0, 1.0))


def yolo_classes(path) -> set[int]:
    """The set of class numbers that appear in one YOLO label file (empty if missing)."""
    path = Path(path)
    if not path.is_file():
        return set()
    return {int(float(line.split()[0])) for line in path.read_text(encoding="utf-8-sig").splitlines()
            if line.split()}


def read_voc_boxes(path) -> Shapes:
    """One Pascal VOC XML file -> its boxes, in the pixel frame given by <size>."""
    path = Path(path)
    if not path.is_file():
        return Shapes("boxes", [])
    root = ET.parse(path).getroot()
    size = root.find("size")
    frame = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        frame = (float(size.findtext("width")), float(size.findtext("height")))
        if frame[0] <= 0 or frame[1] <= 0:
            frame = None
    boxes = []
    for box in root.iter("bndbox"):
        x0, y0, x1, y1 = (float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((x0, y0, x1, y1))
    return Shapes("boxes", boxes, frame)
