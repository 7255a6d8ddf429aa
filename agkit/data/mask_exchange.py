"""Masks to and from the annotation formats other tools use: COCO JSON and YOLO label files.

The parsing lives in ``agkit.data.annotation_coco`` and ``agkit.data.annotation_yolo``, the
drawing in ``agkit.data.shapes`` (one pixel convention); this module
adds what exchanging *masks* needs on top: naming images, unioning the shapes of one image,
and turning a mask back into one COCO annotation or one YOLO box per 4-connected component.
``MaskStore.import_coco/export_coco/import_yolo/export_yolo`` are these functions plus the
store's reading and atomic writing.

Every mask here is an H x W uint8 array of 0/1.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from agkit.data.annotation_coco import read_coco
from agkit.data.annotation_shapes import Shapes
from agkit.data.annotation_yolo import read_yolo
from agkit.data.shapes import check_shape, components, mask_to_boxes, mask_to_polygons

__all__ = ["coco_masks", "masks_to_coco", "yolo_masks", "mask_to_yolo", "shape_of"]


def id_mapper(image_id) -> Callable[[str], str]:
    """How a file name becomes an image id: "file_name" (as is), "stem" or a callable."""
    if image_id == "file_name":
        return lambda name: name
    if image_id == "stem":
        return lambda name: Path(name).stem
    if callable(image_id):
        return image_id
    raise ValueError(
        f"image_id must be 'file_name', 'stem' or a callable file_name -> id, got {image_id!r}."
    )


def coco_masks(
    coco, *, image_id="file_name", categories=None, use: str = "auto"
) -> dict[str, np.ndarray]:
    """A COCO annotation file (path or loaded dict) -> {image id: H x W mask}.

    image_id: how images[].file_name becomes an image id: "file_name" (as is), "stem" (file
        name without folders and extension) or a callable file_name -> id.
    categories: None (all) or an iterable of category ids and/or names to keep.
    use: "polygon" (the segmentation: polygons or RLE), "bbox", or "auto" (the segmentation
        when present, else the bbox).
    Every annotation of one image (and of file names mapping to one id, which must then have
    one size) is unioned; masks are drawn at the height and width the file gives for the
    image. Annotations that draw no pixel are skipped with a warning (``read_coco``).
    """
    to_id = id_mapper(image_id)
    masks: dict[str, np.ndarray] = {}
    named: dict[str, str] = {}  # image id -> the first file name that gave it
    for name, shapes in read_coco(coco, categories=categories, use=use).items():
        assert shapes.frame is not None  # read_coco gives each image its (width, height)
        width, height = shapes.frame
        drawn = shapes.rasterize((int(height), int(width)))
        iid = to_id(name)
        if iid in masks and masks[iid].shape != drawn.shape:
            raise ValueError(
                f"{coco if isinstance(coco, (str, Path)) else 'the COCO dict'}: "
                f"{named[iid]!r} ({masks[iid].shape[1]} x {masks[iid].shape[0]}) and {name!r} "
                f"({int(width)} x {int(height)}) both become image id {iid!r} but differ in "
                "size; pass an image_id that tells them apart."
            )
        named.setdefault(iid, name)
        masks[iid] = masks[iid] | drawn if iid in masks else drawn
    return masks


def masks_to_coco(
    masks: Iterable[tuple[str, np.ndarray]],
    *,
    file_name=None,
    category: str = "fracture",
    polygons: bool = True,
) -> dict:
    """(image id, mask) pairs -> a COCO dict with one category.

    One annotation per 4-connected component: bbox [x, y, w, h], area (pixels), and, when
    `polygons`, the component's outline as a polygon (holes are filled).
    file_name: callable image_id -> images[].file_name (default: the id itself).
    """
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": category}]}
    for k, (iid, mask) in enumerate(masks, start=1):
        coco["images"].append(
            {
                "id": k,
                "file_name": file_name(iid) if file_name else iid,
                "height": int(mask.shape[0]),
                "width": int(mask.shape[1]),
            }
        )
        for region, sl in components(mask):
            rows, cols = sl
            ann = {
                "id": len(coco["annotations"]) + 1,
                "image_id": k,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": [cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start],
                "area": int(region.sum()),
            }
            if polygons:
                component = np.zeros_like(mask)
                component[sl] = region
                ann["segmentation"] = mask_to_polygons(component)
            coco["annotations"].append(ann)
    return coco


def yolo_masks(folder, image_shapes, *, classes=None, image_id=None) -> dict[str, np.ndarray]:
    """A folder of YOLO label files <stem>.txt -> {image id: H x W mask}.

    Lines are "cls xc yc w h" (normalised box) or "cls x1 y1 x2 y2 ..." (normalised polygon).
    image_shapes: dict image_id -> (H, W) or callable image_id -> (H, W), needed to draw.
    classes: None (all) or an iterable of class numbers to keep (GRAZPEDWRI-DX fracture: [3]).
    image_id: callable stem -> id (default: the stem). Empty files (negatives) give no mask;
    classes.txt is a list of names, not labels, and is passed over. Shapes of no area, and
    files whose shapes draw no pixel at the image's size, are skipped with a warning;
    coordinates outside [0, 1] are a ValueError naming the file and line (``read_yolo``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"No YOLO label folder at {folder}; pass the folder holding <stem>.txt files."
        )
    to_id = image_id or (lambda stem: stem)
    found: dict[str, Shapes] = {}
    file_of: dict[str, Path] = {}
    for txt in sorted(folder.glob("*.txt")):
        if txt.name != "classes.txt":
            shapes = read_yolo(txt, classes)
            iid = to_id(txt.stem)
            if iid in file_of:
                raise ValueError(
                    f"{file_of[iid]} and {txt} both become image id {iid!r}; pass an "
                    "image_id that tells them apart."
                )
            file_of[iid] = txt
            if shapes:
                found[iid] = shapes
    sizes = {iid: shape_of(image_shapes, iid) for iid in found}
    unknown = [iid for iid, size in sizes.items() if size is None]
    if unknown:
        raise ValueError(
            f"image_shapes has no (H, W) for {len(unknown)} image(s), e.g. "
            f"{unknown[:3]}; add them to draw their shapes."
        )
    masks = {iid: shapes.rasterize(sizes[iid]) for iid, shapes in found.items()}
    empty = [f"{file_of[iid].name} at {sizes[iid]}" for iid, m in masks.items() if not m.any()]
    if empty:
        warnings.warn(
            f"{folder}: the shapes of {len(empty)} label file(s) are too small to cover a "
            f"pixel centre at the image's (H, W), so they give no mask: {empty[:5]}.",
            stacklevel=2,
        )
    return {iid: m for iid, m in masks.items() if m.any()}


def mask_to_yolo(mask: np.ndarray, class_id: int = 0) -> str:
    """H x W mask -> the text of a YOLO label file: one "cls xc yc w h" line (normalised) per
    4-connected component."""
    h, w = mask.shape
    lines = [
        f"{class_id} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
        f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
        for x0, y0, x1, y1 in mask_to_boxes(mask)
    ]
    return "\n".join(lines) + "\n"


def shape_of(image_shapes, image_id) -> tuple[int, int] | None:
    """(H, W) of an image from a dict or a callable image_id -> (H, W); None when unknown."""
    if callable(image_shapes):
        try:
            shape = image_shapes(image_id)
        except KeyError:
            return None
    else:
        shape = image_shapes.get(image_id)
    return None if shape is None else check_shape(shape)
