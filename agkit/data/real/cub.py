"""CUB-200-2011 (Wah et al., 2011): the birds the method's authors demonstrate it on.

200 bird species, 11,788 photographs, 15 part locations per image. The authors' guidance
mask is a filled disc (radius 50 px) around every *visible* part, all discs unioned; their
few-shot experiments train on N images per class and test on the whole official test set.

The loader reads the downloaded ``CUB_200_2011.tgz`` directly, without unpacking: the
small text tables are read in one pass over the archive (remembered for the session), and
the JPEG bytes a split needs are read in a second pass the first time an image is used,
then kept in memory (about 0.1 MB per image). With DataLoader workers, read one item
(``ds[0]``) before the loader starts them, so they inherit the bytes instead of each
reading the archive again. An unpacked ``CUB_200_2011/`` folder avoids all this and is
faster when many runs read it.

Splits: "train" is ``images_per_class`` images per class drawn with ``seed`` from the
official training images (all of them but the val ones when None); "val" is
``val_per_class`` further official training images per class (the same for every N, so
runs with different N are compared on one val set); "test" is the official test set.
The draws are nested: the 5-per-class subset is part of the 10-per-class one.
"""

from __future__ import annotations

import functools
import io
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

from agkit.data.annotation_shapes import Shapes
from agkit.data.real.source import (
    DatasetInfo,
    FolderFiles,
    ImageFiles,
    RealSource,
    ShapeMasks,
    missing_files_error,
)

INFO = DatasetInfo(
    "CUB-200-2011",
    "https://www.vision.caltech.edu/datasets/cub_200_2011/ (doi 10.22002/D1.20098)",
    "CUB-200-2011",
)
TOP = "CUB_200_2011"
TABLES = (
    "images.txt",
    "train_test_split.txt",
    "image_class_labels.txt",
    "classes.txt",
    "bounding_boxes.txt",
    "parts/part_locs.txt",
    "parts/parts.txt",
)


# ---------------------------------------------------------------------------------------
# Reading from the archive
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _scan_archive(path: str, mtime: float, size: int) -> tuple[str, dict, frozenset]:
    """One pass over the archive: (prefix, {table name: text}, image member keys).

    prefix is the archive's top folder with a slash ("CUB_200_2011/"); keys and table
    names are relative to it. mtime and size make a changed file miss the cache.
    """
    texts, names = {}, []
    with tarfile.open(path, "r|*") as archive:  # "r|": one forward pass, no seeking
        for member in archive:
            if not member.isfile():
                continue
            name = member.name.removeprefix("./")
            names.append(name)
            table = next((t for t in TABLES if name == t or name.endswith("/" + t)), None)
            if table is not None and "/images/" not in f"/{name}":
                data = archive.extractfile(member)
                assert data is not None  # a regular file member
                texts[name] = data.read().decode("utf-8-sig")
    index = [n for n in texts if n == "images.txt" or n.endswith("/images.txt")]
    prefix = min(index, key=len)[: -len("images.txt")] if index else ""
    tables = {n[len(prefix) :]: text for n, text in texts.items() if n.startswith(prefix)}
    members = frozenset(n[len(prefix) :] for n in names if n.startswith(prefix + "images/"))
    return prefix, tables, members


class TarFiles:
    """Image members of a tar archive, read in one pass on first use and kept as bytes.

    Same interface as source.FolderFiles: ``open(key)`` and ``exists(key)``, with keys
    relative to the archive's top folder ("images/001.Black_footed_Albatross/....jpg").
    """

    def __init__(self, path, prefix: str, members: frozenset, wanted):
        self.path, self.prefix, self.members = Path(path), prefix, members
        self.where = self.path  # named in "missing file" errors
        self.wanted = set(wanted)
        self._bytes: dict[str, bytes] = {}

    def exists(self, key: str) -> bool:
        return key in self.members

    def open(self, key: str):
        if key not in self._bytes:
            self.wanted.add(key)
            self._read_wanted()
        return io.BytesIO(self._bytes[key])

    def _read_wanted(self) -> None:
        with tarfile.open(self.path, "r|*") as archive:
            for member in archive:
                key = member.name.removeprefix("./")[len(self.prefix) :]
                if member.isfile() and key in self.wanted and key not in self._bytes:
                    data = archive.extractfile(member)
                    assert data is not None  # a regular file member
                    self._bytes[key] = data.read()
        lost = self.wanted - self._bytes.keys()
        if lost:
            raise missing_files_error(INFO, self.path, sorted(self.prefix + k for k in lost))


def _find(root) -> tuple[ImageFiles, dict, Path]:
    """(files, tables, where) for an archive or an unpacked folder under ``root``."""
    root = Path(root).expanduser()
    for folder in (root, root / TOP, root / TOP / TOP):
        if (folder / "images.txt").is_file():
            tables = {
                t: (folder / t).read_text(encoding="utf-8-sig")
                for t in TABLES
                if (folder / t).is_file()
            }
            return FolderFiles(folder), tables, folder
    archive = (
        root
        if root.is_file()
        else next(
            (
                root / n
                for n in (f"{TOP}.tgz", f"{TOP}.tar.gz", f"{TOP}.tar")
                if (root / n).is_file()
            ),
            None,
        )
    )
    if archive is None:
        if not root.exists():
            raise FileNotFoundError(
                f"{INFO.title}: {root} does not exist. "
                f"Download {TOP}.tgz from {INFO.source} and pass its path "
                f"(see data/README.md, section '{INFO.section}')."
            )
        raise missing_files_error(INFO, root, [f"{TOP}.tgz", f"{TOP}/images.txt"])
    stat = archive.stat()
    prefix, tables, members = _scan_archive(str(archive.resolve()), stat.st_mtime, stat.st_size)
    return TarFiles(archive, prefix, members, []), tables, archive


def _table(text: str, columns: list[str]) -> pd.DataFrame:
    """A space-separated CUB table (no header) as a DataFrame with ``columns``."""
    if not text.strip():
        return pd.DataFrame(columns=columns)
    return pd.read_csv(io.StringIO(text), sep=r"\s+", header=None, names=columns)


# ---------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------


def _draw(table: pd.DataFrame, images_per_class, val_per_class: int, seed: int) -> pd.Series:
    """Split names for the official training images (see the module docstring)."""
    rng = np.random.default_rng(seed)
    split = pd.Series("unused", index=table.index, dtype=object)
    official_train = table[table["is_training_image"] == 1].sort_values("cub_id")
    for _, group in official_train.groupby("label", sort=True):
        order = group.index.to_numpy()[rng.permutation(len(group))]
        n_train = len(order) - val_per_class if images_per_class is None else images_per_class
        n_train = max(0, min(n_train, len(order)))
        split[order[:n_train]] = "train"
        split[order[max(n_train, len(order) - val_per_class) :]] = "val"
    split[table["is_training_image"] == 0] = "test"
    return split


def load_cub(
    root,
    *,
    images_per_class: int | None = None,
    val_per_class: int = 5,
    mask_source: str = "parts",
    radius: float = 50.0,
    seed: int = 0,
) -> RealSource:
    """Open CUB-200-2011 from CUB_200_2011.tgz or its unpacked folder.

    images_per_class: N training images per class (None: all but the val ones).
    val_per_class: official training images per class held out as "val" (0: none).
    mask_source: "parts" (discs of ``radius`` px around visible parts, the authors'),
        "box" (the bird's bounding box) or "none".
    """
    if mask_source not in ("parts", "box", "none"):
        raise ValueError(f"mask_source must be 'parts', 'box' or 'none', got {mask_source!r}.")
    if images_per_class is not None and images_per_class < 1:
        raise ValueError(
            f"images_per_class must be a positive number or None, got {images_per_class}."
        )
    files, tables, where = _find(root)
    needed = ["images.txt", "train_test_split.txt", "image_class_labels.txt"]
    needed += {"parts": ["parts/part_locs.txt"], "box": ["bounding_boxes.txt"], "none": []}[
        mask_source
    ]
    missing = [t for t in needed if t not in tables]
    if missing:  # inside an archive, name the member; in a folder, the file
        raise missing_files_error(
            INFO, where, [f"{TOP}/{t}" if where.is_file() else t for t in missing]
        )

    table = _table(tables["images.txt"], ["cub_id", "path"])
    table = table.merge(
        _table(tables["train_test_split.txt"], ["cub_id", "is_training_image"]), on="cub_id"
    )
    table = table.merge(
        _table(tables["image_class_labels.txt"], ["cub_id", "class_id"]), on="cub_id"
    )
    table["label"] = table["class_id"] - 1
    table["image_id"] = table["path"].str.rsplit(".", n=1).str[0]
    table["key"] = "images/" + table["path"]
    table["split"] = _draw(table, images_per_class, val_per_class, seed)
    table = table[["image_id", "label", "split", "key", "cub_id", "class_id", "is_training_image"]]

    if "classes.txt" in tables:
        names = _table(tables["classes.txt"], ["class_id", "name"]).sort_values("class_id")["name"]
    else:
        names = (
            table.drop_duplicates("class_id")
            .sort_values("class_id")["image_id"]
            .str.split("/")
            .str[0]
        )
    class_names = [n.split(".", 1)[-1] for n in names]

    key_of = dict(zip(table["image_id"], table["key"], strict=True))
    id_of = dict(zip(table["cub_id"], table["image_id"], strict=True))
    masks = None
    if mask_source == "parts":
        parts = _table(tables["parts/part_locs.txt"], ["cub_id", "part_id", "x", "y", "visible"])
        parts = parts[parts["visible"] == 1]
        shapes = {
            id_of[c]: Shapes(discs=list(zip(g["x"], g["y"], strict=True)), radius=radius)
            for c, g in parts.groupby("cub_id")
            if c in id_of
        }
        masks = ShapeMasks(shapes, files, key_of)
    elif mask_source == "box":
        boxes = _table(tables["bounding_boxes.txt"], ["cub_id", "x", "y", "w", "h"])
        shapes = {
            id_of[c]: Shapes(boxes=[(x, y, x + w, y + h)])
            for c, x, y, w, h in boxes.itertuples(index=False)
            if c in id_of
        }
        masks = ShapeMasks(shapes, files, key_of)
    return RealSource(
        INFO,
        table,
        files,
        masks,
        class_names,
        in_channels=3,
        cheap_scan=not isinstance(files, TarFiles),
    )
