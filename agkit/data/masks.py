"""Storing guidance masks on disk, drawing them from boxes/polygons/points, COCO and YOLO files.

A `MaskStore` is a folder holding

* one PNG per annotated image: 8-bit grayscale, background 0 and mask 255 (so the file is
  readable in any image viewer); `get` returns it as an H x W uint8 array of 0/1.  Each PNG
  also carries its image id and provenance in PNG text chunks, so the folder can be re-indexed
  from the PNGs alone (`MaskStore.rebuild_index`).
* `index.json`: image id -> provenance (file name, source, tool, UTC time, shape [H, W]).

Image ids can be any string, including paths such as
"MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png".  The PNG name is the id
with every character outside [A-Za-z0-9._-] replaced by "_" (shortened to 80 characters),
followed by "-" and the first 10 hex digits of the SHA-1 of the id, e.g.
"MURA-v1.1_train_XR_WRIST_patient00001_study1_positive_image1.png-3f2a9c01be.png".
The hash keeps two ids apart even when they sanitise to the same text.

Every write is atomic: the bytes go to a temporary file in the same folder, which is flushed,
fsync'ed and then renamed over the target with `os.replace`.  A killed kernel therefore leaves
either the old or the new file, never half of one.  `put` writes the PNG first and the index
second; if the process dies between the two, the index still describes the previous state
(a new PNG is simply not indexed yet, and `rebuild_index` can pick it up).  The store assumes
one writer at a time.

Pixel conventions (x = column, y = row, origin at the top-left pixel):

* boxes (x0, y0, x1, y1) use slicing edges: the box covers ``mask[y0:y1, x0:x1]``; fractional
  coordinates are rounded to the nearest integer first (halves round up), which is the same
  as "a pixel is inside when its centre is inside the box".
* polygons and disc centres use pixel-centre coordinates: the point (x, y) is the centre of
  pixel ``mask[y, x]`` (PIL's and OpenCV's convention).  A polygon fills the pixels inside it
  plus every pixel its outline passes through (PIL.ImageDraw with outline); vertices are
  rounded to whole pixels by PIL.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo
from scipy import ndimage

__all__ = [
    "MaskStore",
    "MaskStoreReport",
    "CorruptIndexError",
    "CorruptMaskError",
    "rasterize_boxes",
    "rasterize_polygons",
    "rasterize_discs",
    "mask_to_boxes",
    "mask_to_polygons",
    "safe_file_name",
]

SOURCES = ("drawn", "imported", "synthetic")
INDEX_NAME = "index.json"
_ID_KEY = "agkit:image_id"  # PNG text chunk names
_PROV_KEY = "agkit:provenance"


class CorruptIndexError(ValueError):
    """index.json cannot be read; the file is left untouched."""


class CorruptMaskError(ValueError):
    """A mask PNG cannot be read (truncated, not a PNG, wrong content)."""


# ----------------------------------------------------------------------------- helpers
def safe_file_name(image_id: str) -> str:
    """Readable, unique PNG file name for an image id (see the module docstring)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", image_id)[:80].lstrip(".") or "mask"
    digest = hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:10]
    return f"{stem}-{digest}.png"


def _atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` so that readers see either the old or the new file, never a mix."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())  # data on disk before the rename makes it visible
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _as_binary_mask(mask, what: str = "mask") -> np.ndarray:
    """Validate a mask (H x W, values 0/1 or bool) and return it as H x W uint8 0/1."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        hint = " (drop the channel axis, e.g. mask[0])" if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]) else ""
        raise ValueError(f"{what} must be a 2-D H x W array but has shape {arr.shape}{hint}.")
    if arr.size == 0:
        raise ValueError(f"{what} is empty (shape {arr.shape}); a mask needs at least one pixel.")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"{what} has dtype {arr.dtype}; pass a numeric or bool array with values 0/1.")
    bad = (arr != 0) & (arr != 1)  # also catches NaN
    if bad.any():
        values = np.unique(arr[bad])[:5]
        if np.all(np.isin(arr, (0, 255))):
            fix = "it looks like a 0/255 image: pass (mask > 0)"
        else:
            fix = "threshold it first, e.g. (mask > 0.5)"
        raise ValueError(f"{what} must contain only 0 and 1 (or bool) but has values like {values.tolist()}; {fix}.")
    return arr.astype(np.uint8)


def _check_shape(shape) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W), got {shape!r}.") from None
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive (H, W), got {shape!r}.")
    return h, w


# ------------------------------------------------------------------------ rasterising
def rasterize_boxes(boxes: Iterable, shape) -> np.ndarray:
    """Union of boxes as an H x W uint8 0/1 mask.

    boxes: iterable of (x0, y0, x1, y1) corners in pixels; a box covers ``mask[y0:y1, x0:x1]``
    (fractional coordinates rounded to nearest, halves up; parts outside the image are dropped).
    """
    h, w = _check_shape(shape)
    mask = np.zeros((h, w), np.uint8)
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box)
        if x1 < x0 or y1 < y0:
            raise ValueError(
                f"box {tuple(box)} has x1 < x0 or y1 < y0: boxes are corners (x0, y0, x1, y1); "
                "convert a COCO/[x, y, w, h] box with x1 = x + w, y1 = y + h."
            )
        c0, r0, c1, r1 = (min(max(math.floor(v + 0.5), 0), lim) for v, lim in ((x0, w), (y0, h), (x1, w), (y1, h)))
        mask[r0:r1, c0:c1] = 1
    return mask


def rasterize_polygons(polygons: Iterable, shape) -> np.ndarray:
    """Union of polygons as an H x W uint8 0/1 mask.

    polygons: iterable of flat COCO-style lists [x1, y1, x2, y2, ...] in pixel-centre
    coordinates; pixels inside a polygon and on its outline are filled (PIL.ImageDraw).
    One or two points fill those pixels / the line between them.
    """
    h, w = _check_shape(shape)
    image = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(image)
    for poly in polygons:
        flat = [float(v) for v in poly]
        if len(flat) < 2 or len(flat) % 2:
            raise ValueError(f"a polygon must be a flat list [x1, y1, x2, y2, ...] with an even length, got {len(flat)} numbers.")
        points = list(zip(flat[0::2], flat[1::2]))
        if len(points) == 1:
            points = points * 2  # PIL needs two points; a zero-length line marks the pixel
        draw.polygon(points, fill=1, outline=1)
    return np.asarray(image, dtype=np.uint8).copy()


def rasterize_discs(centers: Iterable, radius: float, shape) -> np.ndarray:
    """Union of filled discs as an H x W uint8 0/1 mask.

    centers: iterable of (x, y) in pixel-centre coordinates; pixel ``mask[i, j]`` is filled when
    (j - x)**2 + (i - y)**2 <= radius**2 for some centre (the CUB part masks use radius 50).
    """
    h, w = _check_shape(shape)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}.")
    rows, cols = np.ogrid[:h, :w]
    mask = np.zeros((h, w), bool)
    for x, y in centers:
        mask |= (cols - float(x)) ** 2 + (rows - float(y)) ** 2 <= float(radius) ** 2
    return mask.astype(np.uint8)


# -------------------------------------------------------------- masks -> boxes/polygons
def _components(mask: np.ndarray) -> list[tuple[np.ndarray, tuple[slice, slice]]]:
    """4-connected components of a 0/1 mask: (component as bool crop, its slices)."""
    labels, n = ndimage.label(mask)
    found = ndimage.find_objects(labels)
    return [((labels[sl] == k + 1), sl) for k, sl in enumerate(found) if sl is not None]


def mask_to_boxes(mask) -> list[tuple[int, int, int, int]]:
    """One (x0, y0, x1, y1) box per 4-connected component; ``rasterize_boxes`` convention."""
    mask = _as_binary_mask(mask)
    return [(sl[1].start, sl[0].start, sl[1].stop, sl[0].stop) for _, sl in _components(mask)]


def _outline(region: np.ndarray) -> list[tuple[int, int]]:
    """Boundary pixels (x, y) of one hole-free 4-connected region, in order around it.

    Walks the pixel edges that separate the region from the outside (each corner has exactly
    one outgoing edge because the region has no holes and no diagonal pinches) and records
    the inside pixel of every edge.  Consecutive pixels are 8-neighbours, so PIL's polygon
    with outline reproduces the region exactly.
    """
    p = np.pad(region, 1)
    inside = p[1:-1, 1:-1]
    step = {}  # corner -> (next corner, inside pixel); corners are (x, y) of pixel edges
    for y, x in zip(*np.nonzero(inside & ~p[:-2, 1:-1])):  # top edge, walking right
        step[(x, y)] = ((x + 1, y), (x, y))
    for y, x in zip(*np.nonzero(inside & ~p[1:-1, 2:])):  # right edge, walking down
        step[(x + 1, y)] = ((x + 1, y + 1), (x, y))
    for y, x in zip(*np.nonzero(inside & ~p[2:, 1:-1])):  # bottom edge, walking left
        step[(x + 1, y + 1)] = ((x, y + 1), (x, y))
    for y, x in zip(*np.nonzero(inside & ~p[1:-1, :-2])):  # left edge, walking up
        step[(x, y + 1)] = ((x, y), (x, y))
    start = corner = min(step)
    pixels: list[tuple[int, int]] = []
    while True:
        corner, pixel = step[corner]
        if not pixels or pixels[-1] != pixel:
            pixels.append((int(pixel[0]), int(pixel[1])))
        if corner == start:
            break
    if len(pixels) > 1 and pixels[0] == pixels[-1]:
        pixels.pop()
    # drop points in the middle of straight runs (same step before and after)
    n = len(pixels)
    if n > 2:
        keep = []
        for k in range(n):
            (ax, ay), (bx, by), (cx, cy) = pixels[k - 1], pixels[k], pixels[(k + 1) % n]
            if (bx - ax, by - ay) != (cx - bx, cy - by):
                keep.append(pixels[k])
        pixels = keep or pixels[:1]
    return pixels


def mask_to_polygons(mask) -> list[list[float]]:
    """One flat COCO polygon [x1, y1, ...] per 4-connected component (holes are filled).

    ``rasterize_polygons(mask_to_polygons(m), m.shape)`` equals ``m`` for masks without holes.
    """
    mask = _as_binary_mask(mask)
    polygons = []
    for region, sl in _components(mask):
        region = ndimage.binary_fill_holes(region)
        points = _outline(region)
        while len(points) < 3:  # COCO readers expect at least 3 points
            points.append(points[-1])
        polygons.append([float(v) for x, y in points for v in (x + sl[1].start, y + sl[0].start)])
    return polygons


# -------------------------------------------------------------------------- the store
@dataclass
class MaskStoreReport:
    """Result of `MaskStore.check`: lists of image ids (or file names) with problems."""

    orphans: list[str] = field(default_factory=list)  # masks for ids not in the given image list
    unannotated: list[str] = field(default_factory=list)  # given image ids without a mask
    missing_files: list[str] = field(default_factory=list)  # indexed ids whose PNG is gone
    corrupt: list[str] = field(default_factory=list)  # indexed ids whose PNG cannot be read
    wrong_shape: list[str] = field(default_factory=list)  # ids whose mask shape differs from image_shapes
    unindexed_files: list[str] = field(default_factory=list)  # PNG files the index does not know
    temp_files: list[str] = field(default_factory=list)  # left by interrupted writes; safe to delete

    @property
    def ok(self) -> bool:
        """True when nothing needs fixing (unannotated images are normal and do not count)."""
        return not (self.orphans or self.missing_files or self.corrupt or self.wrong_shape or self.unindexed_files)

    def __str__(self) -> str:
        fixes = {
            "orphans": "masks for images not in the dataset: check the ids or store.delete(id)",
            "missing_files": "indexed but PNG missing: store.delete(id) and re-annotate",
            "corrupt": "unreadable PNG: store.delete(id) and re-annotate",
            "wrong_shape": "mask size differs from the image: store.delete(id) and re-annotate",
            "unindexed_files": "PNG files not in index.json: MaskStore.rebuild_index(folder) adds them",
        }
        lines = [f"{len(self.unannotated)} image(s) without a mask."]
        for name, fix in fixes.items():
            items = getattr(self, name)
            if items:
                shown = ", ".join(map(repr, items[:5])) + (" ..." if len(items) > 5 else "")
                lines.append(f"{len(items)} {name} ({fix}): {shown}")
        if self.temp_files:
            lines.append(f"{len(self.temp_files)} temporary file(s) left by interrupted writes (safe to delete).")
        return "\n".join(lines) if not self.ok else " ".join(lines) + " No problems."


class MaskStore:
    """A folder of binary guidance masks, one PNG per annotated image, plus index.json.

    store = MaskStore("masks")            # creates the folder if needed
    store.put("img_001", mask)            # mask: H x W, 0/1 or bool
    store.get("img_001")                  # -> H x W uint8 0/1, or None when not annotated

    durable=False skips fsync (writes stay atomic against a killed process, not against
    a power cut); use it for masks you can regenerate, e.g. synthetic data.
    """

    def __init__(self, folder, *, durable: bool = True):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{self.folder} is a file; MaskStore needs a folder path.")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.durable = durable
        self._index_path = self.folder / INDEX_NAME
        self._masks: dict[str, dict] = {}
        self._seen = None  # (inode, mtime, size) of index.json when last read or written
        self._batch_depth = 0
        self._refresh()
        if not self._index_path.exists() and any(self._png_files()):
            warnings.warn(
                f"{self.folder} holds mask PNGs but no {INDEX_NAME}; "
                f"run MaskStore.rebuild_index({str(self.folder)!r}) to index them.",
                stacklevel=2,
            )

    # ---- index file
    def _stat(self):
        try:
            st = self._index_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        """Re-read index.json when another MaskStore object (or process) changed it."""
        stat = self._stat()
        if stat == self._seen or self._batch_depth:
            return
        self._masks = {} if stat is None else self._read_index(self._index_path)
        self._seen = stat

    @staticmethod
    def _read_index(path: Path) -> dict[str, dict]:
        fix = (f"The file is left untouched; run MaskStore.rebuild_index({str(path.parent)!r}) to rebuild it "
               "from the mask PNGs (the bad file is kept as a backup).")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptIndexError(f"Mask index {path} is not valid JSON ({e}). {fix}") from e
        masks = data.get("masks") if isinstance(data, dict) else None
        if not isinstance(masks, dict) or not all(isinstance(v, dict) and isinstance(v.get("file"), str) for v in masks.values()):
            raise CorruptIndexError(f"Mask index {path} does not have the expected {{'masks': {{id: {{'file': ...}}}}}} layout. {fix}")
        return masks

    def _write_index(self) -> None:
        if self._batch_depth:
            return
        data = {"format": "agkit MaskStore", "version": 1, "masks": dict(sorted(self._masks.items()))}
        _atomic_write(self._index_path, json.dumps(data, indent=1).encode("utf-8"), self.durable)
        self._seen = self._stat()

    @contextlib.contextmanager
    def batch(self):
        """Write index.json once at the end instead of after every put/delete (bulk imports).

        PNGs are still written atomically one by one; if the process dies inside the block the
        new PNGs are on disk but not indexed (rebuild_index recovers them).
        """
        self._refresh()
        self._batch_depth += 1
        try:
            yield self
        finally:
            self._batch_depth -= 1
            if not self._batch_depth:
                self._write_index()

    def _png_files(self):
        return (p for p in self.folder.glob("*.png") if not p.name.startswith("."))

    # ---- queries
    def __contains__(self, image_id) -> bool:
        self._refresh()
        return image_id in self._masks

    def __len__(self) -> int:
        self._refresh()
        return len(self._masks)

    def __iter__(self):
        return iter(self.annotated_ids())

    def __repr__(self) -> str:
        return f"MaskStore({str(self.folder)!r}, {len(self)} masks)"

    def annotated_ids(self) -> list[str]:
        """Sorted ids of the images that have a mask."""
        self._refresh()
        return sorted(self._masks)

    def provenance(self, image_id: str) -> dict:
        """Copy of the index entry: file, source, tool, time (ISO-8601 UTC), shape [H, W], extras."""
        self._refresh()
        if image_id not in self._masks:
            raise KeyError(f"No mask stored for image {image_id!r}; see store.annotated_ids().")
        return dict(self._masks[image_id])

    def path(self, image_id: str) -> Path:
        """Path of the PNG holding the mask of `image_id` (it must be stored)."""
        return self.folder / self.provenance(image_id)["file"]

    def get(self, image_id: str) -> np.ndarray | None:
        """H x W uint8 0/1 mask of `image_id`, or None when the image has no mask."""
        self._refresh()
        entry = self._masks.get(image_id)
        if entry is None:
            return None
        path = self.folder / entry["file"]
        fix = f"delete it with store.delete({image_id!r}) and re-annotate or re-import that image"
        if not path.exists():
            raise FileNotFoundError(f"The mask file {path} for image {image_id!r} is missing; {fix}.")
        mask, stored_id, _ = _read_png(path, fix)
        if stored_id is not None and stored_id != image_id:
            raise CorruptMaskError(f"The mask file {path} belongs to image {stored_id!r}, not {image_id!r}; {fix}.")
        if list(mask.shape) != list(entry.get("shape", mask.shape)):
            raise CorruptMaskError(
                f"The mask file {path} is {mask.shape[0]}x{mask.shape[1]} but the index says {entry['shape']}; {fix}."
            )
        return mask

    # ---- changes
    def put(self, image_id: str, mask, *, source: str = "drawn", tool: str = "", expected_shape=None, **extra) -> Path:
        """Store (or replace) the mask of `image_id`; returns the PNG path.

        mask: H x W array-like with values 0/1 (or bool); 0/255 images are refused, pass mask > 0.
        expected_shape: (H, W) of the image, checked when given.  Replacing a mask with one of a
        different shape is refused (delete the old one first if the image really changed).
        extra: more JSON-serialisable provenance fields (e.g. annotator="ana").
        """
        if not isinstance(image_id, str) or not image_id:
            raise ValueError(f"image_id must be a non-empty string, got {image_id!r}.")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}.")
        mask = _as_binary_mask(mask, f"mask for image {image_id!r}")
        if expected_shape is not None and tuple(mask.shape) != _check_shape(expected_shape):
            raise ValueError(
                f"mask for image {image_id!r} is {mask.shape[0]}x{mask.shape[1]} but the image is "
                f"{expected_shape[0]}x{expected_shape[1]}; draw the mask on the full-size image."
            )
        self._refresh()
        old = self._masks.get(image_id)
        if old is not None and list(old.get("shape", mask.shape)) != list(mask.shape):
            raise ValueError(
                f"image {image_id!r} already has a {old['shape'][0]}x{old['shape'][1]} mask but the new one is "
                f"{mask.shape[0]}x{mask.shape[1]}; if the image itself changed, store.delete({image_id!r}) first."
            )
        clash = {"file", "source", "tool", "time", "shape"} & set(extra)
        if clash:
            raise ValueError(f"provenance fields {sorted(clash)} are set by put itself; pass them as arguments.")
        entry = {"file": safe_file_name(image_id), "source": source, "tool": str(tool),
                 "time": _utc_now(), "shape": [int(mask.shape[0]), int(mask.shape[1])], **extra}
        json.dumps(entry)  # fail early on extras that JSON cannot store

        info = PngInfo()
        info.add_text(_ID_KEY, image_id)
        info.add_text(_PROV_KEY, json.dumps(entry))
        buffer = io.BytesIO()
        Image.fromarray(mask * 255, mode="L").save(buffer, format="PNG", pnginfo=info)
        path = self.folder / entry["file"]
        _atomic_write(path, buffer.getvalue(), self.durable)

        self._masks[image_id] = entry
        self._write_index()
        if old is not None and old["file"] != entry["file"]:  # e.g. a foreign file indexed by rebuild_index
            with contextlib.suppress(FileNotFoundError):
                (self.folder / old["file"]).unlink()
        return path

    def delete(self, image_id: str, *, missing_ok: bool = False) -> None:
        """Remove the mask of `image_id` (index entry first, then the PNG)."""
        self._refresh()
        entry = self._masks.pop(image_id, None)
        if entry is None:
            if missing_ok:
                return
            raise KeyError(f"No mask stored for image {image_id!r}; nothing to delete.")
        self._write_index()
        with contextlib.suppress(FileNotFoundError):
            (self.folder / entry["file"]).unlink()

    # ---- consistency
    def check(self, image_ids: Iterable[str] | None = None, *, image_shapes=None, verify: bool = True) -> MaskStoreReport:
        """Compare the store with the dataset's image ids (and optionally their shapes).

        image_shapes: dict image_id -> (H, W) or callable; masks of another size are reported.
        verify: load every PNG to find corrupt files (about 0.1 ms per small mask).
        """
        self._refresh()
        report = MaskStoreReport()
        if image_ids is not None:
            wanted = set(image_ids)
            report.orphans = sorted(set(self._masks) - wanted)
            report.unannotated = sorted(wanted - set(self._masks))
        for image_id, entry in sorted(self._masks.items()):
            path = self.folder / entry["file"]
            if not path.exists():
                report.missing_files.append(image_id)
                continue
            if verify:
                try:
                    self.get(image_id)
                except (CorruptMaskError, OSError):
                    report.corrupt.append(image_id)
                    continue
            if image_shapes is not None:
                shape = _lookup_shape(image_shapes, image_id)
                if shape is not None and tuple(entry.get("shape", ())) != tuple(shape):
                    report.wrong_shape.append(image_id)
        known = {entry["file"] for entry in self._masks.values()}
        report.unindexed_files = sorted(p.name for p in self._png_files() if p.name not in known)
        report.temp_files = sorted(p.name for p in self.folder.glob(".*.tmp"))
        return report

    @classmethod
    def rebuild_index(cls, folder, *, durable: bool = True) -> "MaskStore":
        """Rebuild index.json from the PNGs in `folder` and return the opened store.

        An existing index.json (for example a corrupt one) is renamed to
        index.json.bak-<UTC time> first.  Ids and provenance come from the PNG text chunks;
        PNGs written by other tools get their file stem as id.  Unreadable PNGs are skipped with
        a warning and left in place.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"No mask folder at {folder}; pass the folder that holds the mask PNGs.")
        index_path = folder / INDEX_NAME
        if index_path.exists():
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            os.replace(index_path, folder / f"{INDEX_NAME}.bak-{stamp}")
        masks: dict[str, dict] = {}
        mtimes: dict[str, int] = {}
        skipped = []
        for path in sorted(p for p in folder.glob("*.png") if not p.name.startswith(".")):
            try:
                mask, image_id, prov = _read_png(path, "")
            except CorruptMaskError:
                skipped.append(path.name)
                continue
            if image_id is None:
                image_id, prov = path.stem, {"source": "imported", "tool": "rebuild_index (no metadata in PNG)"}
            mtime = path.stat().st_mtime_ns
            if image_id in masks and mtimes[image_id] >= mtime:
                continue  # two files claim one id: keep the newer
            prov = {**prov, "file": path.name, "shape": [int(mask.shape[0]), int(mask.shape[1])]}
            prov.setdefault("time", datetime.fromtimestamp(mtime / 1e9, timezone.utc).isoformat(timespec="seconds"))
            masks[image_id], mtimes[image_id] = prov, mtime
        if skipped:
            warnings.warn(f"rebuild_index skipped {len(skipped)} unreadable PNG(s), left in place: {skipped[:5]}", stacklevel=2)
        data = {"format": "agkit MaskStore", "version": 1, "masks": dict(sorted(masks.items()))}
        _atomic_write(index_path, json.dumps(data, indent=1).encode("utf-8"), durable)
        return cls(folder, durable=durable)

    # ---- COCO
    def import_coco(self, coco, *, image_id="file_name", categories=None, use: str = "auto",
                    overwrite: bool = False, tool: str = "coco") -> list[str]:
        """Add masks from a COCO annotation file (path or already-loaded dict); returns the ids written.

        image_id: how a COCO images[].file_name becomes an image id: "file_name" (as is),
            "stem" (file name without folders and extension) or a callable file_name -> id.
        categories: None (all) or an iterable of category ids and/or names to keep.
        use: "polygon" (segmentation), "bbox", or "auto" (polygon when present, else bbox).
            RLE segmentations are not decoded; "auto" uses their bbox instead (with a warning).
        overwrite: replace masks that already exist; otherwise nothing is written and a
            ValueError lists the clashing ids.  All annotations of one image are unioned.
        """
        if use not in ("auto", "polygon", "bbox"):
            raise ValueError(f"use must be 'auto', 'polygon' or 'bbox', got {use!r}.")
        if not isinstance(coco, Mapping):
            coco_path = Path(coco)
            if not coco_path.is_file():
                raise FileNotFoundError(f"No COCO file at {coco_path}; pass the path of the annotation JSON.")
            coco = json.loads(coco_path.read_text(encoding="utf-8-sig"))
        to_id = _id_mapper(image_id)
        images = {}
        for im in coco.get("images", []):
            if "width" not in im or "height" not in im:
                raise ValueError(f"COCO image {im.get('id')!r} ({im.get('file_name')!r}) lacks width/height, needed to draw its mask.")
            images[im["id"]] = (to_id(im["file_name"]), (int(im["height"]), int(im["width"])))
        keep = None
        if categories is not None:
            names = {c["name"]: c["id"] for c in coco.get("categories", [])}
            unknown = [c for c in categories if isinstance(c, str) and c not in names]
            if unknown:
                raise ValueError(f"categories {unknown} are not in the COCO file, which has {sorted(names)}.")
            keep = {names.get(c, c) for c in categories}
        shapes: dict[str, list] = {}
        polygons: dict[str, list] = {}
        boxes: dict[str, list] = {}
        rle = 0
        for ann in coco.get("annotations", []):
            if keep is not None and ann.get("category_id") not in keep:
                continue
            if ann["image_id"] not in images:
                raise ValueError(f"COCO annotation {ann.get('id')!r} refers to image {ann['image_id']!r}, which is not in images[].")
            iid, shape = images[ann["image_id"]]
            shapes[iid] = shape
            seg = ann.get("segmentation")
            if use != "bbox" and isinstance(seg, list) and seg:
                polygons.setdefault(iid, []).extend(seg if isinstance(seg[0], list) else [seg])
            elif use != "polygon" and ann.get("bbox"):
                rle += isinstance(seg, dict)
                x, y, w, h = ann["bbox"]
                boxes.setdefault(iid, []).append((x, y, x + w, y + h))
            elif use == "polygon":
                raise ValueError(f"COCO annotation {ann.get('id')!r} has no polygon segmentation; use='bbox' or 'auto' uses its box.")
        if rle:
            warnings.warn(f"{rle} RLE segmentation(s) were replaced by their bounding boxes.", stacklevel=2)
        masks = {iid: rasterize_polygons(polygons.get(iid, []), shape) | rasterize_boxes(boxes.get(iid, []), shape)
                 for iid, shape in shapes.items()}
        return self._put_imported(masks, overwrite, tool)

    def export_coco(self, path, *, image_ids=None, file_name=None, category: str = "fracture",
                    polygons: bool = True) -> dict:
        """Write the masks as a COCO JSON file (atomically) and return the dict.

        One annotation per 4-connected component: bbox [x, y, w, h], area (pixels), and, when
        `polygons`, the component outline as a polygon (holes are filled).
        file_name: callable image_id -> images[].file_name (default: the id itself, matching
        import_coco's default image_id="file_name").
        """
        ids = self.annotated_ids() if image_ids is None else list(image_ids)
        coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": category}]}
        for k, iid in enumerate(ids, start=1):
            mask = self.get(iid)
            if mask is None:
                raise KeyError(f"No mask stored for image {iid!r}; export only store.annotated_ids().")
            coco["images"].append({"id": k, "file_name": file_name(iid) if file_name else iid,
                                   "height": int(mask.shape[0]), "width": int(mask.shape[1])})
            for region, sl in _components(mask):
                ann = {"id": len(coco["annotations"]) + 1, "image_id": k, "category_id": 1, "iscrowd": 0,
                       "bbox": [sl[1].start, sl[0].start, sl[1].stop - sl[1].start, sl[0].stop - sl[0].start],
                       "area": int(region.sum())}
                if polygons:
                    component = np.zeros_like(mask)
                    component[sl] = region
                    ann["segmentation"] = mask_to_polygons(component)
                coco["annotations"].append(ann)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, json.dumps(coco).encode("utf-8"), self.durable)
        return coco

    # ---- YOLO
    def import_yolo(self, folder, image_shapes, *, classes=None, image_id=None, overwrite: bool = False,
                    tool: str = "yolo") -> list[str]:
        """Add masks from a folder of YOLO label files <stem>.txt; returns the ids written.

        Lines are "cls xc yc w h" (normalised box) or "cls x1 y1 x2 y2 ..." (normalised polygon).
        image_shapes: dict image_id -> (H, W) or callable image_id -> (H, W), needed to draw.
        classes: None (all) or an iterable of class numbers to keep (GRAZPEDWRI-DX fracture: [3]).
        image_id: callable stem -> id (default: the stem).  Empty files (negatives) add no mask.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"No YOLO label folder at {folder}; pass the folder holding <stem>.txt files.")
        keep = None if classes is None else {int(c) for c in classes}
        to_id = image_id or (lambda stem: stem)
        found: dict[str, tuple[list, list]] = {}
        for txt in sorted(folder.glob("*.txt")):
            if txt.name == "classes.txt":
                continue
            boxes, polys = [], []
            for n, line in enumerate(txt.read_text(encoding="utf-8-sig").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    values = [float(v) for v in line.split()]
                except ValueError:
                    values = []
                if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
                    raise ValueError(f"{txt}:{n}: expected 'cls xc yc w h' or 'cls x1 y1 x2 y2 ...', got {line!r}.")
                if keep is not None and int(values[0]) not in keep:
                    continue
                (boxes if len(values) == 5 else polys).append(values[1:])
            if boxes or polys:
                found[to_id(txt.stem)] = (boxes, polys)
        shapes = {iid: _lookup_shape(image_shapes, iid) for iid in found}
        unknown = [iid for iid, s in shapes.items() if s is None]
        if unknown:
            raise ValueError(f"image_shapes has no (H, W) for {len(unknown)} image(s), e.g. {unknown[:3]}; add them to draw their boxes.")
        masks = {}
        for iid, (boxes, polys) in found.items():
            h, w = _check_shape(shapes[iid])
            pixel_boxes = [((xc - bw / 2) * w, (yc - bh / 2) * h, (xc + bw / 2) * w, (yc + bh / 2) * h) for xc, yc, bw, bh in boxes]
            # normalised polygon points are edges-based like boxes; shift to pixel centres
            pixel_polys = [[v * (w if k % 2 == 0 else h) - 0.5 for k, v in enumerate(p)] for p in polys]
            masks[iid] = rasterize_boxes(pixel_boxes, (h, w)) | rasterize_polygons(pixel_polys, (h, w))
        return self._put_imported(masks, overwrite, tool)

    def export_yolo(self, folder, *, class_id: int = 0, image_ids=None, name=None) -> list[Path]:
        """Write one YOLO label file per mask: a "cls xc yc w h" box per 4-connected component.

        name: callable image_id -> file stem (default: the id's own stem, as import_yolo expects).
        Returns the files written (atomically).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        ids = self.annotated_ids() if image_ids is None else list(image_ids)
        stems = {iid: name(iid) if name else Path(iid).stem for iid in ids}
        if len(set(stems.values())) != len(stems):
            raise ValueError("several image ids share one file stem (e.g. MURA's image1.png); "
                             "pass name=callable(image_id) -> unique stem.")
        written = []
        for iid in ids:
            mask = self.get(iid)
            if mask is None:
                raise KeyError(f"No mask stored for image {iid!r}; export only store.annotated_ids().")
            h, w = mask.shape
            lines = [f"{class_id} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
                     for x0, y0, x1, y1 in mask_to_boxes(mask)]
            path = folder / f"{stems[iid]}.txt"
            _atomic_write(path, ("\n".join(lines) + "\n").encode("utf-8"), self.durable)
            written.append(path)
        return written

    def _put_imported(self, masks: dict, overwrite: bool, tool: str) -> list[str]:
        self._refresh()
        clash = sorted(set(masks) & set(self._masks))
        if clash and not overwrite:
            raise ValueError(f"{len(clash)} image(s) already have masks, e.g. {clash[:3]}; nothing was imported. "
                             "Pass overwrite=True to replace them, or delete them first.")
        with self.batch():
            for iid in sorted(masks):
                self.put(iid, masks[iid], source="imported", tool=tool)
        return sorted(masks)


def _read_png(path: Path, fix: str) -> tuple[np.ndarray, str | None, dict]:
    """Read a mask PNG -> (H x W uint8 0/1, stored image id or None, stored provenance)."""
    fix = fix or "delete or replace the file"
    try:
        with Image.open(path) as im:
            im.load()
            mode, text = im.mode, dict(getattr(im, "text", {}) or {})
            arr = np.asarray(im)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib errors ... for bad files
        raise CorruptMaskError(f"The mask file {path} is truncated or not a valid PNG ({e}); {fix}.") from e
    if mode not in ("L", "1"):
        raise CorruptMaskError(f"The mask file {path} is a {mode} image, not 8-bit grayscale; {fix}.")
    if arr.dtype != bool and arr.max(initial=0) > 1:
        if np.any((arr != 0) & (arr != 255)):
            raise CorruptMaskError(f"The mask file {path} has values other than 0 and 255; {fix}.")
    try:
        prov = json.loads(text.get(_PROV_KEY, "{}"))
    except json.JSONDecodeError:
        prov = {}
    return (arr > 0).astype(np.uint8), text.get(_ID_KEY), prov if isinstance(prov, dict) else {}


def _lookup_shape(image_shapes, image_id):
    """(H, W) for an id from a dict or callable; None when unknown."""
    if callable(image_shapes):
        try:
            shape = image_shapes(image_id)
        except KeyError:
            return None
    else:
        shape = image_shapes.get(image_id)
    return None if shape is None else _check_shape(shape)


def _id_mapper(image_id) -> Callable[[str], str]:
    if image_id == "file_name":
        return lambda name: name
    if image_id == "stem":
        return lambda name: Path(name).stem
    if callable(image_id):
        return image_id
    raise ValueError(f"image_id must be 'file_name', 'stem' or a callable file_name -> id, got {image_id!r}.")
