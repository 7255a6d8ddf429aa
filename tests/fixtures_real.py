"""Tiny copies of the real datasets, written in exactly their on-disk formats.

Each ``make_*`` writes a miniature dataset under a folder and returns a ``Truth`` with
what a correct loader must find there (labels, boxes/polygons/part points in pixels,
image sizes, patients, the published split). File and column names follow each
dataset's published layout (data/README.md); the untidy parts of real copies are reproduced
on purpose:
a nested top folder and a UTF-8 byte-order mark (FracAtlas), blank flags and 16-bit
PNGs (GRAZPEDWRI-DX), a truncated JPEG, headerless CSVs (MURA), a .tgz (CUB).

Shapes are axis-aligned rectangles with integer corners, so the expected mask of each
is known without any rasteriser: a box (x0, y0, x1, y1) covers ``mask[y0:y1, x0:x1]``.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

BOM = "\ufeff"


@dataclass
class Truth:
    root: Path  # what the user passes to open_dataset
    labels: dict = field(default_factory=dict)  # image_id -> label
    shapes: dict = field(default_factory=dict)  # image_id -> list of (x0, y0, x1, y1) pixel boxes
    sizes: dict = field(default_factory=dict)  # image_id -> (H, W)
    extra: dict = field(default_factory=dict)  # dataset-specific facts


def _pixels(rng, height, width, in_channels=1, bits=8):
    high = 2**bits - 1
    shape = (height, width) if in_channels == 1 else (height, width, 3)
    return rng.integers(0, high + 1, size=shape).astype(np.uint16 if bits == 16 else np.uint8)


def _save(path: Path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def truncate(path: Path) -> None:
    """Cut a file to half its length, as a broken download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _box_inside(rng, height, width):
    x0, y0 = int(rng.integers(1, width // 2)), int(rng.integers(1, height // 2))
    x1, y1 = int(rng.integers(x0 + 3, width)), int(rng.integers(y0 + 3, height))
    return x0, y0, x1, y1


def expected_mask(boxes, shape) -> np.ndarray:
    """H x W uint8: 1 on mask[y0:y1, x0:x1] of every box."""
    mask = np.zeros(shape, dtype=np.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = 1
    return mask


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


def make_fracatlas(
    folder, *, n_pos=10, n_neg=30, nested=True, split_files=True, truncated=1, square=None, seed=0
) -> Truth:
    """FracAtlas/FracAtlas/... with dataset.csv (BOM), images, COCO/YOLO/VOC, split lists.

    Fractured images are listed in the split files 60/20/20 %. ``truncated`` negatives are
    cut in half. ``square`` makes every image square x square (else sizes vary).
    """
    rng = np.random.default_rng(seed)
    top = Path(folder) / "FracAtlas"
    base = top / "FracAtlas" if nested else top
    truth = Truth(top)
    rows, coco_images, coco_anns = [], [], []
    labels = [1] * n_pos + [0] * n_neg
    order = rng.permutation(len(labels))
    for number, index in enumerate(order):
        label = labels[index]
        stem = f"IMG{number:07d}"
        height, width = (
            (square, square) if square else (32 + 4 * (number % 3), 40 + 4 * (number % 2))
        )
        region = ["hand", "leg", "hip", "shoulder", "mixed"][number % 5]
        flags = {
            r: int(region == r or (region == "mixed" and r in ("hand", "leg")))
            for r in ("hand", "leg", "hip", "shoulder")
        }
        boxes = [_box_inside(rng, height, width) for _ in range(1 + number % 2)] if label else []
        rows.append(
            [
                f"{stem}.jpg",
                flags["hand"],
                flags["leg"],
                flags["hip"],
                flags["shoulder"],
                int(region == "mixed"),
                number % 2,
                0,
                label,
                len(boxes),
                1,
                0,
                0,
            ]
        )
        sub = "Fractured" if label else "Non_fractured"
        in_channels = 3 if number % 4 == 0 else 1
        _save(
            base / "images" / sub / f"{stem}.jpg",
            _pixels(rng, height, width, in_channels),
            quality=90,
        )
        truth.labels[stem], truth.sizes[stem], truth.shapes[stem] = label, (height, width), boxes
        truth.extra.setdefault("region", {})[stem] = region

        coco_images.append(
            {"id": number + 1, "file_name": f"{stem}.jpg", "width": width, "height": height}
        )
        for x0, y0, x1, y1 in boxes:
            coco_anns.append(
                {
                    "id": len(coco_anns) + 1,
                    "image_id": number + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                }
            )
        yolo = base / "Annotations" / "YOLO" / f"{stem}.txt"
        yolo.parent.mkdir(parents=True, exist_ok=True)
        yolo.write_text(
            "".join(
                f"0 {(x0 + x1) / 2 / width} {(y0 + y1) / 2 / height} "
                f"{(x1 - x0) / width} {(y1 - y0) / height}\n"
                for x0, y0, x1, y1 in boxes
            )
        )
        voc = base / "Annotations" / "PASCAL VOC" / f"{stem}.xml"
        voc.parent.mkdir(parents=True, exist_ok=True)
        objects = "".join(
            f"<object><name>fractured</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for x0, y0, x1, y1 in boxes
        )
        voc.write_text(
            f"<annotation><folder>Fractured</folder><filename>{stem}.jpg</filename>"
            f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            f"{objects}</annotation>"
        )
    # Only fractured images annotated, as in the real JSON (images[] lists them only).
    fractured_ids = {im["id"] for im in coco_images if truth.labels[Path(im["file_name"]).stem]}
    coco = {
        "categories": [{"id": 1, "name": "fractured"}],
        "images": [im for im in coco_images if im["id"] in fractured_ids],
        "annotations": coco_anns,
    }
    (base / "Annotations" / "COCO JSON").mkdir(parents=True, exist_ok=True)
    (base / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json").write_text(json.dumps(coco))

    csv = ",".join(FRACATLAS_COLUMNS) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    (base / "dataset.csv").write_text(BOM + csv, encoding="utf-8")

    positives = sorted(s for s, label in truth.labels.items() if label)
    n_train, n_val = int(0.6 * n_pos), int(0.2 * n_pos)
    published = {s: "train" for s in positives[:n_train]}
    published |= {s: "val" for s in positives[n_train : n_train + n_val]}
    published |= {s: "test" for s in positives[n_train + n_val :]}
    truth.extra["published"] = published
    if split_files:
        split_folder = base / "Utilities" / "Fracture Split"
        split_folder.mkdir(parents=True, exist_ok=True)
        for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
            listed = [s for s, v in published.items() if v == split]
            (split_folder / f"{name}.csv").write_text(
                "image_id\n" + "".join(f"{s}.jpg\n" for s in listed)
            )

    negatives = sorted(s for s, label in truth.labels.items() if not label)
    truth.extra["truncated"] = negatives[:truncated]
    for stem in truth.extra["truncated"]:
        truncate(base / "images" / "Non_fractured" / f"{stem}.jpg")
    truth.extra["base"] = base
    return truth


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


def make_grazpedwri(folder, *, n_patients=20, seed=0) -> Truth:
    """dataset.csv (flags 1 or blank), images_part1..2 (8- and 16-bit PNG), YOLO labels.

    Every fractured image has a class-3 box and a class-8 (text) box; one non-fractured
    image carries a class-3 box anyway, so the two label sources disagree on it.
    """
    rng = np.random.default_rng(seed)
    root = Path(folder) / "GRAZPEDWRI-DX"
    labels_dir = root / "folder_structure" / "yolov5" / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    truth = Truth(root)
    truth.extra.update(patients={}, boxes={}, box_labels={}, bits={})
    rows = []
    for p in range(n_patients):
        patient = f"{1000 + 37 * p:04d}"
        fractured_patient = p % 2 == 0
        for study in range(1 + p % 3):
            side, projection, sex, age = "LR"[p % 2], 1 + study % 2, "MF"[p % 2], 8 + p % 7
            timehash = str(rng.integers(10**9, 10**10))
            stem = f"{patient}_{timehash}_{study + 1:02d}_WRI-{side}{projection}_{sex}{age:03d}"
            height, width = 36 + 2 * (study % 2), 28 + 4 * (p % 2)
            bits = 16 if (p + study) % 3 == 0 else 8
            part = root / f"images_part{1 + p % 2}"
            _save(part / f"{stem}.png", _pixels(rng, height, width, bits=bits))
            label = int(fractured_patient and study != 1)
            boxes = {3: [_box_inside(rng, height, width)] if label else [], 8: [(0, 0, 6, 4)]}
            if p == 1 and study == 0:  # a fracture box without the fracture_visible flag
                boxes[3] = [_box_inside(rng, height, width)]
            (labels_dir / f"{stem}.txt").write_text(
                "".join(
                    f"{cls} {(x0 + x1) / 2 / width} {(y0 + y1) / 2 / height} "
                    f"{(x1 - x0) / width} {(y1 - y0) / height}\n"
                    for cls, items in boxes.items()
                    for x0, y0, x1, y1 in items
                )
            )
            # filestem, patient_id, study_number, timehash, gender, age, laterality, projection,
            # initial_exam, ao_classification, cast, diagnosis_uncertain, osteopenia,
            # fracture_visible, metal, pixel_spacing, device_manufacturer; flags are 1 or blank
            rows.append(
                [
                    stem,
                    patient,
                    study + 1,
                    timehash,
                    sex,
                    age,
                    side,
                    projection,
                    1 if study == 0 else "",
                    "23r-M/2.1" if label else "",
                    "",
                    "",
                    "",
                    1 if label else "",
                    "",
                    0.144,
                    "Agfa",
                ]
            )
            truth.labels[stem], truth.sizes[stem] = label, (height, width)
            truth.shapes[stem] = boxes[3]
            truth.extra["boxes"][stem] = boxes
            truth.extra["box_labels"][stem] = int(bool(boxes[3]))
            truth.extra["patients"][stem] = patient
            truth.extra["bits"][stem] = bits
    (root / "dataset.csv").write_text(
        ",".join(GRAZ_COLUMNS) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    )
    return truth


# ---------------------------------------------------------------------------------------
# MURA v1.1
# ---------------------------------------------------------------------------------------


def make_mura(folder, *, n_patients=12, seed=0) -> Truth:
    """MURA-v1.1/{train,valid}_{image_paths,labeled_studies}.csv and the PNG tree.

    Patients have studies of XR_WRIST and XR_HAND; truth.extra["part"] maps image_id to
    MURA's part ("train"/"valid"), truth.extra["patient"] to the patient folder.
    """
    rng = np.random.default_rng(seed)
    root = Path(folder) / "mura_download"
    truth = Truth(root)
    truth.extra.update(part={}, patient={}, body_part={})
    lists = {"train": ([], []), "valid": ([], [])}
    for p in range(n_patients):
        part = "valid" if p % 4 == 3 else "train"
        patient = f"patient{p + 1:05d}"
        for s, body_part in enumerate(("XR_WRIST", "XR_HAND")[: 1 + p % 2]):
            label = (p + s) % 2
            outcome = "positive" if label else "negative"
            study = f"MURA-v1.1/{part}/{body_part}/{patient}/study1_{outcome}/"
            lists[part][1].append(f"{study},{label}")
            for i in range(1 + (p + s) % 2):
                path = f"{study}image{i + 1}.png"
                height, width = 30 + 2 * i, 26
                _save(root / path, _pixels(rng, height, width, in_channels=3 if i == 1 else 1))
                lists[part][0].append(path)
                image_id = path.removeprefix("MURA-v1.1/").removesuffix(".png")
                truth.labels[image_id], truth.sizes[image_id] = label, (height, width)
                truth.extra["part"][image_id], truth.extra["patient"][image_id] = part, patient
                truth.extra["body_part"][image_id] = body_part
    for part, (paths, studies) in lists.items():
        (root / "MURA-v1.1" / f"{part}_image_paths.csv").write_text(
            "".join(f"{p}\n" for p in paths)
        )
        (root / "MURA-v1.1" / f"{part}_labeled_studies.csv").write_text(
            "".join(f"{s}\n" for s in studies)
        )
    return truth


# ---------------------------------------------------------------------------------------
# CUB-200-2011
# ---------------------------------------------------------------------------------------

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
CUB_PARTS = [
    "back",
    "beak",
    "belly",
    "breast",
    "crown",
    "forehead",
    "left eye",
    "left leg",
    "left wing",
    "nape",
    "right eye",
    "right leg",
    "right wing",
    "tail",
    "throat",
]


def _cub_files(n_train=6, n_test=2, seed=0):
    """{member path relative to CUB_200_2011/: bytes} and the Truth parts."""
    rng = np.random.default_rng(seed)
    files, truth = {}, Truth(Path())
    truth.extra.update(parts={}, bbox={}, official={}, cub_id={})
    images, split, labels, bboxes, locs = [], [], [], [], []
    cub_id = 0
    for c, name in enumerate(CUB_CLASSES):
        for k in range(n_train + n_test):
            cub_id += 1
            rel = f"{name}/{name.split('.')[1]}_{k:04d}_{100 + cub_id}"
            height, width = 40 + 4 * (k % 2), 48
            buffer = io.BytesIO()
            Image.fromarray(_pixels(rng, height, width, in_channels=3)).save(buffer, "JPEG")
            files[f"images/{rel}.jpg"] = buffer.getvalue()
            is_train = int(k < n_train)
            images.append(f"{cub_id} {rel}.jpg")
            split.append(f"{cub_id} {is_train}")
            labels.append(f"{cub_id} {c + 1}")
            x0, y0 = int(rng.integers(0, 10)), int(rng.integers(0, 10))
            bboxes.append(f"{cub_id} {x0}.0 {y0}.0 30.0 25.0")
            visible = []
            for part_id in range(1, 16):
                seen = int(rng.random() < 0.3)
                x, y = (
                    (float(rng.integers(0, width)), float(rng.integers(0, height)))
                    if seen
                    else (0.0, 0.0)
                )
                locs.append(f"{cub_id} {part_id} {x} {y} {seen}")
                if seen:
                    visible.append((x, y))
            truth.labels[rel], truth.sizes[rel] = c, (height, width)
            truth.extra["parts"][rel], truth.extra["bbox"][rel] = (
                visible,
                (x0, y0, x0 + 30, y0 + 25),
            )
            truth.extra["official"][rel], truth.extra["cub_id"][rel] = is_train, cub_id
    tables = {
        "images.txt": images,
        "train_test_split.txt": split,
        "image_class_labels.txt": labels,
        "bounding_boxes.txt": bboxes,
        "parts/part_locs.txt": locs,
        "classes.txt": [f"{i + 1} {n}" for i, n in enumerate(CUB_CLASSES)],
        "parts/parts.txt": [f"{i + 1} {n}" for i, n in enumerate(CUB_PARTS)],
    }
    for name, lines in tables.items():
        files[name] = ("\n".join(lines) + "\n").encode()
    return files, truth


def make_cub(folder, *, archive=True, leave_out=(), seed=0) -> Truth:
    """CUB_200_2011.tgz (or the unpacked CUB_200_2011/ folder): 3 classes, 6 train + 2 test each.

    leave_out: member paths (relative to CUB_200_2011/) not to write, for "missing" tests.
    truth.root is the .tgz file (archive=True) or the folder holding CUB_200_2011/.
    """
    files, truth = _cub_files(seed=seed)
    files = {k: v for k, v in files.items() if k not in leave_out}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if archive:
        path = folder / "CUB_200_2011.tgz"
        with tarfile.open(path, "w:gz") as tar:
            for name in [
                "images.txt",
                *sorted(k for k in files if k.startswith("images/")),
                *sorted(k for k in files if not k.startswith("images/") and k != "images.txt"),
            ]:
                if name not in files:
                    continue
                info = tarfile.TarInfo(f"CUB_200_2011/{name}")
                info.size = len(files[name])
                tar.addfile(info, io.BytesIO(files[name]))
        truth.root = path
    else:
        for name, data in files.items():
            target = folder / "CUB_200_2011" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        truth.root = folder
    return truth


# ---------------------------------------------------------------------------------------
# A folder of class subfolders
# ---------------------------------------------------------------------------------------


def make_class_folder(folder, *, per_class=(12, 8), seed=0) -> Truth:
    """root/fractured/*.png and root/normal/*.jpg (class names sort to fractured=0, normal=1)."""
    rng = np.random.default_rng(seed)
    root = Path(folder) / "my_xrays"
    truth = Truth(root)
    for label, (name, count) in enumerate(zip(("fractured", "normal"), per_class, strict=True)):
        for k in range(count):
            suffix = ".png" if name == "fractured" else ".jpg"
            height, width = 24 + 2 * (k % 3), 30
            _save(root / name / f"case{k:03d}{suffix}", _pixels(rng, height, width))
            truth.labels[f"{name}/case{k:03d}"], truth.sizes[f"{name}/case{k:03d}"] = (
                label,
                (height, width),
            )
    return truth
