"""Shapes -> masks: the rasterisers, masks -> boxes/polygons, and the COCO/YOLO/VOC parsers.

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

The parsers read annotation files into ``Shapes`` (polygons, boxes, discs and decoded COCO
RLE masks of one image, with the frame their coordinates refer to); ``Shapes.rasterize``
draws them at the image's real size. They never hand on an annotation that draws no pixel:
a malformed file or value (bad JSON/XML, not UTF-8, NaN, a missing key, YOLO coordinates
outside [0, 1]) is a ValueError naming the file and the annotation or line, and a well-formed
shape that covers no pixel centre is skipped with one warning per file that counts them.
The VOC parser is defusedxml's, which refuses entity declarations (XXE, billion laughs).
``MaskStore.import_coco/import_yolo`` and the real-dataset loaders use these same parsers.
A YOLO line ``cls xc yc w h`` is a box; ``cls x1 y1 x2 y2 x3 y3 ...`` (three or more points,
YOLO's segmentation format) is a polygon, never a box.
"""

from __future__ import annotations

import json
import math
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml.ElementTree as defused_et
import numpy as np
from defusedxml import DefusedXmlException
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
    "Shapes",
    "read_coco",
    "read_yolo",
    "yolo_classes",
    "read_voc",
    "decode_rle",
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


# ------------------------------------------------------------------------ annotations
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


def read_voc(path) -> Shapes:
    """One Pascal VOC XML file -> its boxes, in the frame given by its <size>.

    Parsed with defusedxml, which refuses entity declarations (XXE, billion laughs). A box
    that covers no pixel centre is skipped with a warning; broken XML, a box without one
    of xmin/ymin/xmax/ymax or with NaN is a ValueError naming the file (and the box).
    """
    path = Path(path)
    if not path.is_file():
        return Shapes()
    try:
        root = defused_et.parse(path).getroot()
    except DefusedXmlException as e:
        raise ValueError(
            f"{path}: refused ({type(e).__name__}: {e}); a VOC file needs no DTD or entities, "
            "which is how XXE and billion-laughs attacks are written."
        ) from None
    except ET.ParseError as e:
        raise ValueError(f"{path}:{e.position[0]}: not well-formed XML ({e}).") from None
    size = root.find("size")
    frame = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        w, h = _numbers([size.findtext("width"), size.findtext("height")], "<size>", str(path))
        frame = (w, h) if w > 0 and h > 0 else None  # tools that do not know it write 0
    limit_w, limit_h = (int(frame[0]), int(frame[1])) if frame else (2**62, 2**62)
    tags = ("xmin", "ymin", "xmax", "ymax")
    boxes, skipped = [], []
    for k, box in enumerate(root.iter("bndbox"), start=1):
        at = f"{path}: <bndbox> {k}"
        missing = [t for t in tags if not (box.findtext(t) or "").strip()]
        if missing:
            raise ValueError(f"{at} has no {missing}; a box needs <xmin> <ymin> <xmax> <ymax>.")
        x0, y0, x1, y1 = _numbers([box.findtext(t) for t in tags], "the box", at)
        if x1 < x0 or y1 < y0:
            raise ValueError(f"{at} has xmax < xmin or ymax < ymin: {(x0, y0, x1, y1)}.")
        first = _first_centre_at_or_after
        if first(x0, limit_w) < first(x1, limit_w) and first(y0, limit_h) < first(y1, limit_h):
            boxes.append((x0, y0, x1, y1))
        else:
            skipped.append(f"<bndbox> {k} {(x0, y0, x1, y1)} covers no pixel centre")
    _warn_skipped(str(path), skipped)
    return Shapes(boxes=boxes, frame=frame)


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
