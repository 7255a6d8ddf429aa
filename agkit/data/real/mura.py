"""MURA v1.1 (Rajpurkar et al., 2017): 40,561 upper-limb radiographs, 14,863 studies.

Radiologists labelled each *study* normal (0) or abnormal (1); every image of a study
inherits that label. MURA has no localisation at all: masks come from a MaskStore that
the annotation widget fills (option ``mask_store``), keyed by the image ids below.

Splits: MURA's public "valid" set is our **test** split (the real test set is hidden).
Our "val" is carved from MURA's train set by patient (``val_fraction`` of the patients,
stratified by whether the patient has an abnormal study), so no patient is in two splits.

Image ids are the image paths without "MURA-v1.1/" and ".png",
e.g. "train/XR_WRIST/patient00001/study1_positive/image1".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from agkit.data.real.source import DatasetInfo, FolderFiles, RealSource, locate, require
from agkit.data.real.splits import split_by_group

INFO = DatasetInfo("MURA", "https://stanfordmlgroup.github.io/competitions/mura/", "MURA")
TOP = "MURA-v1.1"
BODY_PARTS = (
    "XR_ELBOW",
    "XR_FINGER",
    "XR_FOREARM",
    "XR_HAND",
    "XR_HUMERUS",
    "XR_SHOULDER",
    "XR_WRIST",
)


def _lines(path: Path) -> list[str]:
    """Non-empty lines of a headerless CSV (a byte-order mark is dropped)."""
    return [
        line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()
    ]


def _part(mura_split: str, folder: Path, body_parts) -> pd.DataFrame:
    """The images of MURA's "train" or "valid" part as a table."""
    paths_file, studies_file = (
        f"{TOP}/{mura_split}_image_paths.csv",
        f"{TOP}/{mura_split}_labeled_studies.csv",
    )
    require(INFO, folder, [paths_file, studies_file])
    study_label = {}
    for line in _lines(folder / studies_file):
        study, _, label_text = line.rpartition(",")
        study_label[study.rstrip("/")] = int(float(label_text))
    rows = []
    for path in _lines(folder / paths_file):
        path = path.split(",")[0]
        parts = path.split("/")
        if len(parts) < 6 or parts[-1].startswith("._"):  # skip stray macOS resource files
            continue
        study = path.rsplit("/", 1)[0]
        body_part, patient, study_name = parts[-4], parts[-3], parts[-2]
        if body_parts is not None and body_part not in body_parts:
            continue
        # A study missing from the label file falls back to its folder name (study1_positive).
        label = study_label.get(study, int(study_name.endswith("positive")))
        image_id = path.removeprefix(f"{TOP}/").rsplit(".", 1)[0]
        rows.append((image_id, label, path, body_part, patient, study_name, mura_split))
    return pd.DataFrame(
        rows, columns=["image_id", "label", "key", "body_part", "patient", "study", "mura_split"]
    )


def load_mura(root, *, body_parts=None, val_fraction: float = 0.1, seed: int = 0) -> RealSource:
    """Open MURA. See open_dataset for the common options.

    root: the folder that holds MURA-v1.1/ (MURA-v1.1 itself is accepted too).
    body_parts: e.g. ("XR_WRIST",); None keeps all seven.
    val_fraction: share of MURA-train patients that form our "val" split.
    """
    if body_parts is not None:
        body_parts = (body_parts,) if isinstance(body_parts, str) else tuple(body_parts)
        unknown = [b for b in body_parts if b not in BODY_PARTS]
        if unknown:
            raise ValueError(
                f"unknown body part(s) {unknown}; choose from {', '.join(BODY_PARTS)}."
            )
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    root = Path(root).expanduser()
    if root.name == TOP and not (root / TOP).is_dir():
        root = root.parent
    folder = locate(root, f"{TOP}/train_image_paths.csv", INFO)

    train = _part("train", folder, body_parts)
    train["split"] = split_by_group(
        train["patient"], train["label"], (1 - val_fraction, val_fraction, 0), seed
    )
    test = _part("valid", folder, body_parts)
    test["split"] = "test"
    table = pd.concat([train, test], ignore_index=True)
    return RealSource(INFO, table, FolderFiles(folder), None, ["normal", "abnormal"], in_channels=1)
