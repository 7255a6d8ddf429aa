"""FracAtlas (Abedeen et al., Scientific Data 2023): 4,083 radiographs, 717 fractured.

Labels come from the ``fractured`` column of dataset.csv; guidance masks from the
fracture outlines (COCO polygons, the default) or from the YOLO / Pascal VOC boxes.

Splits: the authors publish train/valid/test lists in ``Utilities/Fracture Split/``,
but for *fractured images only*. We keep those lists for the fractured images ("valid"
becomes "val") and split everything they do not list (all non-fractured images, and any
fractured image missing from the lists) with a seeded split in the same proportions,
stratified by label and body region. Without the lists, every image is split that way
with ``fractions``. FracAtlas has no patient ids, so no split can be grouped by patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from agkit.data.annotation_coco import read_coco
from agkit.data.annotation_voc import read_voc
from agkit.data.annotation_yolo import read_yolo
from agkit.data.real.source import (
    DatasetInfo,
    FolderFiles,
    RealSource,
    ShapeMasks,
    flag,
    locate,
    read_csv,
    require,
)
from agkit.data.real.splits import check_fractions, split_stratified

INFO = DatasetInfo("FracAtlas", "https://doi.org/10.6084/m9.figshare.22363012", "FracAtlas")
COCO = "Annotations/COCO JSON/COCO_fracture_masks.json"
MASK_FOLDERS = {"yolo": "Annotations/YOLO", "voc": "Annotations/PASCAL VOC"}
SPLIT_FOLDER = "Utilities/Fracture Split"
SPLIT_FILES = {"train": "train.csv", "val": "valid.csv", "test": "test.csv"}
REGIONS = ("hand", "leg", "hip", "shoulder")


def _region(table: pd.DataFrame) -> pd.Series:
    """One body-region word per image: hand/leg/hip/shoulder, or "mixed" (several or none)."""
    hits = pd.DataFrame({r: flag(table[r]) if r in table else 0 for r in REGIONS})
    single = hits.sum(axis=1) == 1
    return pd.Series(np.where(single, hits.idxmax(axis=1), "mixed"), index=table.index)


def _published_split(folder: Path, stems: pd.Series) -> pd.Series | None:
    """Split names from the published lists (NaN for unlisted images), or None without lists."""
    split_folder = folder / SPLIT_FOLDER
    if not split_folder.is_dir():
        return None
    require(INFO, folder, [f"{SPLIT_FOLDER}/{name}" for name in SPLIT_FILES.values()])
    assigned = {}
    for split, name in SPLIT_FILES.items():
        listed = read_csv(split_folder / name, dtype=str)
        column = "image_id" if "image_id" in listed else listed.columns[0]
        for value in listed[column].dropna():
            assigned[Path(value.strip()).stem] = split
    return stems.map(assigned)


def _image_key(files: FolderFiles, name: str, label: int) -> str:
    """images/<Fractured|Non_fractured>/<name>; the folder follows the label, but an image
    filed under the other folder is still found."""
    usual, other = ("Fractured", "Non_fractured") if label else ("Non_fractured", "Fractured")
    if not files.exists(f"images/{usual}/{name}") and files.exists(f"images/{other}/{name}"):
        return f"images/{other}/{name}"
    return f"images/{usual}/{name}"


def load_fracatlas(
    root,
    *,
    mask_source: str = "polygon",
    published_split: bool = True,
    fractions=(0.8, 0.1, 0.1),
    seed: int = 0,
) -> RealSource:
    """Open FracAtlas (all splits). See open_dataset for the common options.

    mask_source: "polygon" (COCO fracture outlines), "yolo" or "voc" (fracture boxes), or
        "none". Non-fractured images have no mask.
    published_split: use the authors' lists for the fractured images when present.
    fractions: (train, val, test) shares, used when the lists are absent or not used.
    """
    if mask_source not in ("polygon", "yolo", "voc", "none"):
        raise ValueError(
            f"mask_source must be 'polygon', 'yolo', 'voc' or 'none', got {mask_source!r}."
        )
    folder = locate(root, "dataset.csv", INFO, nested=("FracAtlas",))
    needed = ["images/Fractured", "images/Non_fractured"]
    if mask_source == "polygon":
        needed.append(COCO)
    elif mask_source in MASK_FOLDERS:
        needed.append(MASK_FOLDERS[mask_source])
    require(INFO, folder, needed)

    table = read_csv(folder / "dataset.csv", dtype=str)
    table["image_id"] = table["image_id"].str.strip()
    table = table.drop_duplicates("image_id").reset_index(drop=True)
    file_names = table["image_id"].where(
        table["image_id"].str.contains(r"\."), table["image_id"] + ".jpg"
    )
    table.insert(0, "file_name", file_names)
    table["image_id"] = [Path(name).stem for name in file_names]
    table["label"] = flag(table["fractured"])
    for column in table.columns.drop(["image_id", "file_name"]):
        table[column] = pd.to_numeric(table[column], errors="coerce").fillna(0).astype(int)

    files = FolderFiles(folder)
    table["key"] = [
        _image_key(files, name, label)
        for name, label in zip(table["file_name"], table["label"], strict=True)
    ]

    table["region"] = _region(table)
    table["split"] = _split(folder, table, published_split, fractions, seed)

    masks = None
    key_of = dict(zip(table["image_id"], table["key"], strict=True))
    if mask_source == "polygon":
        coco = read_coco(folder / COCO)  # keyed by file name; FracAtlas ids are the stems
        masks = ShapeMasks(
            {Path(name).stem: shapes for name, shapes in coco.items()}, files, key_of
        )
    elif mask_source in MASK_FOLDERS:
        annotations = folder / MASK_FOLDERS[mask_source]
        if mask_source == "yolo":
            shapes = {i: read_yolo(annotations / f"{i}.txt") for i in table["image_id"]}
        else:
            shapes = {i: read_voc(annotations / f"{i}.xml") for i in table["image_id"]}
        masks = ShapeMasks(shapes, files, key_of)
    return RealSource(INFO, table, files, masks, ["non_fractured", "fractured"], in_channels=1)


def _split(
    folder: Path, table: pd.DataFrame, published_split: bool, fractions, seed: int
) -> pd.Series:
    """One split name per image (see the module docstring for the rule)."""
    strata = table["label"].astype(str) + "/" + table["region"]
    published = _published_split(folder, table["image_id"]) if published_split else None
    if published is None:
        return pd.Series(split_stratified(strata, fractions, seed), index=table.index)
    counts = published.value_counts()
    shares: Sequence[float] = [counts.get(s, 0) for s in ("train", "val", "test")]
    if sum(shares) == 0:
        return pd.Series(split_stratified(strata, fractions, seed), index=table.index)
    shares = check_fractions([s / sum(shares) for s in shares])
    unlisted = published.isna()
    split = published.copy()
    split[unlisted] = split_stratified(strata[unlisted], shares, seed)
    return split
