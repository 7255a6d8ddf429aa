"""GRAZPEDWRI-DX (Nagy et al., Scientific Data 2022): 20,327 paediatric wrist radiographs.

The label is the ``fracture_visible`` flag of dataset.csv (blank means 0), or, with
``label_source="boxes"``, whether the image has a box of class 3 (fracture). Guidance
masks are the YOLO boxes of the chosen classes (default: fracture only).

Splits: the dataset publishes none. Patients (``patient_id``) are split seeded into
train/val/test with ``fractions``, stratified by whether the patient has a fracture, and
each image follows its patient, so no patient appears in two splits.
"""

from __future__ import annotations

from pathlib import Path

from agkit.data.annotation_yolo import read_yolo, yolo_classes
from agkit.data.real.source import (
    DatasetInfo,
    FolderFiles,
    RealSource,
    ShapeMasks,
    flag,
    locate,
    missing_files_error,
    read_csv,
)
from agkit.data.real.splits import split_by_group

INFO = DatasetInfo("GRAZPEDWRI-DX", "https://doi.org/10.6084/m9.figshare.14825193", "GRAZPEDWRI-DX")
LABELS = "folder_structure/yolov5/labels"
FLAGS = ("initial_exam", "cast", "diagnosis_uncertain", "osteopenia", "fracture_visible", "metal")
CLASSES = (
    "boneanomaly",
    "bonelesion",
    "foreignbody",
    "fracture",
    "metal",
    "periostealreaction",
    "pronatorsign",
    "softtissue",
    "text",
)
FRACTURE = 3


def _index(folder: Path, pattern: str, suffix: str) -> dict[str, str]:
    """file stem -> path relative to ``folder`` for every ``suffix`` file under the folders
    matching ``pattern``."""
    index: dict[str, str] = {}
    for part in sorted(folder.glob(pattern)):
        for path in sorted(part.rglob(f"*{suffix}")):
            index.setdefault(path.stem, path.relative_to(folder).as_posix())
    return index


def load_grazpedwri(
    root,
    *,
    label_source: str = "fracture_visible",
    mask_source: str = "yolo",
    mask_classes=(FRACTURE,),
    fractions=(0.7, 0.15, 0.15),
    seed: int = 0,
) -> RealSource:
    """Open GRAZPEDWRI-DX (all splits). See open_dataset for the common options.

    label_source: "fracture_visible" (the csv flag) or "boxes" (has a class-3 box).
    mask_source: "yolo" (boxes of ``mask_classes``) or "none".
    mask_classes: YOLO class numbers whose boxes make the mask (None: every class);
        0 boneanomaly, 1 bonelesion, 2 foreignbody, 3 fracture, 4 metal,
        5 periostealreaction, 6 pronatorsign, 7 softtissue, 8 text.
    fractions: (train, val, test) shares of the *patients*.
    """
    if label_source not in ("fracture_visible", "boxes"):
        raise ValueError(
            f"label_source must be 'fracture_visible' or 'boxes', got {label_source!r}."
        )
    if mask_source not in ("yolo", "none"):
        raise ValueError(f"mask_source must be 'yolo' or 'none', got {mask_source!r}.")
    folder = locate(root, "dataset.csv", INFO, nested=("GRAZPEDWRI-DX",))
    images = _index(folder, "images_part*", ".png")
    images = images or _index(folder, "images", ".png")
    if not images:
        raise missing_files_error(INFO, folder, ["images_part1/ (and images_part2-4/)"])
    needs_boxes = label_source == "boxes" or mask_source == "yolo"
    if needs_boxes and not (folder / LABELS).is_dir():
        raise missing_files_error(INFO, folder, [LABELS])
    boxes = _index(folder, LABELS, ".txt") if needs_boxes else {}

    table = read_csv(folder / "dataset.csv", dtype=str)
    table["filestem"] = table["filestem"].str.strip()
    table.insert(0, "image_id", table["filestem"])
    for column in FLAGS:
        if column in table:
            table[column] = flag(table[column])
    missing = [f"images_part*/{stem}.png" for stem in table["image_id"] if stem not in images]
    if missing:
        raise missing_files_error(INFO, folder, missing)
    table["key"] = table["image_id"].map(images)

    label_file = {
        i: folder / boxes[i] if i in boxes else folder / LABELS / f"{i}.txt"
        for i in table["image_id"]
    }
    if label_source == "boxes":
        table["label"] = [int(FRACTURE in yolo_classes(label_file[i])) for i in table["image_id"]]
    else:
        table["label"] = table["fracture_visible"]
    table["split"] = split_by_group(table["patient_id"], table["label"], fractions, seed)

    masks = None
    if mask_source == "yolo":
        classes = None if mask_classes is None else tuple(int(c) for c in mask_classes)
        shapes = {i: read_yolo(label_file[i], classes) for i in table["image_id"]}
        masks = ShapeMasks(
            shapes, FolderFiles(folder), dict(zip(table["image_id"], table["key"], strict=True))
        )
    return RealSource(
        INFO, table, FolderFiles(folder), masks, ["no_fracture", "fracture"], in_channels=1
    )
