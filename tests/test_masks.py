"""Tests for agkit.data.shapes and agkit.data.mask_store: rasterising, MaskStore, COCO/YOLO,
crash safety."""

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import faults
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from agkit.data.mask_store import (
    CorruptIndexError,
    CorruptMaskError,
    MaskStore,
    safe_file_name,
)
from agkit.data.shapes import (
    mask_to_boxes,
    mask_to_polygons,
    rasterize_boxes,
    rasterize_discs,
    rasterize_polygons,
    rasterize_strokes,
)

ROOT = Path(__file__).resolve().parents[1]
MURA_ID = "MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png"


def square(shape, r0, r1, c0, c1):
    m = np.zeros(shape, np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


# ------------------------------------------------------------------- rasterising
def test_rasterize_boxes_integer_box_is_slicing():
    got = rasterize_boxes([(1, 0, 3, 2)], (3, 4))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])


def test_rasterize_boxes_rounding_clipping_union():
    # a pixel is in when its centre (c + 0.5, r + 0.5) is: x0 <= c + 0.5 < x1, y0 <= r + 0.5 < y1
    # (0.4, 0.6, 2.5, 2.4): columns with centres 0.5, 1.5 (2.5 is on the right edge: out), row 1.5
    np.testing.assert_array_equal(
        rasterize_boxes([(0.4, 0.6, 2.5, 2.4)], (3, 4)), square((3, 4), 1, 2, 0, 2)
    )
    # the left/top edge counts: (1.5, 0.5, 3, 3) keeps column 1 and row 0
    np.testing.assert_array_equal(
        rasterize_boxes([(1.5, 0.5, 3, 3)], (3, 4)), square((3, 4), 0, 3, 1, 3)
    )
    # partly outside the image -> clipped; union of two boxes
    got = rasterize_boxes([(-2, -2, 1, 1), (3, 2, 9, 9)], (3, 4))
    np.testing.assert_array_equal(got, [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    assert rasterize_boxes([], (2, 2)).sum() == 0
    with pytest.raises(ValueError, match="x1 = x \\+ w"):
        rasterize_boxes([(5, 5, 2, 2)], (8, 8))  # looks like an [x, y, w, h] box


def test_rasterize_polygons_fills_pixels_whose_centre_is_inside():
    # the square with corners (1, 1) and (3, 3) is the pixels mask[1:3, 1:3], like the box
    np.testing.assert_array_equal(
        rasterize_polygons([[1, 1, 3, 1, 3, 3, 1, 3]], (5, 5)), square((5, 5), 1, 3, 1, 3)
    )
    np.testing.assert_array_equal(
        rasterize_boxes([(1, 1, 3, 3)], (5, 5)), square((5, 5), 1, 3, 1, 3)
    )
    # triangle (1, 1), (5, 1), (1, 5): centre (c + .5, r + .5) with x >= 1, y >= 1 and x + y < 6
    # (a centre on the right-hand diagonal is outside), i.e. c >= 1, r >= 1, c + r <= 4
    expected = np.zeros((7, 7), np.uint8)
    for r in range(7):
        for c in range(7):
            expected[r, c] = c >= 1 and r >= 1 and c + r <= 4
    assert expected.sum() == 6
    np.testing.assert_array_equal(rasterize_polygons([[1, 1, 5, 1, 1, 5]], (7, 7)), expected)
    # two triangles that split a square along its diagonal share no pixel and miss none
    upper = rasterize_polygons([[0, 0, 4, 0, 0, 4]], (4, 4))
    lower = rasterize_polygons([[4, 0, 4, 4, 0, 4]], (4, 4))
    assert not (upper & lower).any() and (upper | lower).all()
    with pytest.raises(ValueError, match="even length"):
        rasterize_polygons([[1, 2, 3]], (5, 5))
    with pytest.raises(ValueError, match="at least 3 points"):
        rasterize_polygons([[1, 2, 3, 4]], (5, 5))


def test_rasterize_discs_by_hand():
    # pixel (r, c) has its centre at (c + 0.5, r + 0.5):
    # a disc around (2.5, 2.5) is around pixel (2, 2)
    plus = np.array(
        [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(rasterize_discs([(2.5, 2.5)], 1, (5, 5)), plus)
    # radius 1.5: around pixel (2, 2) offsets with di^2 + dj^2 <= 2.25 form the 3x3 block; around
    # pixel (0, 0) the 2x2 corner block; the two share pixel (1, 1)
    expected = np.array(
        [[1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(rasterize_discs([(2.5, 2.5), (0.5, 0.5)], 1.5, (5, 5)), expected)
    # x is the column: a disc of radius 0 at (x=3.5, y=1.5) marks mask[1, 3] only
    np.testing.assert_array_equal(np.argwhere(rasterize_discs([(3.5, 1.5)], 0, (4, 5))), [[1, 3]])


def test_rasterize_strokes_by_hand():
    # a stroke along y = 1.5 from x = 0.5 to 3.5, radius 1: rows 0-2 of columns 0-3 are at most
    # 1 away; column 4's centre (4.5, 1.5) is exactly 1 from the end point (in), (4.5, 0.5) is not
    expected = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(
        rasterize_strokes([[(0.5, 1.5), (3.5, 1.5)]], 1, (3, 5)), expected
    )
    # a flat list is the same stroke; one point is a disc
    np.testing.assert_array_equal(rasterize_strokes([[0.5, 1.5, 3.5, 1.5]], 1, (3, 5)), expected)
    np.testing.assert_array_equal(
        rasterize_strokes([[(2.5, 2.5)]], 1.5, (5, 5)), rasterize_discs([(2.5, 2.5)], 1.5, (5, 5))
    )
    with pytest.raises(ValueError, match="finite"):
        rasterize_strokes([[(0, 0), (np.nan, 1)]], 1, (3, 3))


def test_mask_to_polygons_and_boxes_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(150):
        h, w = rng.integers(1, 12, 2)
        m = (rng.random((h, w)) < rng.uniform(0.2, 0.8)).astype(np.uint8)
        if not m.any():
            continue
        labels, n = ndimage.label(m)
        filled = np.zeros_like(m)
        for k in range(1, n + 1):
            filled |= ndimage.binary_fill_holes(labels == k).astype(np.uint8)
        np.testing.assert_array_equal(rasterize_polygons(mask_to_polygons(m), m.shape), filled)
        boxes = mask_to_boxes(m)
        assert len(boxes) == n
        assert (rasterize_boxes(boxes, m.shape) >= m).all()
    ring = np.ones((5, 5), np.uint8)
    ring[2, 2] = 0
    np.testing.assert_array_equal(
        rasterize_polygons(mask_to_polygons(ring), (5, 5)), np.ones((5, 5))
    )  # hole filled
    # the outline runs along pixel edges: corners of mask[1:3, 2:5]
    assert mask_to_polygons(square((4, 6), 1, 3, 2, 5)) == [
        [2.0, 1.0, 5.0, 1.0, 5.0, 3.0, 2.0, 3.0]
    ]
    assert mask_to_boxes(square((4, 6), 1, 3, 2, 5)) == [(2, 1, 5, 3)]


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


def test_two_store_objects_do_not_clobber_each_other(tmp_path):
    a, b = MaskStore(tmp_path), MaskStore(tmp_path)
    a.put("x", np.ones((2, 2)))
    b.put("y", np.zeros((2, 2)))
    assert a.annotated_ids() == ["x", "y"] == MaskStore(tmp_path).annotated_ids()


def test_batch_writes_index_once(tmp_path):
    store = MaskStore(tmp_path, durable=False)
    with store.batch():
        for k in range(5):
            store.put(f"im{k}", square((4, 4), 0, k, 0, 4), source="synthetic")
        assert not (tmp_path / "index.json").exists()
    assert MaskStore(tmp_path).get("im3").sum() == 12


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


def test_corrupt_and_missing_png(tmp_path):
    store = MaskStore(tmp_path)
    store.put("a", square((8, 8), 2, 6, 2, 6))
    store.put("b", np.ones((8, 8)))
    pa = store.path("a")
    pa.write_bytes(pa.read_bytes()[:30])  # truncated
    with pytest.raises(CorruptMaskError, match=f"{pa.name}.*store.delete\\('a'\\)"):
        store.get("a")
    store.path("b").unlink()
    with pytest.raises(FileNotFoundError, match="store.delete\\('b'\\)"):
        store.get("b")
    assert store.annotated_ids() == ["a", "b"]  # the index is kept
    report = store.check(["a", "b"])
    assert report.corrupt == ["a"] and report.missing_files == ["b"] and not report.ok
    store.delete("a")
    store.put("a", np.ones((8, 8)))  # re-annotate
    assert store.get("a").sum() == 64


def test_check_orphans_unannotated_unindexed_shapes(tmp_path):
    store = MaskStore(tmp_path)
    store.put("img1", np.ones((3, 3)))
    store.put("gone", np.ones((3, 3)))
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "stray.png")
    report = store.check(["img1", "img2"], image_shapes={"img1": (4, 3)})
    assert report.orphans == ["gone"] and report.unannotated == ["img2"]
    assert report.unindexed_files == ["stray.png"] and report.wrong_shape == ["img1"]
    assert "rebuild_index" in str(report) and not report.ok
    assert MaskStore(tmp_path / "fresh").check(["x"]).ok


def test_corrupt_index_is_kept_and_rebuilt(tmp_path):
    store = MaskStore(tmp_path)
    masks = {MURA_ID: square((5, 6), 0, 3, 1, 4), "plain": np.ones((2, 3), np.uint8)}
    for iid, m in masks.items():
        store.put(iid, m, source="imported", tool="coco")
    Image.fromarray(square((4, 4), 1, 3, 1, 3) * 255).save(tmp_path / "foreign.png")
    bad = b'{"masks": {"plain": {"file": '  # a half-written index
    (tmp_path / "index.json").write_bytes(bad)
    with pytest.raises(CorruptIndexError, match="rebuild_index"):
        MaskStore(tmp_path)
    assert (tmp_path / "index.json").read_bytes() == bad  # not overwritten
    rebuilt = MaskStore.rebuild_index(tmp_path)
    assert rebuilt.annotated_ids() == sorted([MURA_ID, "plain", "foreign"])
    for iid, m in masks.items():
        np.testing.assert_array_equal(rebuilt.get(iid), m)
        assert rebuilt.provenance(iid)["tool"] == "coco"
    assert rebuilt.get("foreign").sum() == 4
    backups = list(tmp_path.glob("index.json.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == bad
    (tmp_path / "index.json").write_text('["not", "a", "store"]')
    with pytest.raises(CorruptIndexError, match="layout"):
        MaskStore(tmp_path)


def test_missing_index_with_pngs_warns(tmp_path):
    MaskStore(tmp_path).put("a", np.ones((2, 2)))
    (tmp_path / "index.json").unlink()
    with pytest.warns(UserWarning, match="rebuild_index"):
        MaskStore(tmp_path)


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


# ------------------------------------------------------------- a full disk
_index_write_fails = faults.index_write_fails


def _folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


@pytest.mark.parametrize("no_hard_links", [False, True], ids=["hard_links", "no_hard_links"])
@pytest.mark.parametrize("case", ["new_mask", "overwrite"])
def test_disk_full_on_index_write_restores_png_and_store(
    tmp_path, monkeypatch, case, no_hard_links
):
    store = MaskStore(tmp_path)
    old = square((6, 6), 0, 2, 0, 2)
    store.put("kept", square((6, 6), 3, 6, 3, 6))
    if case == "overwrite":
        store.put("img", old)
    before_files, before_index = _folder_bytes(tmp_path), store.annotated_ids()
    _index_write_fails(monkeypatch, no_hard_links)
    with pytest.raises(OSError, match="nothing was changed") as info:
        store.put("img", square((6, 6), 1, 5, 1, 5))
    assert info.value.errno == 28  # ENOSPC, so callers can still test for it
    # the PNG on disk is the old one byte for byte (or absent), and no spare link is left
    assert _folder_bytes(tmp_path) == before_files
    # the open store and a fresh one agree with index.json: nothing changed
    assert store.annotated_ids() == before_index == MaskStore(tmp_path).annotated_ids()
    if case == "overwrite":
        np.testing.assert_array_equal(store.get("img"), old)
    else:
        assert "img" not in store and store.get("img") is None
    monkeypatch.undo()  # room again: the same put now succeeds
    store.put("img", square((6, 6), 1, 5, 1, 5))
    assert MaskStore(tmp_path).get("img").sum() == 16 and store.check().ok


def test_disk_full_when_the_old_png_cannot_be_put_back_says_so(tmp_path, monkeypatch):
    import errno

    from agkit.data import mask_store

    store = MaskStore(tmp_path)
    store.put("img", square((4, 4), 0, 2, 0, 2))
    _index_write_fails(monkeypatch, no_hard_links=True)
    failing = mask_store._atomic_write
    writes = []

    def atomic_write(path, data, durable=True):  # the new PNG fits, then the disk is full
        writes.append(Path(path).name)
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        failing(path, data, durable)

    monkeypatch.setattr(mask_store, "_atomic_write", atomic_write)
    with pytest.raises(OSError, match="could not be put back.*rebuild_index"):
        store.put("img", square((4, 4), 0, 4, 0, 4))
    assert store.get("img") is not None and store.annotated_ids() == ["img"]
    monkeypatch.undo()
    assert MaskStore.rebuild_index(tmp_path).get("img").sum() == 16  # the PNG as it is now


def test_disk_full_on_index_write_keeps_a_deleted_mask(tmp_path, monkeypatch):
    store = MaskStore(tmp_path)
    store.put("img", square((4, 4), 0, 2, 0, 2))
    before = _folder_bytes(tmp_path)
    _index_write_fails(monkeypatch)
    with pytest.raises(OSError, match="nothing was changed"):
        store.delete("img")
    assert _folder_bytes(tmp_path) == before
    assert store.get("img").sum() == 4 and store.annotated_ids() == ["img"]


def test_disk_full_at_the_end_of_a_batch_takes_the_whole_batch_back(tmp_path, monkeypatch):
    store = MaskStore(tmp_path, durable=False)
    store.put("a", square((4, 4), 0, 1, 0, 4))
    before = _folder_bytes(tmp_path)
    _index_write_fails(monkeypatch)
    with pytest.raises(OSError, match="nothing was changed"):
        with store.batch():
            store.put("a", square((4, 4), 0, 4, 0, 4))  # overwritten twice in one batch
            store.put("b", square((4, 4), 0, 2, 0, 2))
            store.put("a", square((4, 4), 0, 3, 0, 4))
    assert _folder_bytes(tmp_path) == before
    assert store.annotated_ids() == ["a"] and store.get("a").sum() == 4


# ------------------------------------------------------------- never outside the folder
def _png_bytes(value):
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_index_naming_a_file_outside_the_folder_is_refused_and_nothing_outside_is_touched(
    tmp_path, kind
):
    victim = tmp_path / "victim.png"  # a user's image next to the store
    victim.write_bytes(_png_bytes(255))
    before = victim.read_bytes()
    folder = tmp_path / "masks"
    store = MaskStore(folder, durable=False)
    store.put("a", np.ones((4, 4)))
    name = {"dotdot": "../victim.png", "absolute": str(victim), "symlink": "evil.png"}[kind]
    if kind == "symlink":
        (folder / "evil.png").symlink_to(victim)
    index = json.loads((folder / "index.json").read_text())
    index["masks"]["evil"] = {
        "file": name,
        "source": "drawn",
        "tool": "",
        "time": "2024-01-01T00:00:00+00:00",
        "shape": [4, 4],
    }
    (folder / "index.json").write_text(json.dumps(index))

    with pytest.raises(CorruptIndexError, match="'evil'.*rebuild_index"):
        MaskStore(folder)
    for action in (
        lambda: store.get("evil"),
        lambda: store.delete("evil"),
        lambda: store.put("evil", np.zeros((4, 4))),
        lambda: store.check(),
    ):
        with pytest.raises(CorruptIndexError, match="'evil'"):
            action()
    assert victim.read_bytes() == before

    # the fix the message proposes touches only the store's own files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a link is skipped with a warning
        rebuilt = MaskStore.rebuild_index(folder)
    assert rebuilt.annotated_ids() == ["a"]
    rebuilt.put("evil", np.zeros((4, 4)))
    rebuilt.delete("evil")
    rebuilt.delete("a")
    assert victim.read_bytes() == before
    if kind == "symlink":
        assert (folder / "evil.png").is_symlink()  # left in place, never read through


# ------------------------------------------------------------------- several writers
CONCURRENT = r"""
import sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
import types
for name in ("agkit", "agkit.data"):  # bare packages: skip the __init__ files, which import torch
    package = sys.modules[name] = types.ModuleType(name)
    package.__path__ = [sys.argv[1] + "/" + name.replace(".", "/")]
from agkit.data.mask_store import MaskStore

folder, mode, prefix, n = Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
store = MaskStore(folder, durable=False)
print("ready", flush=True)
while not (folder.parent / "go").exists():
    time.sleep(0.005)
for k in range(n):
    if mode == "put":
        store.put(f"{prefix}{k}", np.eye(8, dtype=np.uint8), source="synthetic")
    else:
        store.delete(f"{prefix}{k}")
"""


def _run_together(tmp_path, folder, jobs):
    """Start one process per (mode, prefix, n) job, release them at once, wait for all."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(ROOT), str(folder), *map(str, job)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for job in jobs
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        (tmp_path / "go").touch()
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            proc.stdout.close()


def _files_agree_with_index(store):
    pngs = {p.name for p in store.folder.glob("*.png")}
    assert pngs == {store.provenance(i)["file"] for i in store.annotated_ids()}
    report = store.check()
    assert report.ok and not report.temp_files, str(report)


def test_two_processes_putting_150_masks_each_end_with_300_indexed(tmp_path):
    folder = tmp_path / "masks"
    MaskStore(folder)
    _run_together(tmp_path, folder, [("put", "a", 150), ("put", "b", 150)])
    store = MaskStore(folder)
    assert len(store) == 300
    assert set(store.annotated_ids()) == {f"{p}{k}" for p in "ab" for k in range(150)}
    _files_agree_with_index(store)


def test_a_concurrent_delete_and_put_keep_index_and_pngs_in_agreement(tmp_path):
    folder = tmp_path / "masks"
    store = MaskStore(folder, durable=False)
    with store.batch():
        for k in range(150):
            store.put(f"old{k}", np.eye(8, dtype=np.uint8))
    _run_together(tmp_path, folder, [("delete", "old", 150), ("put", "new", 150)])
    store = MaskStore(folder)
    assert store.annotated_ids() == sorted(
        f"new{k}" for k in range(150)
    )  # no deleted mask came back
    _files_agree_with_index(store)


def test_mask_exchange_round_trips_without_a_store():
    from agkit.data.mask_exchange import coco_masks, mask_to_yolo, masks_to_coco

    mask = np.zeros((4, 8), np.uint8)
    mask[1:3, 2:6] = 1  # one component: box x 2..6, y 1..3
    mask[0, 7] = 1  # a second one
    coco = masks_to_coco([("a/b.png", mask)], file_name=lambda iid: iid.upper())
    # components in raster order: the pixel at row 0 comes first
    assert [a["bbox"] for a in coco["annotations"]] == [[7, 0, 1, 1], [2, 1, 4, 2]]
    back = coco_masks(coco, image_id=lambda name: name.lower())
    np.testing.assert_array_equal(back["a/b.png"], mask)
    # centres (7.5 / 8, 0.5 / 4) and (4 / 8, 2 / 4), sizes (1 / 8, 1 / 4) and (4 / 8, 2 / 4)
    assert mask_to_yolo(mask, 3) == (
        "3 0.937500 0.125000 0.125000 0.250000\n3 0.500000 0.500000 0.500000 0.500000\n"
    )
