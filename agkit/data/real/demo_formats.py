"""The four on-disk formats of the demo datasets: one writer per format, each writing SynthFrac
images, labels and masks as FracAtlas, GRAZPEDWRI-DX, MURA or a class folder tree holds
them (``agkit.data.real.demo`` chooses the writer and makes the write atomic)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from agkit.data.mask_store import MaskStore
from agkit.data.shapes import mask_to_boxes, mask_to_polygons
from agkit.data.synthetic import SynthFrac

SPLIT_SHARES = (0.7, 0.15, 0.15)  # train/val/test shares of the published FracAtlas lists


# ---------------------------------------------------------------------------------------
# Helpers shared by the writers
# ---------------------------------------------------------------------------------------


def _pixels(source: SynthFrac) -> np.ndarray:
    """n x S x S uint8 images (SynthFrac values are already k/255)."""
    return np.round(source.images[:, 0].numpy() * 255).astype(np.uint8)


def _fracture_masks(source: SynthFrac) -> np.ndarray:
    """n x S x S uint8 0/1 fracture masks (all zero for normal images)."""
    return (source.fracture_masks[:, 0].numpy() > 0.5).astype(np.uint8)


def _save_image(path: Path, pixels: np.ndarray, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path, **options)


def _regions(mask: np.ndarray) -> list[np.ndarray]:
    """The 4-connected regions of an H x W 0/1 mask, each as its own H x W uint8 mask."""
    labelled, count = ndimage.label(mask)
    return [(labelled == j).astype(np.uint8) for j in range(1, count + 1)]


def _yolo_lines(boxes, size: int, class_id: int) -> str:
    """YOLO label text: one "cls xc yc w h" line per (x0, y0, x1, y1) pixel box, normalised."""
    return "".join(
        f"{class_id} {(x0 + x1) / 2 / size:.6f} {(y0 + y1) / 2 / size:.6f} "
        f"{(x1 - x0) / size:.6f} {(y1 - y0) / size:.6f}\n"
        for x0, y0, x1, y1 in boxes
    )


def _published_lists(stems: list[str], rng) -> dict[str, list[str]]:
    """Cut stems into train/val/test lists with SPLIT_SHARES (at least one in each)."""
    order = [stems[i] for i in rng.permutation(len(stems))]
    n_val = max(1, round(SPLIT_SHARES[1] * len(order)))
    n_test = max(1, round(SPLIT_SHARES[2] * len(order)))
    return {
        "test": sorted(order[:n_test]),
        "valid": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }


# ---------------------------------------------------------------------------------------
# FracAtlas
# ---------------------------------------------------------------------------------------

FRACATLAS_COLUMNS = [
    "image_id",
    "hand",
    "leg",
    "hip",
    "shoulder",
    "mixed",
    "hardware",
    "multiscan",
    "fractured",
    "fracture_count",
    "frontal",
    "lateral",
    "oblique",
]
REGIONS, REGION_SHARES = (
    ("hand", "leg", "hip", "shoulder"),
    (0.38, 0.48, 0.07, 0.07),
)  # about FracAtlas's mix
VIEWS = ("frontal", "lateral", "oblique")


def _voc(stem: str, folder_name: str, size: int, boxes) -> str:
    """A Pascal VOC annotation file for one image, as FracAtlas ships it."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder_name
    ET.SubElement(root, "filename").text = f"{stem}.jpg"
    dims = ET.SubElement(root, "size")
    for tag, value in (("width", size), ("height", size), ("depth", 1)):
        ET.SubElement(dims, tag).text = str(value)
    for x0, y0, x1, y1 in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = "fractured"
        box = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x0), ("ymin", y0), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(box, tag).text = str(value)
    return ET.tostring(root, encoding="unicode")


def write_fracatlas(source: SynthFrac, root: Path, rng) -> list[str]:
    pixels, fractures, labels = _pixels(source), _fracture_masks(source), source.labels.tolist()
    size = pixels.shape[-1]
    for sub in ("COCO JSON", "YOLO", "PASCAL VOC"):
        (root / "Annotations" / sub).mkdir(parents=True, exist_ok=True)
    rows, stems = [], []
    coco = {"categories": [{"id": 1, "name": "fractured"}], "images": [], "annotations": []}
    regions = rng.choice(len(REGIONS), size=len(labels), p=REGION_SHARES)
    views = rng.integers(0, len(VIEWS), size=len(labels))
    for k, label in enumerate(labels):
        stem = f"IMG{k:07d}"
        stems.append(stem)
        sub = "Fractured" if label else "Non_fractured"
        _save_image(root / "images" / sub / f"{stem}.jpg", pixels[k], quality=95)
        instances = _regions(fractures[k]) if label else []  # one COCO instance per region
        boxes = [mask_to_boxes(region)[0] for region in instances]
        if label:
            coco["images"].append(
                {"id": k + 1, "file_name": f"{stem}.jpg", "width": size, "height": size}
            )
        for region, (x0, y0, x1, y1) in zip(instances, boxes, strict=True):
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": k + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "segmentation": mask_to_polygons(region),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": int(region.sum()),
                }
            )
        (root / "Annotations" / "YOLO" / f"{stem}.txt").write_text(_yolo_lines(boxes, size, 0))
        (root / "Annotations" / "PASCAL VOC" / f"{stem}.xml").write_text(
            _voc(stem, sub, size, boxes)
        )
        flags = {r: int(regions[k] == i) for i, r in enumerate(REGIONS)}
        view = {v: int(views[k] == i) for i, v in enumerate(VIEWS)}
        rows.append(
            {
                "image_id": f"{stem}.jpg",
                **flags,
                "mixed": 0,
                "hardware": 0,
                "multiscan": 0,
                "fractured": label,
                "fracture_count": len(boxes),
                **view,
            }
        )
    pd.DataFrame(rows, columns=FRACATLAS_COLUMNS).to_csv(root / "dataset.csv", index=False)
    (root / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json").write_text(json.dumps(coco))

    lists = _published_lists([s for s, label in zip(stems, labels, strict=True) if label], rng)
    split_folder = root / "Utilities" / "Fracture Split"
    split_folder.mkdir(parents=True)
    for split, listed in lists.items():
        pd.DataFrame({"image_id": [f"{s}.jpg" for s in listed]}).to_csv(
            split_folder / f"{split}.csv", index=False
        )
    return stems


# ---------------------------------------------------------------------------------------
# GRAZPEDWRI-DX
# ---------------------------------------------------------------------------------------

GRAZ_COLUMNS = [
    "filestem",
    "patient_id",
    "study_number",
    "timehash",
    "gender",
    "age",
    "laterality",
    "projection",
    "initial_exam",
    "ao_classification",
    "cast",
    "diagnosis_uncertain",
    "osteopenia",
    "fracture_visible",
    "metal",
    "pixel_spacing",
    "device_manufacturer",
]
FRACTURE_CLASS = 3


def write_grazpedwri(source: SynthFrac, root: Path, rng) -> list[str]:
    pixels, fractures, labels = _pixels(source), _fracture_masks(source), source.labels.tolist()
    size = pixels.shape[-1]
    label_folder = root / "folder_structure" / "yolov5" / "labels"
    label_folder.mkdir(parents=True)
    rows, stems = [], []
    patient, study, left = 0, 0, 0
    for k, label in enumerate(labels):
        if left == 0:  # a new patient with one to three studies
            patient, study, left = patient + 1, 0, int(rng.integers(1, 4))
            sex, age, side = (
                rng.choice(["M", "F"]),
                int(rng.integers(4, 18)),
                rng.choice(["L", "R"]),
            )
        study, left = study + 1, left - 1
        patient_id, projection = f"{patient:04d}", 1 + (study - 1) % 2
        timehash = str(rng.integers(10**9, 10**10))
        stem = f"{patient_id}_{timehash}_{study:02d}_WRI-{side}{projection}_{sex}{age:03d}"
        stems.append(stem)
        _save_image(root / "images_part1" / f"{stem}.png", pixels[k])
        boxes = mask_to_boxes(fractures[k]) if label else []
        (label_folder / f"{stem}.txt").write_text(_yolo_lines(boxes, size, FRACTURE_CLASS))
        blank = ""  # GRAZPEDWRI-DX writes only the 1s of its flags
        rows.append(
            [
                stem,
                patient_id,
                study,
                timehash,
                sex,
                age,
                side,
                projection,
                1 if study == 1 else blank,
                "23r-M/2.1" if label else blank,
                blank,
                blank,
                blank,
                1 if label else blank,
                blank,
                0.1,
                "Demo",
            ]
        )
    pd.DataFrame(rows, columns=GRAZ_COLUMNS).to_csv(root / "dataset.csv", index=False)
    return stems


# ---------------------------------------------------------------------------------------
# MURA v1.1
# ---------------------------------------------------------------------------------------

MURA_PARTS = ("XR_FOREARM", "XR_HUMERUS")  # the long bones SynthFrac draws
MURA_VALID_SHARE = 0.2  # share of patients in MURA's "valid" part (our "test" split)


def write_mura(source: SynthFrac, root: Path, rng) -> list[str]:
    pixels, labels = _pixels(source), source.labels.tolist()
    # Studies: runs of one to three images that share a label, one or two studies per patient.
    by_label = {
        0: [k for k, y in enumerate(labels) if y == 0],
        1: [k for k, y in enumerate(labels) if y == 1],
    }
    studies = []
    for label, members in by_label.items():
        start = 0
        while start < len(members):
            length = int(rng.integers(1, 4))
            studies.append((label, members[start : start + length]))
            start += length
    studies = [studies[i] for i in rng.permutation(len(studies))]
    ids = [""] * len(labels)
    lists: dict[str, tuple[list[str], list[str]]] = {"train": ([], []), "valid": ([], [])}
    patient, study_number = 0, 0
    for label, members in studies:
        if study_number in (0, 2) or rng.random() < 0.5:  # one or two studies per patient
            patient, study_number = patient + 1, 0
            part = "valid" if rng.random() < MURA_VALID_SHARE else "train"
            body_part = MURA_PARTS[patient % len(MURA_PARTS)]
        study_number += 1
        outcome = "positive" if label else "negative"
        study = f"MURA-v1.1/{part}/{body_part}/patient{patient:05d}/study{study_number}_{outcome}/"
        lists[part][1].append(f"{study},{label}")
        for j, k in enumerate(members, start=1):
            path = f"{study}image{j}.png"
            _save_image(root / path, pixels[k])
            lists[part][0].append(path)
            ids[k] = path.removeprefix("MURA-v1.1/").removesuffix(".png")
    for part, (paths, study_lines) in lists.items():
        (root / "MURA-v1.1" / f"{part}_image_paths.csv").write_text(
            "".join(f"{p}\n" for p in paths)
        )
        (root / "MURA-v1.1" / f"{part}_labeled_studies.csv").write_text(
            "".join(f"{s}\n" for s in study_lines)
        )
    return ids


# ---------------------------------------------------------------------------------------
# A folder of class subfolders
# ---------------------------------------------------------------------------------------

FOLDER_CLASSES = ("negative", "positive")  # sorted order = label order


def write_folder(source: SynthFrac, root: Path, rng) -> list[str]:
    pixels, fractures, labels = _pixels(source), _fracture_masks(source), source.labels.tolist()
    ids = []
    store = MaskStore(root / "masks", durable=False)  # a demo can be written again
    with store.batch():
        for k, label in enumerate(labels):
            image_id = f"{FOLDER_CLASSES[label]}/case{k:04d}"
            _save_image(root / f"{image_id}.png", pixels[k])
            if fractures[k].any():
                store.put(image_id, fractures[k], source="synthetic", tool="agkit demo")
            ids.append(image_id)
    return ids
