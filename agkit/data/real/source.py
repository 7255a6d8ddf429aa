"""What every real-dataset loader shares: locating the folder, CSV tables, file access,
masks drawn from annotation shapes, and the ``RealSource`` each loader returns.

Real downloads are untidy. This module absorbs what the loaders in this package meet:

* a zip that nests its top folder (``FracAtlas/FracAtlas/dataset.csv``),
* CSV files that start with a UTF-8 byte-order mark, or are UTF-16 with one (Excel's
  "Unicode text"); any other text that is not UTF-8 (Latin-1, Windows-1252) is refused with
  an error naming the file, the line and the fix,
* an incomplete folder: ``missing_files_error`` builds the one FileNotFoundError that
  names what is missing and where the dataset comes from.

Pixels are decoded by agkit.data.io (8-, 16-bit, palette and RGB images; corrupt files and
the ``on_corrupt`` policy: agkit.data.corrupt_policy); annotation files are parsed by
agkit.data.annotation_coco, annotation_yolo and annotation_voc.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import pandas as pd

from agkit.data.io import decode, image_size


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset comes from, quoted in every "missing file" error."""

    title: str  # e.g. "FracAtlas"
    source: str  # DOI or official page
    section: str  # heading of its section in data/README.md


def missing_files_error(
    info: DatasetInfo, folder: Path, missing: Sequence[str]
) -> FileNotFoundError:
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


# A file that starts with one of these byte-order marks is read in that encoding (UTF-32's
# marks begin with UTF-16's, so they are tried first); any other file must be UTF-8.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF8, "utf-8-sig"),
)


def read_text(path) -> str:
    """The text of a file: UTF-8, or UTF-8/16/32 with a byte-order mark.

    Anything else (e.g. Latin-1 from an old spreadsheet) is a ValueError naming the file,
    the line and the fix, rather than text with wrong letters or a bare UnicodeDecodeError.
    """
    path = Path(path)
    data = path.read_bytes()
    encoding = next((enc for bom, enc in _BYTE_ORDER_MARKS if data.startswith(bom)), "utf-8")
    fix = (
        "save it as UTF-8 (in Excel: Save As > 'CSV UTF-8'; in a text editor: "
        "encoding UTF-8) and try again"
    )
    if encoding == "utf-8" and b"\x00" in data:  # ASCII in UTF-16 would decode as UTF-8
        raise ValueError(
            f"{path} holds NUL bytes: it is probably UTF-16 without a byte-order mark; {fix}."
        )
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path} is not {encoding.upper().replace('-SIG', '')} text: line {line} holds "
            f"the byte 0x{data[e.start]:02x} (a Latin-1 or Windows-1252 file, perhaps); {fix}."
        ) from None


def read_csv(path, **kwargs) -> pd.DataFrame:
    """pandas.read_csv of a file read by `read_text` (UTF-8, or a byte-order mark's encoding);
    column names are trimmed."""
    table = pd.read_csv(io.StringIO(read_text(path)), **kwargs)
    table.columns = [str(c).strip() for c in table.columns]
    return table


def flag(column: pd.Series) -> pd.Series:
    """A 0/1 flag column where blank means 0 (GRAZPEDWRI-DX writes only the 1s)."""
    return pd.to_numeric(column, errors="coerce").fillna(0).astype(int).clip(0, 1)


# ---------------------------------------------------------------------------------------
# Image files: folders and (for CUB) tar archives share this small interface
# ---------------------------------------------------------------------------------------


class ImageFiles(Protocol):
    """What a RealSource reads its images through (FolderFiles, the CUB archive reader)."""

    where: Path  # named in "missing file" errors

    def open(self, key: str) -> BinaryIO: ...

    def exists(self, key: str) -> bool: ...


class FolderFiles:
    """Image files under a folder, addressed by their path relative to it."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.where = self.folder  # named in "missing file" errors

    def open(self, key: str) -> BinaryIO:
        return open(self.folder / key, "rb")

    def exists(self, key: str) -> bool:
        return (self.folder / key).is_file()


class ImageColumn:
    """The ``images`` argument of GuidedDataset: i -> H x W (x 3) array of image i."""

    def __init__(self, files, keys: Sequence[str]):
        self.files, self.keys = files, list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    truncated_ok = False  # open_dataset sets it for on_corrupt="load"

    def __call__(self, i: int) -> np.ndarray:
        """Image i as stored (agkit.data.io.decode); GuidedDataset scales it to [0, 1]."""
        key = self.keys[i]
        with self.files.open(key) as handle:
            return decode(handle, f"{self.files.where}/{key}", truncated_ok=self.truncated_ok)


class ShapeMasks:
    """Callable image_id -> H x W uint8 mask (None when the image has no shapes), the
    ``masks`` argument of GuidedDataset.

    shapes: image_id -> agkit.data.annotation_shapes.Shapes, parsed once when the dataset is opened;
    each mask is drawn when its image is read, at the image's size (files/keys: where to
    read it from), so no pixel masks are held in memory.
    """

    def __init__(self, shapes: dict, files, keys: dict):
        self.shapes, self.files, self.keys = shapes, files, keys

    def __contains__(self, image_id) -> bool:
        return image_id in self.shapes

    def __call__(self, image_id: str) -> np.ndarray | None:
        shapes = self.shapes.get(image_id)
        if not shapes:
            return None
        with self.files.open(self.keys[image_id]) as handle:
            return shapes.rasterize(image_size(handle))


# ---------------------------------------------------------------------------------------
# What every loader returns
# ---------------------------------------------------------------------------------------


@dataclass
class RealSource:
    """One opened dataset, all splits, before a split is picked.

    table: one row per image, in a fixed order, with columns image_id (str), label (int),
        split ("train" | "val" | "test"), key (the file key ``files`` reads) and metadata.
    files: FolderFiles (or the CUB archive reader): ``files.open(key)`` gives the bytes.
    masks: callable image_id -> H x W mask or None, a MaskStore, or None (no masks).
    class_names: names of labels 0..N-1. in_channels: the natural channel count (1 or 3).
    cheap_scan: False when looking for corrupt files means reading every image (a tar
        archive); then on_corrupt="load" skips the look.
    """

    info: DatasetInfo
    table: pd.DataFrame
    files: ImageFiles
    masks: object
    class_names: list
    in_channels: int = 1
    cheap_scan: bool = True
