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
(a new PNG is simply not indexed yet, and `rebuild_index` can pick it up).  If writing the
index fails (a full disk, a read-only folder), the change is taken back: every PNG the change
wrote is returned to its previous bytes (or removed when it is new; the previous file was kept
as a hard link, which needs no disk space), the store object forgets the change, and an OSError
says that nothing was changed.

Several writers (two kernels, a widget and a script) may share one store: every change holds
a lock file (``.index.json.lock``, via the `filelock` package) while it re-reads index.json,
applies its one change and writes the index back, so no writer loses another's mask or
brings back one that another deleted.

Masks are drawn from boxes, polygons and discs by ``agkit.data.shapes`` (its docstring
states the pixel convention); ``agkit.data.mask_exchange`` turns COCO and YOLO files into
masks and back, for ``import_coco/export_coco/import_yolo/export_yolo``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from agkit.data.mask_exchange import coco_masks, mask_to_yolo, masks_to_coco, shape_of, yolo_masks
from agkit.data.shapes import as_binary_mask, check_shape

__all__ = [
    "MaskStore",
    "MaskStoreReport",
    "CorruptIndexError",
    "CorruptMaskError",
    "safe_file_name",
]

SOURCES = ("drawn", "imported", "synthetic")
INDEX_NAME = "index.json"
LOCK_NAME = ".index.json.lock"  # hidden: not a mask, not a temporary file
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


def _set_aside(path: Path) -> Path | bytes | None:
    """Keep what `_put_back` needs to return `path` to its current state.

    None when there is no file; else a hard link to it (a second name for the same bytes, so it
    costs no disk space and works on a full disk) or, on file systems without hard links, its
    bytes. The link's name ends in ".tmp": `check` reports one left by a killed process.
    """
    if not path.exists():
        return None
    link = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.bak.tmp")
    try:
        os.link(path, link)
        return link
    except OSError:
        return path.read_bytes()


def _put_back(path: Path, saved: Path | bytes | None, durable: bool) -> None:
    """Return `path` to the state `_set_aside` kept (renames need no disk space)."""
    if saved is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    elif isinstance(saved, Path):
        os.replace(saved, path)
    else:
        _atomic_write(path, saved, durable)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -------------------------------------------------------------------------- the store
@dataclass
class MaskStoreReport:
    """Result of `MaskStore.check`: lists of image ids (or file names) with problems."""

    orphans: list[str] = field(default_factory=list)  # masks for ids not in the given image list
    unannotated: list[str] = field(default_factory=list)  # given image ids without a mask
    missing_files: list[str] = field(default_factory=list)  # indexed ids whose PNG is gone
    corrupt: list[str] = field(default_factory=list)  # indexed ids whose PNG cannot be read
    wrong_shape: list[str] = field(
        default_factory=list
    )  # ids whose mask shape differs from image_shapes
    unindexed_files: list[str] = field(default_factory=list)  # PNG files the index does not know
    temp_files: list[str] = field(
        default_factory=list
    )  # left by interrupted writes; safe to delete

    @property
    def ok(self) -> bool:
        """True when nothing needs fixing (unannotated images are normal and do not count)."""
        return not (
            self.orphans
            or self.missing_files
            or self.corrupt
            or self.wrong_shape
            or self.unindexed_files
        )

    def __str__(self) -> str:
        fixes = {
            "orphans": "masks for images not in the dataset: check the ids or store.delete(id)",
            "missing_files": "indexed but PNG missing: store.delete(id) and re-annotate",
            "corrupt": "unreadable PNG: store.delete(id) and re-annotate",
            "wrong_shape": "mask size differs from the image: store.delete(id) and re-annotate",
            "unindexed_files": (
                "PNG files not in index.json: MaskStore.rebuild_index(folder) adds them"
            ),
        }
        lines = [f"{len(self.unannotated)} image(s) without a mask."]
        for name, fix in fixes.items():
            items = getattr(self, name)
            if items:
                shown = ", ".join(map(repr, items[:5])) + (" ..." if len(items) > 5 else "")
                lines.append(f"{len(items)} {name} ({fix}): {shown}")
        if self.temp_files:
            lines.append(
                f"{len(self.temp_files)} temporary file(s) left by interrupted writes "
                "(safe to delete)."
            )
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

    # ---- index file
    def _stat(self):
        try:
            st = self._index_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self, force: bool = False) -> None:
        """Re-read index.json when another MaskStore object (or process) changed it."""
        if self._batch_depth:
            return  # inside a batch this object holds the lock and the newest index
        stat = self._stat()
        if stat == self._seen and not force:
            return
        self._masks = {} if stat is None else self._read_index(self._index_path)
        self._seen = stat

    @staticmethod
    def _read_index(path: Path) -> dict[str, dict]:
        fix = (
            f"The file is left untouched; run MaskStore.rebuild_index({str(path.parent)!r}) "
            "to rebuild it from the mask PNGs in the folder (the bad file is kept as a "
            "backup; nothing is deleted)."
        )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptIndexError(f"Mask index {path} is not valid JSON ({e}). {fix}") from e
        masks = data.get("masks") if isinstance(data, dict) else None
        if not isinstance(masks, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("file"), str) for v in masks.values()
        ):
            raise CorruptIndexError(
                f"Mask index {path} does not have the expected "
                f"{{'masks': {{id: {{'file': ...}}}}}} layout. {fix}"
            )
        for image_id, entry in masks.items():
            problem = _file_problem(path.parent, entry["file"])
            if problem:
                raise CorruptIndexError(
                    f"Mask index {path}: the entry for image {image_id!r} "
                    f"names the file {entry['file']!r}, {problem}; a mask file "
                    f"must be a plain file name inside the folder. {fix}"
                )
        return masks

    def _write_index(self) -> None:
        if self._batch_depth:
            return
        data = {
            "format": "agkit MaskStore",
            "version": 1,
            "masks": dict(sorted(self._masks.items())),
        }
        _atomic_write(self._index_path, json.dumps(data, indent=1).encode("utf-8"), self.durable)
        self._seen = self._stat()

    @contextlib.contextmanager
    def _writing(self):
        """Hold the store's lock with the newest index loaded; write the index at the end.

        Every change runs inside this block, so changes by other objects and processes are
        merged, never overwritten. Inside a batch the lock is already held.
        """
        with _locked(self._lock):
            if self._batch_depth:
                yield
                return
            self._refresh(force=True)
            before, self._undo = dict(self._masks), []
            self._batch_depth += 1
            try:
                yield
            finally:  # also after an error: the PNGs written so far are indexed
                self._batch_depth -= 1
                self._commit(before)

    def _replace_png(self, path: Path, data: bytes) -> None:
        """Write a mask PNG inside `_writing`, remembering how to take it back (see _commit)."""
        self._undo.append((path, _set_aside(path)))
        try:
            _atomic_write(path, data, self.durable)
        except BaseException:
            _, saved = self._undo.pop()  # the file itself is unchanged: drop the spare link
            if isinstance(saved, Path):
                saved.unlink(missing_ok=True)
            raise

    def _commit(self, before: dict[str, dict]) -> None:
        """Write index.json; if that fails, return the PNGs and this object to `before`.

        Without this a failed index write would leave new PNG bytes on disk and an entry in
        memory that index.json lacks, while the caller is told the mask was not saved.
        """
        undo, self._undo = self._undo, []
        try:
            self._write_index()
        except BaseException as err:
            self._masks = before
            stuck = []
            for path, saved in reversed(undo):
                try:
                    _put_back(path, saved, self.durable)
                except OSError as e:
                    stuck.append(f"{path.name} ({e})")
            if not isinstance(err, OSError):
                raise
            failed = f"Could not write the mask index {self._index_path} ({err.strerror or err})"
            if stuck:
                raise OSError(
                    err.errno,
                    f"{failed}, and {len(stuck)} mask file(s) could not be put back: "
                    f"{stuck[:3]}. The index still lists the previous masks; once there is "
                    f"room, run MaskStore.rebuild_index({str(self.folder)!r}) to index the "
                    "PNGs as they are.",
                ) from err
            raise OSError(
                err.errno,
                f"{failed}; nothing was changed: the mask files and the index are as they "
                "were. Free some disk space (or make the folder writable) and save again.",
            ) from err
        for _, saved in undo:
            if isinstance(saved, Path):
                with contextlib.suppress(FileNotFoundError):
                    saved.unlink()

    @contextlib.contextmanager
    def batch(self):
        """Write index.json once at the end instead of after every put/delete (bulk imports).

        The store's lock is held for the whole block, so other writers wait. PNGs are still
        written atomically one by one; if the process dies inside the block the new PNGs are
        on disk but not indexed (rebuild_index recovers them).
        """
        with self._writing():
            yield self

    def _png_files(self):
        return (
            p
            for p in self.folder.glob("*.png")
            if not p.name.startswith(".") and not p.is_symlink()
        )

    def _file(self, image_id: str, entry: dict) -> Path:
        """The PNG path of an index entry, checked to be a plain file inside the folder."""
        problem = _file_problem(self.folder, entry["file"])
        if problem:
            raise CorruptIndexError(
                f"Mask index {self._index_path}: the entry for image {image_id!r} names the file "
                f"{entry['file']!r}, {problem}; run MaskStore.rebuild_index({str(self.folder)!r}) "
                "to rebuild the index from the PNGs in the folder (nothing is deleted)."
            )
        return self.folder / entry["file"]

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

    # ---- consistency
    def check(
        self, image_ids: Iterable[str] | None = None, *, image_shapes=None, verify: bool = True
    ) -> MaskStoreReport:
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
            path = self._file(image_id, entry)
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
                shape = shape_of(image_shapes, image_id)
                if shape is not None and tuple(entry.get("shape", ())) != tuple(shape):
                    report.wrong_shape.append(image_id)
        known = {entry["file"] for entry in self._masks.values()}
        report.unindexed_files = sorted(p.name for p in self._png_files() if p.name not in known)
        report.temp_files = sorted(p.name for p in self.folder.glob(".*.tmp"))
        return report

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

    @staticmethod
    def _rebuild(folder: Path, durable: bool) -> None:
        index_path = folder / INDEX_NAME
        if index_path.exists():
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            os.replace(index_path, folder / f"{INDEX_NAME}.bak-{stamp}")
        masks: dict[str, dict] = {}
        mtimes: dict[str, int] = {}
        skipped = []
        for path in sorted(p for p in folder.glob("*.png") if not p.name.startswith(".")):
            if path.is_symlink() or not path.is_file():
                skipped.append(path.name)  # never read through a link: it may point anywhere
                continue
            try:
                mask, image_id, prov = _read_png(path, "")
            except CorruptMaskError:
                skipped.append(path.name)
                continue
            if image_id is None:
                image_id, prov = (
                    path.stem,
                    {"source": "imported", "tool": "rebuild_index (no metadata in PNG)"},
                )
            mtime = path.stat().st_mtime_ns
            if image_id in masks and mtimes[image_id] >= mtime:
                continue  # two files claim one id: keep the newer
            prov = {**prov, "file": path.name, "shape": [int(mask.shape[0]), int(mask.shape[1])]}
            prov.setdefault(
                "time",
                datetime.fromtimestamp(mtime / 1e9, timezone.utc).isoformat(timespec="seconds"),
            )
            masks[image_id], mtimes[image_id] = prov, mtime
        if skipped:
            warnings.warn(
                f"rebuild_index skipped {len(skipped)} unreadable PNG(s) or links, left in "
                f"place: {skipped[:5]}",
                stacklevel=3,
            )
        data = {"format": "agkit MaskStore", "version": 1, "masks": dict(sorted(masks.items()))}
        _atomic_write(index_path, json.dumps(data, indent=1).encode("utf-8"), durable)

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


def _read_png(path: Path, fix: str) -> tuple[np.ndarray, str | None, dict]:
    """Read a mask PNG -> (H x W uint8 0/1, stored image id or None, stored provenance)."""
    fix = fix or "delete or replace the file"
    try:
        with Image.open(path) as im:
            im.load()
            mode, text = im.mode, dict(getattr(im, "text", {}) or {})
            arr = np.asarray(im)
    except (
        Exception
    ) as e:  # PIL raises OSError, SyntaxError, ValueError, zlib errors ... for bad files
        raise CorruptMaskError(
            f"The mask file {path} is truncated or not a valid PNG ({e}); {fix}."
        ) from e
    if mode not in ("L", "1"):
        raise CorruptMaskError(
            f"The mask file {path} is a {mode} image, not 8-bit grayscale; {fix}."
        )
    if arr.dtype != bool and arr.max(initial=0) > 1:
        if np.any((arr != 0) & (arr != 255)):
            raise CorruptMaskError(f"The mask file {path} has values other than 0 and 255; {fix}.")
    try:
        prov = json.loads(text.get(_PROV_KEY, "{}"))
    except json.JSONDecodeError:
        prov = {}
    return (arr > 0).astype(np.uint8), text.get(_ID_KEY), prov if isinstance(prov, dict) else {}


_LOCKS: dict[str, FileLock] = {}


def _lock_for(folder: Path) -> FileLock:
    """The one lock object of a store folder in this process (re-entrant), shared by every
    MaskStore on that folder so two objects in one process do not wait for each other."""
    key = os.path.realpath(folder)
    if key not in _LOCKS:
        _LOCKS[key] = FileLock(os.path.join(key, LOCK_NAME))
    return _LOCKS[key]


@contextlib.contextmanager
def _locked(lock: FileLock):
    """Hold `lock`, checking every 2 ms while another process has it (filelock's default
    50 ms would dominate a burst of small writes)."""
    lock.acquire(poll_interval=0.002)
    try:
        yield
    finally:
        lock.release()


def _file_problem(folder: Path, name: str) -> str | None:
    """Why an index entry's file name is unsafe to use, or None for a plain name in folder."""
    if not name or name in (".", "..") or os.path.basename(name) != name or "\\" in name:
        return "which is not a plain file name (no folders, no '..')"
    if os.path.isabs(name):
        return "which is an absolute path"
    path = folder / name
    if path.is_symlink():
        return "which is a symbolic link (it may point outside the folder)"
    if path.exists() and not path.is_file():
        return "which is not a regular file"
    return None
