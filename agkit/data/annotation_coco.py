"""COCO instance annotations -> ``Shapes``: polygons, boxes and RLE masks per image.

``read_coco`` reads a COCO JSON file (or a loaded dict) into {images[].file_name: Shapes};
``decode_rle`` turns one RLE segmentation, uncompressed or compressed, into an H x W uint8
0/1 mask.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from agkit.data.annotation_shapes import Shapes, _numbers, _read_text, _warn_skipped

__all__ = ["read_coco", "decode_rle"]


def decode_rle(rle, where: str = "RLE") -> np.ndarray:
    """A COCO RLE segmentation {"size": [H, W], "counts": ...} -> H x W uint8 0/1 mask.

    counts are run lengths over the pixels in column-major order, starting with a run of
    0s: a list of ints (uncompressed, as iscrowd annotations store it) or COCO's compressed
    string (pycocotools' ``rleToString``). This decoder checks that the runs fill exactly
    H x W pixels, which pycocotools' C decoder does not.
    """
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"{where}: an RLE segmentation is {{'size': [H, W], 'counts': ...}}.")
    h, w = (int(v) for v in _numbers(rle["size"], "the RLE size [H, W]", where, n=2))
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        counts = _rle_string_counts(counts, where)
    counts = _numbers(counts, "the RLE counts", where)
    if any(c < 0 or c != int(c) for c in counts) or sum(counts) != h * w or h < 1 or w < 1:
        raise ValueError(
            f"{where}: the RLE counts must be whole numbers >= 0 adding up to H x W = "
            f"{h} x {w} = {h * w} pixels, but they add up to {sum(counts):g}."
        )
    runs = (np.arange(len(counts)) % 2).astype(np.uint8)  # 0s, then 1s, then 0s, ...
    return np.repeat(runs, np.asarray(counts, np.int64)).reshape((h, w), order="F")


def _rle_string_counts(text: str, where: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``): each
    number in 5-bit groups, low first, as characters chr(48 + group) with 0x20 set on all but
    the last group and 0x10 of the last one the sign; from the third run on, each number is
    the difference to the run two before."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = k = 0
        more = True
        while more:
            c = ord(text[p]) - 48 if p < len(text) else -1
            if not 0 <= c < 64:
                raise ValueError(
                    f"{where}: the compressed RLE counts are cut off or hold {text[p : p + 1]!r}"
                    f" at position {p}, which is not an RLE character ('0' to 'o')."
                )
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        counts.append(x + counts[-2] if len(counts) > 2 else x)
    return counts


def read_coco(coco, *, categories=None, use: str = "auto") -> dict[str, Shapes]:
    """COCO instance annotations (path or loaded dict) -> {images[].file_name: Shapes}.

    categories: None (all) or an iterable of category ids and/or names to keep.
    use: "polygon" (the segmentation: polygons or RLE, required), "bbox", or "auto" (the
        segmentation when present, else the box).
    Each Shapes has frame = (width, height) of its images[] entry. Only images with at
    least one kept annotation appear. An annotation that draws no pixel at its image's size
    (a polygon of two points, a box of width 0, a shape outside the image, no shape at all)
    is skipped with one warning that counts them; a malformed file, annotation or size
    (missing keys, NaN, one file_name listed with two sizes) is a ValueError naming it.
    """
    if use not in ("auto", "polygon", "bbox"):
        raise ValueError(f"use must be 'auto', 'polygon' or 'bbox', got {use!r}.")
    where = "the COCO dict"
    if not isinstance(coco, Mapping):
        where = str(coco)
        path = Path(coco)
        if not path.is_file():
            raise FileNotFoundError(
                f"No COCO file at {path}; pass the path of the annotation JSON."
            )
        try:
            coco = json.loads(_read_text(path, "a COCO file"))
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg}); is the file complete?"
            ) from None
        if not isinstance(coco, Mapping):
            raise ValueError(f"{path}: a COCO file is a JSON object with images and annotations.")
    images = _coco_images(_coco_list(coco, "images", where), where)
    keep = None
    if categories is not None:
        names = {c.get("name"): c.get("id") for c in _coco_list(coco, "categories", where)}
        unknown = [c for c in categories if isinstance(c, str) and c not in names]
        if unknown:
            raise ValueError(
                f"categories {unknown} are not in the COCO file, which has {sorted(names)}."
            )
        keep = {names.get(c, c) for c in categories}
    result: dict[str, Shapes] = {}
    skipped = []
    for k, ann in enumerate(_coco_list(coco, "annotations", where)):
        at = f"{where}: annotations[{k}]" + (f" (id {ann['id']!r})" if "id" in ann else "")
        if keep is not None and ann.get("category_id") not in keep:
            continue
        if "image_id" not in ann:
            raise ValueError(f"{at} has no image_id, the images[] id it belongs to.")
        if ann["image_id"] not in images:
            raise ValueError(f"{at} refers to image {ann['image_id']!r}, which is not in images[].")
        file_name, frame = images[ann["image_id"]]
        shapes, why = _coco_annotation(ann, frame, use, at)
        if not shapes.rasterize((frame[1], frame[0])).any():
            skipped.append(f"{at.removeprefix(where + ': ')} of {file_name!r}: {why}")
            continue
        found = result.setdefault(file_name, Shapes(frame=frame))
        found.polygons += shapes.polygons
        found.boxes += shapes.boxes
        found.masks += shapes.masks
    _warn_skipped(where, skipped)
    return result


def _coco_list(coco: Mapping, key: str, where: str) -> list:
    """coco[key] as a list of JSON objects (none when absent), or a ValueError."""
    entries = coco.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ValueError(f"{where}: {key!r} must be a list of JSON objects.")
    return entries


def _coco_images(entries: list, where: str) -> dict:
    """images[] -> {id: (file_name, (width, height))}; one size per file_name."""
    images: dict = {}
    size_of: dict[str, tuple[float, float]] = {}
    for k, im in enumerate(entries):
        at = f"{where}: images[{k}]"
        missing = [key for key in ("id", "file_name", "width", "height") if key not in im]
        if missing:
            raise ValueError(
                f"{at} ({im.get('file_name', im.get('id'))!r}) lacks {missing}; every image "
                "needs an id, a file_name and the width and height its masks are drawn at."
            )
        width, height = _numbers([im["width"], im["height"]], "width and height", at)
        if width < 1 or height < 1 or width % 1 or height % 1:
            raise ValueError(f"{at}: width and height must be whole numbers >= 1.")
        name = str(im["file_name"])
        if size_of.setdefault(name, (width, height)) != (width, height):
            w0, h0 = size_of[name]
            raise ValueError(
                f"{where}: images[] lists {name!r} twice with different sizes, "
                f"{w0:g} x {h0:g} and {width:g} x {height:g} (width x height); one file has "
                "one size: correct or remove one of the entries."
            )
        if im["id"] in images and images[im["id"]][0] != name:
            raise ValueError(
                f"{at}: the id {im['id']!r} is also the id of {images[im['id']][0]!r}; "
                "image ids must be unique."
            )
        images[im["id"]] = (name, (width, height))
    return images


def _coco_annotation(ann: Mapping, frame, use: str, at: str) -> tuple[Shapes, str]:
    """One annotation's shapes (possibly none) and, when it may draw nothing, why."""
    width, height = frame
    seg, bbox = ann.get("segmentation"), ann.get("bbox")
    if seg is not None and not isinstance(seg, (list, Mapping)):
        raise ValueError(f"{at}: segmentation must be a list of polygons or an RLE dict.")
    if bbox in (None, []):
        bbox = None
    shapes = Shapes(frame=frame)
    if use == "bbox" or (use == "auto" and not seg):
        if bbox is None:
            return shapes, "no segmentation and no bbox" if use == "auto" else "no bbox"
        x, y, w, h = _numbers(bbox, "bbox [x, y, width, height]", at, n=4)
        if w < 0 or h < 0:
            raise ValueError(f"{at}: bbox {bbox} has a negative width or height.")
        shapes.boxes.append((x, y, x + w, y + h))
        return shapes, f"a box of {w:g} x {h:g} at ({x:g}, {y:g}) covers no pixel centre"
    if not seg:
        raise ValueError(f"{at} has no segmentation; use='bbox' or 'auto' uses its box.")
    if isinstance(seg, Mapping):
        mask = decode_rle(seg, f"{at} RLE")
        if mask.shape != (height, width):
            raise ValueError(
                f"{at}: the RLE size {list(mask.shape)} is not the image's [height, width] "
                f"[{height:g}, {width:g}]."
            )
        shapes.masks.append(mask)
        return shapes, "an RLE mask of no pixel"
    polygons = seg if isinstance(seg[0], list) else [seg]
    why = "polygons that cover no pixel centre"
    for p in polygons:
        flat = _numbers(p, "a polygon [x1, y1, x2, y2, ...]", at)
        if len(flat) % 2:
            raise ValueError(f"{at}: a polygon has an odd number of coordinates ({len(flat)}).")
        if len(flat) >= 6:
            shapes.polygons.append(flat)
        else:  # no area: dropped; the annotation is skipped if no other part draws
            why = f"a polygon of {len(flat) // 2} point(s) (3 or more cover an area)"
    return shapes, why
