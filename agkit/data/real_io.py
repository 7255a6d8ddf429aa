"""Reading the files of real datasets: locating the folder, CSV tables, image decoding.

Real downloads are untidy. This module absorbs what the loaders in ``real_*.py`` meet:

* a zip that nests its top folder (``FracAtlas/FracAtlas/dataset.csv``),
* CSV files that start with a UTF-8 byte-order mark,
* 8-bit, 16-bit, palette and RGB images in one collection,
* truncated JPEG/PNG files (``find_truncated`` spots them cheaply; ``check_images`` applies
  the ``on_corrupt`` policy with a single warning),
* an incomplete folder: ``missing_files_error`` builds the one FileNotFoundError that
  names what is missing and where the dataset comes from.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageFile

ON_CORRUPT = ("load", "skip", "error")


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset comes from, quoted in every "missing file" error."""

    title: str   # e.g. "FracAtlas"
    source: str  # DOI or official page
    section: str  # heading of its section in data/README.md


def missing_files_error(info: DatasetInfo, folder: Path, missing: Sequence[str]) -> FileNotFoundError:
    """One error naming the missing files (relative to ``folder``) and where to get the data."""
    shown = ", ".join(repr(m) for m in missing[:3])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return FileNotFoundError(
        f"{info.title}: {shown}{more} not found in {folder}. Download {info.title} from "
        f"{info.source} and unpack it there (see data/README.md, section '{info.section}')."
    )


def locate(root, marker: str, info: DatasetInfo, nested: Sequence[str] = ()) -> Path:
    """The folder under ``root`` that holds ``marker`` (a relative file path).

    Tries ``root`` itself, then ``root/<n>`` and ``root/<n>/<n>`` for each name n in
    ``nested`` (zips often repeat their top folder). Raises FileNotFoundError naming
    ``marker`` when none holds it.
    """
    root = Path(root).expanduser()
    candidates = [root]
    for name in nested:
        candidates += [root / name, root / name / name]
    for folder in candidates:
        if (folder / marker).is_file():
            return folder
    if not root.exists():
        raise FileNotFoundError(
            f"{info.title}: the folder {root} does not exist. Download {info.title} from "
            f"{info.source} and pass the folder you unpacked it into (see data/README.md, "
            f"section '{info.section}')."
        )
    raise missing_files_error(info, root, [marker])


def require(info: DatasetInfo, folder: Path, paths: Sequence[str]) -> None:
    """Raise one FileNotFoundError listing every path (relative to folder) that is absent."""
    missing = [p for p in paths if not (folder / p).exists()]
    if missing:
        raise missing_files_error(info, folder, missing)


def read_csv(path, **kwargs) -> pd.DataFrame:
    """pandas.read_csv that drops a leading UTF-8 byte-order mark and trims column names."""
    table = pd.read_csv(path, encoding="utf-8-sig", **kwargs)
    table.columns = [str(c).strip() for c in table.columns]
    return table


def flag(column: pd.Series) -> pd.Series:
    """A 0/1 flag column where blank means 0 (GRAZPEDWRI-DX writes only the 1s)."""
    return pd.to_numeric(column, errors="coerce").fillna(0).astype(int).clip(0, 1)


# ---------------------------------------------------------------------------------------
# Image files: folders and (for CUB) tar archives share this small interface
# ---------------------------------------------------------------------------------------


class FolderFiles:
    """Image files under a folder, addressed by their path relative to it."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.where = self.folder  # named in "missing file" errors

    def open(self, key: str) -> BinaryIO:
        return open(self.folder / key, "rb")

    def exists(self, key: str) -> bool:
        return (self.folder / key).is_file()


@contextlib.contextmanager
def _truncated_allowed(allowed: bool):
    """Let PIL decode truncated files (missing rows come out grey) inside the block."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = allowed
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def to_array(image: Image.Image) -> np.ndarray:
    """A decoded PIL image as an H x W (gray) or H x W x 3 (colour) uint8 or uint16 array.

    16-bit grayscale stays uint16; GuidedDataset divides every array by its dtype's
    maximum (255 or 65535) and converts gray <-> RGB as its ``channels`` asks.
    The array is a writable copy (torch warns about read-only NumPy arrays).
    """
    if image.mode.startswith("I;16") or image.mode == "I":  # PIL opens some 16-bit PNGs as "I"
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    if image.mode not in ("L", "RGB"):
        # palette, alpha, CMYK, ...: PIL converts; a gray palette image becomes equal R = G = B
        image = image.convert("L" if image.mode in ("1", "LA", "La", "F") else "RGB")
    return np.array(image)


def decode(files, key: str, allow_truncated: bool = True) -> np.ndarray:
    """Decode one image of ``files`` (see to_array for the result)."""
    with files.open(key) as handle, _truncated_allowed(allow_truncated):
        image = Image.open(handle)
        image.load()
        return to_array(image)


def image_shape(files, key: str) -> tuple[int, int]:
    """(H, W) of an image, read from its header only."""
    with files.open(key) as handle:
        width, height = Image.open(handle).size
    return height, width


class ImageColumn:
    """The ``images`` argument of GuidedDataset: i -> H x W (x 3) array of image i."""

    def __init__(self, files, keys: Sequence[str]):
        self.files, self.keys = files, list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __call__(self, i: int) -> np.ndarray:
        return decode(self.files, self.keys[i])


# ---------------------------------------------------------------------------------------
# Truncated files
# ---------------------------------------------------------------------------------------

_END_MARKERS = {b"\xff\xd8": b"\xff\xd9", b"\x89P": b"IEND"}  # JPEG: EOI marker; PNG: IEND chunk


def _looks_complete(handle: BinaryIO) -> bool:
    """Cheap test: does the file end with its format's end marker? (Reads 2 + 64 bytes.)"""
    start = handle.read(2)
    end_marker = _END_MARKERS.get(start)
    if end_marker is None:
        return True  # another format: leave the judgement to PIL when the image is used
    handle.seek(0, io.SEEK_END)
    handle.seek(max(0, handle.tell() - 64))
    return end_marker in handle.read().rstrip(b"\x00 \r\n")


def is_truncated(files, key: str) -> bool:
    """True when the image lacks its end and PIL cannot decode it completely."""
    with files.open(key) as handle:
        if _looks_complete(handle):
            return False
        handle.seek(0)
        try:
            with _truncated_allowed(False):
                Image.open(handle).load()
        except OSError:
            return True
    return False


def find_truncated(files, keys: Sequence[str]) -> list[str]:
    """The keys whose images are truncated. Decodes only files without an end marker."""
    return [key for key in keys if is_truncated(files, key)]


def check_images(files, keys: Sequence[str], on_corrupt: str, title: str) -> np.ndarray:
    """Apply the on_corrupt policy to truncated images; returns a bool "keep" array.

    "load": keep them (PIL fills the missing rows with grey), "skip": leave them out,
    "error": raise ValueError. Either of the first two warns once with the count.
    """
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}.")
    bad = set(find_truncated(files, keys))
    keep = np.array([key not in bad for key in keys], dtype=bool)
    if not bad:
        return keep
    example = sorted(bad)[0]
    if on_corrupt == "error":
        raise ValueError(
            f"{title}: {len(bad)} truncated image file(s), e.g. {example!r}; pass "
            "on_corrupt='load' to read what is there or on_corrupt='skip' to leave them out."
        )
    if on_corrupt == "skip":
        warnings.warn(f"{title}: skipped {len(bad)} truncated image file(s), e.g. {example!r}.",
                      stacklevel=3)
        return keep
    warnings.warn(
        f"{title}: {len(bad)} truncated image file(s), e.g. {example!r}, load with their "
        "missing part grey; pass on_corrupt='skip' to leave them out.", stacklevel=3)
    return np.ones(len(keys), dtype=bool)


# ---------------------------------------------------------------------------------------
# What every loader in real_*.py returns
# ---------------------------------------------------------------------------------------


@dataclass
class RealSource:
    """One opened dataset, all splits, before a split is picked.

    table: one row per image, in a fixed order, with columns image_id (str), label (int),
        split ("train" | "val" | "test"), key (the file key ``files`` reads) and metadata.
    files: FolderFiles (or the CUB archive reader): ``files.open(key)`` gives the bytes.
    masks: callable image_id -> H x W mask or None, a MaskStore, or None (no masks).
    class_names: names of labels 0..N-1. channels: the natural channel count (1 or 3).
    cheap_scan: False when looking for truncated files means reading every image (a tar
        archive); then on_corrupt="load" skips the look.
    """

    info: DatasetInfo
    table: pd.DataFrame
    files: object
    masks: object
    class_names: list
    channels: int = 1
    cheap_scan: bool = True
