"""MaskStore: a folder of guidance masks, one PNG per annotated image, plus index.json.

A `MaskStore` is a folder holding

* one PNG per annotated image: 8-bit grayscale, background 0 and mask 255 (so the file is
  readable in any image viewer); `get` returns it as an H x W uint8 array of 0/1.  Each PNG
  also carries its image id and provenance in PNG text chunks, so the folder can be re-indexed
  from the PNGs alone (`MaskStore.rebuild_index`).
* `index.json`: image id -> provenance (file name, source, tool, UTC time, shape [H, W]).
  The file name is always a plain name inside the folder; an index that names anything
  else (``../x.png``, an absolute path, a symbolic link) is refused with CorruptIndexError,
  so the store never reads, writes or deletes outside its folder.

The PNG names and format are ``mask_store_png``'s; index.json, the lock and the atomic
writes (a killed kernel leaves the old or the new file, several writers never lose each
other's masks) are ``mask_store_index``'s; ``check`` and ``rebuild_index`` rest on
``mask_store_check``.

Masks are drawn from boxes, polygons and discs by ``agkit.data.shapes`` (its docstring
states the pixel convention); ``agkit.data.mask_exchange`` turns COCO and YOLO files into
masks and back, for ``import_coco/export_coco/import_yolo/export_yolo``.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from agkit.data.mask_exchange import coco_masks, mask_to_yolo, masks_to_coco, yolo_masks
from agkit.data.mask_store_check import MaskStoreChecks
from agkit.data.mask_store_index import (
    INDEX_NAME,
    MaskStoreIndex,
    _atomic_write,
    _lock_for,
    _locked,
)
from agkit.data.mask_store_png import (
    _ID_KEY,
    _PROV_KEY,
    CorruptMaskError,
    _read_png,
    safe_file_name,
)
from agkit.data.shapes import as_binary_mask, check_shape

__all__ = ["MaskStore"]

SOURCES = ("drawn", "imported", "synthetic")


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class MaskStore(MaskStoreChecks, MaskStoreIndex):
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
        self._lock = _lock_for(self.folder)
        self._masks: dict[str, dict] = {}
        self._seen = None  # (inode, mtime, size) of index.json when last read or written
        self._batch_depth = 0
        self._undo: list[tuple[Path, Path | bytes | None]] = []  # PNGs changed, see _commit
        self._refresh()
        if not self._index_path.exists() and any(self._png_files()):
            warnings.warn(
                f"{self.folder} holds mask PNGs but no {INDEX_NAME}; "
                f"run MaskStore.rebuild_index({str(self.folder)!r}) to index them.",
                stacklevel=2,
            )

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
        """Copy of the index entry: file, source, tool, time (ISO-8601 UTC), shape [H, W],
        extras."""
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
        path = self._file(image_id, entry)
        fix = f"delete it with store.delete({image_id!r}) and re-annotate or re-import that image"
        if not path.exists():
            raise FileNotFoundError(
                f"The mask file {path} for image {image_id!r} is missing; {fix}."
            )
        mask, stored_id, _ = _read_png(path, fix)
        if stored_id is not None and stored_id != image_id:
            raise CorruptMaskError(
                f"The mask file {path} belongs to image {stored_id!r}, not {image_id!r}; {fix}."
            )
        if list(mask.shape) != list(entry.get("shape", mask.shape)):
            raise CorruptMaskError(
                f"The mask file {path} is {mask.shape[0]}x{mask.shape[1]} "
                f"but the index says {entry['shape']}; {fix}."
            )
        return mask

    # ---- changes
    def put(
        self,
        image_id: str,
        mask,
        *,
        source: str = "drawn",
        tool: str = "",
        expected_shape=None,
        **extra,
    ) -> Path:
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
        mask = as_binary_mask(mask, f"mask for image {image_id!r}")
        if expected_shape is not None and tuple(mask.shape) != check_shape(expected_shape):
            raise ValueError(
                f"mask for image {image_id!r} is {mask.shape[0]}x{mask.shape[1]} but the image is "
                f"{expected_shape[0]}x{expected_shape[1]}; draw the mask on the full-size image."
            )
        clash = {"file", "source", "tool", "time", "shape"} & set(extra)
        if clash:
            raise ValueError(
                f"provenance fields {sorted(clash)} are set by put itself; pass them as arguments."
            )
        entry = {
            "file": safe_file_name(image_id),
            "source": source,
            "tool": str(tool),
            "time": _utc_now(),
            "shape": [int(mask.shape[0]), int(mask.shape[1])],
            **extra,
        }
        json.dumps(entry)  # fail early on extras that JSON cannot store
        info = PngInfo()
        info.add_text(_ID_KEY, image_id)
        info.add_text(_PROV_KEY, json.dumps(entry))
        buffer = io.BytesIO()
        Image.fromarray(mask * 255, mode="L").save(buffer, format="PNG", pnginfo=info)

        with self._writing():
            old = self._masks.get(image_id)
            old_path = None if old is None else self._file(image_id, old)
            if old is not None and list(old.get("shape", mask.shape)) != list(mask.shape):
                raise ValueError(
                    f"image {image_id!r} already has a {old['shape'][0]}x{old['shape'][1]} mask "
                    f"but the new one is {mask.shape[0]}x{mask.shape[1]}; "
                    f"if the image itself changed, store.delete({image_id!r}) first."
                )
            path = self.folder / entry["file"]
            self._replace_png(path, buffer.getvalue())
            self._masks[image_id] = entry
        if (
            old_path is not None and old_path != path
        ):  # e.g. a foreign file indexed by rebuild_index
            with _locked(self._lock), contextlib.suppress(FileNotFoundError):
                old_path.unlink()
        return path

    def delete(self, image_id: str, *, missing_ok: bool = False) -> None:
        """Remove the mask of `image_id` (index entry first, then the PNG)."""
        with _locked(self._lock):  # held until the PNG is gone: no writer sees it half-deleted
            with self._writing():
                entry = self._masks.get(image_id)
                if entry is None:
                    if missing_ok:
                        return
                    raise KeyError(f"No mask stored for image {image_id!r}; nothing to delete.")
                path = self._file(image_id, entry)
                del self._masks[image_id]
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @classmethod
    def rebuild_index(cls, folder, *, durable: bool = True) -> MaskStore:
        """Rebuild index.json from the PNGs in `folder` and return the opened store.

        An existing index.json (for example a corrupt one) is renamed to
        index.json.bak-<UTC time> first.  Ids and provenance come from the PNG text chunks;
        PNGs written by other tools get their file stem as id.  Unreadable PNGs are skipped with
        a warning and left in place.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"No mask folder at {folder}; pass the folder that holds the mask PNGs."
            )
        with _locked(_lock_for(folder)):
            cls._rebuild(folder, durable)
        return cls(folder, durable=durable)

    # ---- COCO and YOLO files (the conversions live in agkit.data.mask_exchange)
    def import_coco(
        self,
        coco,
        *,
        image_id="file_name",
        categories=None,
        use: str = "auto",
        overwrite: bool = False,
        tool: str = "coco",
    ) -> list[str]:
        """Add masks from a COCO annotation file (path or already-loaded dict); returns the ids
        written. Options: ``mask_exchange.coco_masks``. overwrite: replace masks that exist;
        otherwise nothing is written and a ValueError lists the clashing ids."""
        masks = coco_masks(coco, image_id=image_id, categories=categories, use=use)
        return self._put_imported(masks, overwrite, tool)

    def export_coco(
        self,
        path,
        *,
        image_ids=None,
        file_name=None,
        category: str = "fracture",
        polygons: bool = True,
    ) -> dict:
        """Write the masks as a COCO JSON file (atomically) and return the dict.

        One annotation per 4-connected component (``mask_exchange.masks_to_coco``).
        file_name: callable image_id -> images[].file_name (default: the id itself, matching
        import_coco's default image_id="file_name").
        """
        ids = self.annotated_ids() if image_ids is None else list(image_ids)
        coco = masks_to_coco(
            ((iid, self._stored(iid)) for iid in ids),
            file_name=file_name,
            category=category,
            polygons=polygons,
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, json.dumps(coco).encode("utf-8"), self.durable)
        return coco

    def import_yolo(
        self,
        folder,
        image_shapes,
        *,
        classes=None,
        image_id=None,
        overwrite: bool = False,
        tool: str = "yolo",
    ) -> list[str]:
        """Add masks from a folder of YOLO label files <stem>.txt; returns the ids written.
        Options: ``mask_exchange.yolo_masks``; overwrite as in import_coco."""
        masks = yolo_masks(folder, image_shapes, classes=classes, image_id=image_id)
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
            raise ValueError(
                "several image ids share one file stem (e.g. MURA's image1.png); "
                "pass name=callable(image_id) -> unique stem."
            )
        written = []
        for iid in ids:
            path = folder / f"{stems[iid]}.txt"
            text = mask_to_yolo(self._stored(iid), class_id)
            _atomic_write(path, text.encode("utf-8"), self.durable)
            written.append(path)
        return written

    def _stored(self, image_id: str) -> np.ndarray:
        """The stored mask of an id to export; KeyError naming the fix when there is none."""
        mask = self.get(image_id)
        if mask is None:
            raise KeyError(
                f"No mask stored for image {image_id!r}; export only store.annotated_ids()."
            )
        return mask

    def _put_imported(self, masks: dict, overwrite: bool, tool: str) -> list[str]:
        with self.batch():
            clash = sorted(set(masks) & set(self._masks))
            if clash and not overwrite:
                raise ValueError(
                    f"{len(clash)} image(s) already have masks, e.g. {clash[:3]}; nothing was "
                    "imported. Pass overwrite=True to replace them, or delete them first."
                )
            for iid in sorted(masks):
                self.put(iid, masks[iid], source="imported", tool=tool)
        return sorted(masks)
