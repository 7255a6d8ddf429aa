"""write_demo_dataset: SynthFrac radiographs written in the real datasets' on-disk formats."""

import json

import fixtures_real as fx
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from agkit.data import open_dataset
from agkit.data.real.demo import demo_synthfrac, write_demo_dataset
from agkit.data.real.fracatlas import load_fracatlas

N, SIZE = 60, 96


@pytest.fixture(scope="module")
def fracatlas(tmp_path_factory):
    root = write_demo_dataset(
        "fracatlas", tmp_path_factory.mktemp("demo") / "fracatlas", n=N, size=SIZE, seed=3
    )
    return root, demo_synthfrac(N, SIZE, seed=3)


def source_index(root):
    """image id (as open_dataset reports it) -> index into the SynthFrac source."""
    table = pd.read_csv(root / "demo_source.csv", dtype={"image_id": str})
    return {
        i: int(s.split("_")[1])
        for i, s in zip(table["image_id"], table["synthfrac_id"], strict=True)
    }


def test_fracatlas_files_and_columns_are_the_real_ones(fracatlas):
    root, source = fracatlas
    table = pd.read_csv(root / "dataset.csv")
    assert list(table.columns) == fx.FRACATLAS_COLUMNS  # the format as data/README.md states it
    assert table["image_id"].str.fullmatch(r"IMG\d{7}\.jpg").all()
    assert table["fractured"].tolist() == source.labels.tolist()
    for stem, label in zip(table["image_id"], table["fractured"], strict=True):
        assert (root / "images" / ("Fractured" if label else "Non_fractured") / stem).is_file()
        assert (root / "Annotations" / "PASCAL VOC" / stem.replace(".jpg", ".xml")).is_file()
    coco = json.loads((root / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json").read_text())
    assert coco["categories"] == [{"id": 1, "name": "fractured"}]
    assert len(coco["images"]) == int(source.labels.sum())  # fractured images only, as in FracAtlas
    per_image = pd.Series([a["image_id"] for a in coco["annotations"]]).value_counts()
    ids = {im["id"]: im["file_name"] for im in coco["images"]}
    counts = table.set_index("image_id")["fracture_count"]
    assert all(counts[ids[i]] == c for i, c in per_image.items())


def test_fracatlas_loads_with_labels_and_polygon_masks_of_the_source(fracatlas):
    root, source = fracatlas
    index = source_index(root)
    seen = 0
    for split in ("train", "val", "test"):
        ds = open_dataset("fracatlas", root, split, size=SIZE, augment=False)
        assert set(ds.labels.tolist()) == {0, 1}, f"{split} lacks a class"
        for i, image_id in enumerate(ds.image_ids):
            k = index[image_id]
            image, label, mask, has_mask = ds[i]
            assert label == source.labels[k]
            # JPEG is lossy, but only slightly at quality 95
            assert (image - source.images[k]).abs().mean() < 2 / 255
            fracture = source.fracture_masks[k, 0].numpy() > 0.5
            assert bool(has_mask) == bool(label)
            # the COCO outline covers the fracture mask exactly (holes inside a region filled)
            assert np.array_equal(mask[0].numpy() > 0.5, ndimage.binary_fill_holes(fracture))
            seen += 1
    assert seen == N


def test_fracatlas_box_masks_cover_the_fracture(fracatlas):
    root, source = fracatlas
    index = source_index(root)
    for mask_source in ("yolo", "voc"):
        ds = open_dataset(
            "fracatlas", root, "train", size=SIZE, augment=False, mask_source=mask_source
        )
        for i in range(len(ds)):
            fracture = source.fracture_masks[index[ds.image_ids[i]], 0] > 0.5
            box = ds[i][2][0] > 0.5
            assert torch.equal(box | fracture, box)  # the box holds the whole fracture
            if fracture.any():
                ys, xs = torch.nonzero(fracture, as_tuple=True)
                assert box.sum() <= (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) * 2


def test_fracatlas_published_split_holds(fracatlas):
    root, source = fracatlas
    table = load_fracatlas(root).table.set_index("image_id")
    listed = {}
    for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
        for value in pd.read_csv(root / "Utilities" / "Fracture Split" / f"{name}.csv")["image_id"]:
            listed[value.removesuffix(".jpg")] = split
    fractured = set(table.index[table["label"] == 1])
    assert set(listed) == fractured  # the lists hold the fractured images only, each once
    assert all(table.loc[stem, "split"] == split for stem, split in listed.items())
    shares = table[table["label"] == 0]["split"].value_counts(normalize=True)
    assert shares["train"] > 0.5 and shares["val"] > 0 and shares["test"] > 0


@pytest.mark.parametrize("name, masked", [("grazpedwri", True), ("mura", False), ("folder", True)])
def test_other_formats_load_with_the_source_labels(tmp_path, name, masked):
    root = write_demo_dataset(name, tmp_path / name, n=60, size=64, seed=1)
    source = demo_synthfrac(60, 64, seed=1)
    index = source_index(root)
    total = 0
    for split in ("train", "val", "test"):
        ds = open_dataset(name, root, split, size=64, augment=False)
        assert ds.class_names[1] in ("fracture", "abnormal", "positive")
        for i, image_id in enumerate(ds.image_ids):
            k = index[image_id]
            image, label, mask, has_mask = ds[i]
            assert label == source.labels[k]
            assert torch.equal(image, source.images[k])  # PNG: lossless
            fracture = source.fracture_masks[k, 0] > 0.5
            if masked:
                assert torch.equal((mask[0] > 0.5) | fracture, mask[0] > 0.5)
                assert bool(has_mask) == bool(fracture.any())
            else:
                assert not has_mask
            total += 1
    assert total == 60


def test_same_arguments_reuse_the_folder_and_new_ones_rewrite_it(tmp_path):
    folder = tmp_path / "demo"
    write_demo_dataset("fracatlas", folder, n=24, size=48)
    stamp = (folder / "dataset.csv").stat().st_mtime_ns
    assert write_demo_dataset("fracatlas", folder, n=24, size=48) == folder
    assert (folder / "dataset.csv").stat().st_mtime_ns == stamp
    write_demo_dataset("fracatlas", folder, n=30, size=48)
    assert len(pd.read_csv(folder / "dataset.csv")) == 30
    assert not list(tmp_path.glob(".demo.writing-*"))  # no temporary folder left behind


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="CUB needs the real download"):
        write_demo_dataset("cub", tmp_path / "cub")
    with pytest.raises(ValueError, match="at least 20"):
        write_demo_dataset("fracatlas", tmp_path / "small", n=5)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a demo dataset"):
        write_demo_dataset("fracatlas", mine, n=24, size=48)
    assert (mine / "thesis.txt").read_text() == "precious"
