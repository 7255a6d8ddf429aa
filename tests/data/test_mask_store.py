"""agkit.data.mask_store: MaskStore put/get/provenance, COCO/YOLO import and export, and a
killed writer."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from toy_images import MURA_ID, square

from agkit.data.mask_store import MaskStore
from agkit.data.mask_store_png import safe_file_name

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------ store
def test_put_get_provenance_and_files(tmp_path):
    store = MaskStore(tmp_path / "m")
    mask = square((6, 7), 1, 4, 2, 5)
    path = store.put(MURA_ID, mask.astype(bool), source="drawn", tool="widget", annotator="ana")
    assert MURA_ID in store and len(store) == 1 and store.annotated_ids() == [MURA_ID]
    got = store.get(MURA_ID)
    assert got.dtype == np.uint8 and got.shape == (6, 7)
    np.testing.assert_array_equal(got, mask)
    assert store.get("other") is None
    # the PNG is a viewable 0/255 grayscale image, with a safe readable name inside the folder
    assert path.parent == tmp_path / "m" and "/" not in path.name
    assert path.name.startswith("MURA-v1.1_train_XR_WRIST_patient00001_study1_positive_image1.png-")
    with Image.open(path) as im:
        assert im.mode == "L" and set(np.unique(np.asarray(im))) == {0, 255}
    prov = store.provenance(MURA_ID)
    assert prov["source"] == "drawn" and prov["tool"] == "widget" and prov["annotator"] == "ana"
    assert prov["shape"] == [6, 7] and prov["file"] == path.name
    t = datetime.fromisoformat(prov["time"])
    assert (
        t.utcoffset().total_seconds() == 0
        and abs((datetime.now(timezone.utc) - t).total_seconds()) < 60
    )
    # ids that sanitise to the same text still get different files
    assert safe_file_name("a/b") != safe_file_name("a_b") and safe_file_name("a/b").startswith(
        "a_b-"
    )
    # a second object on the same folder sees the mask; delete removes index entry and file
    assert MaskStore(tmp_path / "m").get(MURA_ID).sum() == 9
    store.delete(MURA_ID)
    assert MURA_ID not in store and not path.exists() and len(MaskStore(tmp_path / "m")) == 0
    with pytest.raises(KeyError):
        store.delete(MURA_ID)


@pytest.mark.parametrize(
    "mask, kwargs, message",
    [
        (np.ones((1, 4, 4)), {}, "2-D"),
        (np.full((4, 4), 255, np.uint8), {}, "mask > 0"),
        (np.full((4, 4), 0.5), {}, "threshold"),
        (np.ones((4, 4)), {"expected_shape": (5, 4)}, "full-size image"),
        (np.ones((5, 5)), {}, "delete"),  # shape differs from the stored mask of that id
        (np.ones((4, 4)), {"source": "guessed"}, "source must be one of"),
        (np.ones((4, 4)), {"time": "now"}, "set by put"),
    ],
)
def test_put_rejects_bad_input_and_keeps_old_mask(tmp_path, mask, kwargs, message):
    store = MaskStore(tmp_path)
    old = square((4, 4), 0, 2, 0, 2)
    store.put("img", old)
    with pytest.raises(ValueError, match=message):
        store.put("img", mask, **kwargs)
    np.testing.assert_array_equal(MaskStore(tmp_path).get("img"), old)


# ---------------------------------------------------------------------- COCO
def coco_fixture():
    return {
        "images": [
            {"id": 7, "file_name": "images/Fractured/IMG1.jpg", "width": 6, "height": 5},
            {"id": 8, "file_name": "images/Fractured/IMG2.jpg", "width": 4, "height": 4},
            {"id": 9, "file_name": "images/Non_fractured/IMG3.jpg", "width": 4, "height": 4},
        ],
        "categories": [{"id": 1, "name": "fractured"}, {"id": 2, "name": "text"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[1, 1, 3, 1, 3, 2, 1, 2]],
                "bbox": [1, 1, 2, 1],
                "area": 2,
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [],
                "bbox": [5, 3, 1, 2],
                "area": 2,
            },
            {
                "id": 3,
                "image_id": 8,
                "category_id": 2,
                "iscrowd": 0,
                "segmentation": [[0, 0, 1, 0, 1, 1]],
                "bbox": [0, 0, 1, 1],
                "area": 1,
            },
        ],
    }


def test_import_coco_polygons_boxes_categories(tmp_path):
    store = MaskStore(tmp_path / "m")
    ids = store.import_coco(coco_fixture(), image_id="stem", categories=["fractured"])
    assert ids == ["IMG1"]  # IMG2 only has a "text" annotation, IMG3 none
    expected = np.zeros((5, 6), np.uint8)
    expected[1:2, 1:3] = 1  # polygon with corners (1, 1) and (3, 2): mask[1:2, 1:3]
    expected[3:5, 5:6] = 1  # bbox [5, 3, 1, 2] -> mask[3:5, 5:6]
    np.testing.assert_array_equal(store.get("IMG1"), expected)
    assert (
        store.provenance("IMG1")["source"] == "imported"
        and store.provenance("IMG1")["tool"] == "coco"
    )
    with pytest.raises(ValueError, match="'fracture'.*not in the COCO file"):
        store.import_coco(coco_fixture(), categories=["fracture"])
    boxes_only = MaskStore(tmp_path / "b")
    boxes_only.import_coco(coco_fixture(), image_id=lambda f: f.upper(), categories=[1], use="bbox")
    assert boxes_only.get("IMAGES/FRACTURED/IMG1.JPG").sum() == 2 + 2  # bbox [1,1,2,1] is 1x2
    # re-importing refuses to touch existing masks unless overwrite=True
    store.put("IMG1", np.ones((5, 6)), source="drawn")
    with pytest.raises(ValueError, match="overwrite=True"):
        store.import_coco(coco_fixture(), image_id="stem", categories=["fractured"])
    assert store.get("IMG1").sum() == 30
    store.import_coco(coco_fixture(), image_id="stem", categories=["fractured"], overwrite=True)
    np.testing.assert_array_equal(store.get("IMG1"), expected)


def test_coco_round_trip(tmp_path):
    coco = coco_fixture()
    src = MaskStore(tmp_path / "src")
    src.import_coco(coco)  # default ids: file_name as is
    path = tmp_path / "out" / "coco.json"
    out = src.export_coco(path)
    assert json.loads(path.read_text()) == out
    img1 = next(im for im in out["images"] if im["file_name"] == "images/Fractured/IMG1.jpg")
    assert (img1["width"], img1["height"]) == (6, 5)
    anns = [a for a in out["annotations"] if a["image_id"] == img1["id"]]
    assert sorted(a["bbox"] for a in anns) == [[1, 1, 2, 1], [5, 3, 1, 2]] and sorted(
        a["area"] for a in anns
    ) == [2, 2]
    back = MaskStore(tmp_path / "back")
    back.import_coco(path, use="polygon")
    assert (
        back.annotated_ids()
        == src.annotated_ids()
        == ["images/Fractured/IMG1.jpg", "images/Fractured/IMG2.jpg"]
    )
    for iid in src.annotated_ids():
        np.testing.assert_array_equal(back.get(iid), src.get(iid))
    boxes = MaskStore(tmp_path / "boxes")  # boxes are exact for the rectangles of IMG1 only
    boxes.import_coco(path, use="bbox")
    np.testing.assert_array_equal(
        boxes.get("images/Fractured/IMG1.jpg"), src.get("images/Fractured/IMG1.jpg")
    )
    # the triangle (0, 0), (1, 0), (1, 1) holds the centre (0.5, 0.5) on its left edge: one pixel
    assert (
        boxes.get("images/Fractured/IMG2.jpg").sum()
        == src.get("images/Fractured/IMG2.jpg").sum()
        == 1
    )


# ---------------------------------------------------------------------- YOLO
def test_import_yolo_boxes_classes_and_errors(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "img_a.txt").write_text(
        "3 0.5 0.5 0.5 0.5\n8 0.1 0.1 0.2 0.2\n"
    )  # 8x8: box (2,2)-(6,6)
    (labels / "img_b.txt").write_text("")  # negative
    (labels / "img_c.txt").write_text("8 0.5 0.5 1 1\n")  # only the unwanted class
    (labels / "img_d.txt").write_text(
        "3 0 0 1 0 1 1\n"
    )  # normalised polygon (0,0),(1,0),(1,1) on 4x4
    (labels / "classes.txt").write_text("boneanomaly\nfracture\n")
    store = MaskStore(tmp_path / "m")
    ids = store.import_yolo(
        labels, {"img_a": (8, 8), "img_b": (8, 8), "img_c": (8, 8), "img_d": (4, 4)}, classes=[3]
    )
    assert ids == ["img_a", "img_d"]
    np.testing.assert_array_equal(store.get("img_a"), square((8, 8), 2, 6, 2, 6))
    # the polygon (0, 0), (4, 0), (4, 4): centres above the diagonal and on it (its left edge)
    np.testing.assert_array_equal(store.get("img_d"), np.triu(np.ones((4, 4), np.uint8)))
    with pytest.raises(ValueError, match="no \\(H, W\\) for 1 image"):
        MaskStore(tmp_path / "n").import_yolo(labels, {"img_a": (8, 8)}, classes=[3])
    (labels / "img_e.txt").write_text("3 0.5 0.5 zero 0.5\n")
    with pytest.raises(ValueError, match="img_e.txt:1"):
        MaskStore(tmp_path / "n").import_yolo(labels, lambda iid: (8, 8))
    assert len(MaskStore(tmp_path / "n")) == 0


def test_yolo_round_trip(tmp_path):
    src = MaskStore(tmp_path / "src")
    src.put(
        "p1/IMG_1.png", np.maximum(square((30, 41), 3, 10, 5, 17), square((30, 41), 20, 30, 30, 41))
    )
    src.put("p2/IMG_2.png", square((17, 13), 0, 17, 12, 13))
    files = src.export_yolo(tmp_path / "yolo", class_id=3)
    assert sorted(f.name for f in files) == ["IMG_1.txt", "IMG_2.txt"]
    first = (tmp_path / "yolo" / "IMG_2.txt").read_text().split()
    assert first[0] == "3" and float(first[1]) == pytest.approx(12.5 / 13, abs=1e-6)
    back = MaskStore(tmp_path / "back")
    back.import_yolo(
        tmp_path / "yolo",
        lambda iid: src.provenance(iid)["shape"],
        image_id=lambda stem: f"p{stem[-1]}/{stem}.png",
        classes=[3],
    )
    for iid in src.annotated_ids():
        np.testing.assert_array_equal(back.get(iid), src.get(iid))
    src.put("p3/IMG_1.png", np.ones((2, 2)))
    with pytest.raises(ValueError, match="name=callable"):
        src.export_yolo(tmp_path / "yolo2")


# ---------------------------------------------------------------- crash safety
WRITER = r"""
import importlib.util
import sys
import numpy as np

sys.path.insert(0, sys.argv[3])
import types
for name in ("agkit", "agkit.data"):  # bare packages: skip the __init__ files, which import torch
    package = sys.modules[name] = types.ModuleType(name)
    package.__path__ = [sys.argv[3] + "/" + name.replace(".", "/")]
from agkit.data.mask_store import MaskStore

def pattern(k):
    m = (np.random.default_rng(k).random((96, 96)) < 0.5).astype(np.uint8)
    m[0, :32] = [(k >> b) & 1 for b in range(32)]  # row 0 spells k in binary
    return m

store = MaskStore(sys.argv[1])
k = int(sys.argv[2])
while True:
    store.put(
        f"patient{k % 3}/study {k % 5}/image.png", pattern(k), source="synthetic", tool=f"k={k}"
    )
    if k == int(sys.argv[2]):
        print("ready", flush=True)
    k += 1
"""


def test_store_survives_a_killed_writer(tmp_path):
    """Kill a process in the middle of writing masks; every indexed mask must still be intact."""

    def pattern(k):
        m = (np.random.default_rng(k).random((96, 96)) < 0.5).astype(np.uint8)
        m[0, :32] = [(k >> b) & 1 for b in range(32)]
        return m

    masks_py = str(ROOT)
    rng = random.Random(1)
    start = 0
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(start), masks_py],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.4))
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=10)
            proc.stdout.close()
        store = MaskStore(tmp_path)  # must open: the index is never half-written
        assert len(store) >= 1
        ks = []
        for iid in store.annotated_ids():
            mask = store.get(iid)  # must load: no PNG is ever half-written
            k = int(sum(int(b) << i for i, b in enumerate(mask[0, :32])))
            assert iid == f"patient{k % 3}/study {k % 5}/image.png"
            np.testing.assert_array_equal(mask, pattern(k))
            ks.append(k)
        report = store.check()
        assert not report.corrupt and not report.missing_files
        assert all(
            name.endswith(".tmp") for name in report.temp_files
        )  # leftovers are reported, never indexed
        start = max(ks) + 1
    assert start > 3  # the writer really wrote several masks
