"""open_dataset on tiny copies of FracAtlas, GRAZPEDWRI-DX, MURA, CUB-200-2011 and a class folder.

The copies (tests/fixtures_real.py) use the real file names, columns and quirks. Masks are
checked pixel for pixel against expectations computed here from the known rectangles and
points, not by the rasteriser under test.
"""

import warnings

import fixtures_real as fx
import numpy as np
import pytest
import torch
from PIL import Image

from agkit.data.mask_store import MaskStore
from agkit.data.real import open_dataset
from agkit.data.real.cub import load_cub
from agkit.data.real.folder import load_folder
from agkit.data.real.fracatlas import load_fracatlas
from agkit.data.real.grazpedwri import load_grazpedwri
from agkit.data.real.mura import load_mura
from agkit.data.real.source import ImageColumn
from agkit.data.real.splits import split_by_group, split_stratified


def polygon_mask(boxes, shape):
    """A rectangle polygon with corners (x0, y0), (x1, y1) fills the pixels whose centre is
    inside, mask[y0:y1, x0:x1]: the same pixels as the box (one convention for all shapes)."""
    return fx.expected_mask(boxes, shape)


def disc_mask(centres, radius, shape):
    """Pixels (row i, column j) whose centre (j + 0.5, i + 0.5) is within ``radius`` of a
    centre (x, y), by brute force."""
    mask = np.zeros(shape, dtype=np.uint8)
    for i in range(shape[0]):
        for j in range(shape[1]):
            mask[i, j] = any(
                (j + 0.5 - x) ** 2 + (i + 0.5 - y) ** 2 <= radius**2 for x, y in centres
            )
    return mask


def items(ds):
    return [ds[i] for i in range(len(ds))]


# ---------------------------------------------------------------------------------------
# FracAtlas
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fracatlas(tmp_path_factory):
    return fx.make_fracatlas(tmp_path_factory.mktemp("fracatlas"))


def test_fracatlas_labels_and_metadata_through_nested_folder_and_bom(fracatlas):
    source = load_fracatlas(fracatlas.root)
    table = source.table.set_index("image_id")
    assert dict(table["label"]) == fracatlas.labels
    assert dict(table["region"]) == fracatlas.extra["region"]
    assert (table["fracture_count"] == [len(fracatlas.shapes[i]) for i in table.index]).all()
    assert source.class_names == ["non_fractured", "fractured"]


@pytest.mark.parametrize("mask_source", ["polygon", "yolo", "voc"])
def test_fracatlas_masks_match_annotations_at_native_size(fracatlas, mask_source):
    masks = load_fracatlas(fracatlas.root, mask_source=mask_source).masks
    expected = polygon_mask if mask_source == "polygon" else fx.expected_mask
    for image_id, boxes in fracatlas.shapes.items():
        mask = masks(image_id)
        if not boxes:
            assert mask is None, image_id
        else:
            np.testing.assert_array_equal(
                mask, expected(boxes, fracatlas.sizes[image_id]), err_msg=image_id
            )


def test_fracatlas_published_split_kept_and_negatives_split_in_same_proportions(fracatlas):
    table = load_fracatlas(fracatlas.root, seed=3).table.set_index("image_id")
    published = fracatlas.extra["published"]
    assert {i: table.at[i, "split"] for i in published} == published
    negatives = table[table["label"] == 0]["split"].value_counts()
    # published fractured split is 6/2/2 of 10 -> 60/20/20 % of the 30 negatives
    assert negatives.to_dict() == {"train": 18, "val": 6, "test": 6}
    again = load_fracatlas(fracatlas.root, seed=3).table
    other = load_fracatlas(fracatlas.root, seed=4).table
    assert (again["split"] == table["split"].values).all()
    assert (other["split"] != table["split"].values).any()


def test_fracatlas_without_split_files_splits_stratified(tmp_path):
    truth = fx.make_fracatlas(
        tmp_path, n_pos=20, n_neg=40, split_files=False, truncated=0, nested=False
    )
    table = load_fracatlas(truth.root, fractions=(0.5, 0.25, 0.25)).table
    counts = table.groupby(["split", "label"]).size().to_dict()
    assert counts == {
        ("train", 0): 20,
        ("train", 1): 10,
        ("val", 0): 10,
        ("val", 1): 5,
        ("test", 0): 10,
        ("test", 1): 5,
    }


def test_fracatlas_open_dataset_end_to_end(tmp_path):
    truth = fx.make_fracatlas(tmp_path, square=32, truncated=0)
    # the training split augments by default
    assert open_dataset("fracatlas", truth.root, "train", size=32).augment
    assert not open_dataset("fracatlas", truth.root, "val", size=32).augment
    ds = open_dataset("fracatlas", truth.root, "train", size=32, augment=False)
    assert (
        len(ds)
        == sum(truth.extra["published"][i] == "train" for i in truth.extra["published"]) + 18
    )
    for image_id, (image, label, mask, has_mask) in zip(ds.image_ids, items(ds), strict=True):
        assert image.shape == (1, 32, 32) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        assert int(label) == truth.labels[image_id]
        boxes = truth.shapes[image_id]
        assert bool(has_mask) == bool(boxes)
        expected = polygon_mask(boxes, (32, 32)) if boxes else np.zeros((32, 32))
        np.testing.assert_array_equal(mask[0].numpy(), expected)
    assert list(ds.meta["image_id"]) == ds.image_ids and "hardware" in ds.meta
    rgb = open_dataset("fracatlas", truth.root, "test", size=16, in_channels=3)
    assert rgb[0][0].shape == (3, 16, 16)


def test_fracatlas_truncated_jpeg_load_skip_error(fracatlas):
    bad = fracatlas.extra["truncated"][0]
    split = load_fracatlas(fracatlas.root).table.set_index("image_id").at[bad, "split"]
    with pytest.warns(UserWarning, match=r"1 truncated") as caught:
        loaded = open_dataset("fracatlas", fracatlas.root, split, size=16, on_corrupt="load")
    assert len(caught) == 1
    image = loaded[loaded.image_ids.index(bad)][0]
    assert image.shape == (1, 16, 16)
    with pytest.warns(UserWarning, match=r"\(truncated\); skipped 1") as caught:
        skipped = open_dataset("fracatlas", fracatlas.root, split, size=16, on_corrupt="skip")
    assert len(caught) == 1
    assert bad not in skipped.image_ids and len(skipped) == len(loaded) - 1
    with pytest.raises(ValueError, match="truncated"):
        open_dataset("fracatlas", fracatlas.root, split, on_corrupt="error")
    other = next(s for s in ("train", "val", "test") if s != split)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no truncated file there: no warning at all
        open_dataset("fracatlas", fracatlas.root, other, size=16)


@pytest.mark.parametrize(
    "remove, named",
    [
        ("dataset.csv", "dataset.csv"),
        ("Annotations/COCO JSON/COCO_fracture_masks.json", "COCO_fracture_masks.json"),
        ("Utilities/Fracture Split/valid.csv", "valid.csv"),
        ("images/Fractured/IMG0000002.jpg", "IMG0000002.jpg"),
    ],
)
def test_fracatlas_missing_file_is_named_with_the_source(tmp_path, remove, named):
    truth = fx.make_fracatlas(tmp_path, truncated=0)
    (truth.extra["base"] / remove).unlink()
    assert truth.labels["IMG0000002"] == 1  # the removed image is a fractured one
    with pytest.raises(FileNotFoundError) as error:
        for split in ("train", "val", "test"):
            open_dataset("fracatlas", truth.root, split)
    message = str(error.value)
    assert (
        named in message
        and "10.6084/m9.figshare.22363012" in message
        and "data/README.md" in message
    )


def test_missing_root_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*figshare"):
        open_dataset("fracatlas", tmp_path / "nowhere", "train")


# ---------------------------------------------------------------------------------------
# GRAZPEDWRI-DX
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graz(tmp_path_factory):
    return fx.make_grazpedwri(tmp_path_factory.mktemp("graz"))


def test_grazpedwri_labels_from_flag_or_boxes(graz):
    flags = load_grazpedwri(graz.root).table.set_index("image_id")["label"]
    boxes = load_grazpedwri(graz.root, label_source="boxes").table.set_index("image_id")["label"]
    assert dict(flags) == graz.labels  # blank fracture_visible counts as 0
    assert dict(boxes) == graz.extra["box_labels"]
    assert (flags != boxes).sum() == 1


def test_grazpedwri_masks_from_chosen_classes(graz):
    fracture = load_grazpedwri(graz.root).masks
    text_and_fracture = load_grazpedwri(graz.root, mask_classes=(3, 8)).masks
    for image_id, boxes in graz.extra["boxes"].items():
        shape = graz.sizes[image_id]
        got = fracture(image_id)
        if boxes[3]:
            np.testing.assert_array_equal(got, fx.expected_mask(boxes[3], shape))
        else:
            assert got is None
        np.testing.assert_array_equal(
            text_and_fracture(image_id), fx.expected_mask(boxes[3] + boxes[8], shape)
        )


def test_grazpedwri_patients_never_in_two_splits(graz):
    table = load_grazpedwri(graz.root, seed=1).table
    splits_per_patient = table.groupby("patient_id")["split"].nunique()
    assert (splits_per_patient == 1).all()
    assert set(table["split"]) == {"train", "val", "test"}
    assert dict(zip(table["image_id"], table["patient_id"], strict=True)) == graz.extra["patients"]


def test_grazpedwri_reads_8_and_16_bit_png(graz):
    source = load_grazpedwri(graz.root)
    column = ImageColumn(source.files, source.table["key"])
    for i, image_id in enumerate(source.table["image_id"]):
        raw = np.asarray(Image.open(graz.root / source.table.at[i, "key"]))
        array = column(i)
        assert array.dtype == (np.uint16 if graz.extra["bits"][image_id] == 16 else np.uint8)
        np.testing.assert_array_equal(array, raw)
    ds = open_dataset("grazpedwri", graz.root, "test", size=24)
    sixteen = [i for i, image_id in enumerate(ds.image_ids) if graz.extra["bits"][image_id] == 16]
    assert ds[sixteen[0]][0].max() > 0.5  # scaled by 65535, not clipped at 255


# ---------------------------------------------------------------------------------------
# MURA
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mura(tmp_path_factory):
    return fx.make_mura(tmp_path_factory.mktemp("mura"), n_patients=24)


def test_mura_labels_splits_and_body_parts(mura):
    table = load_mura(mura.root, val_fraction=0.25).table.set_index("image_id")
    assert dict(table["label"]) == mura.labels
    parts = mura.extra["part"]
    assert all((table.at[i, "split"] == "test") == (parts[i] == "valid") for i in table.index)
    train_val = table[table["split"] != "test"]
    assert (train_val.groupby("patient")["split"].nunique() == 1).all()
    assert set(train_val["split"]) == {"train", "val"}
    wrists = load_mura(mura.root, body_parts=("XR_WRIST",)).table
    assert set(wrists["body_part"]) == {"XR_WRIST"}
    assert len(wrists) == sum(b == "XR_WRIST" for b in mura.extra["body_part"].values())
    with pytest.raises(ValueError, match="XR_WRIST"):
        load_mura(mura.root, body_parts=("WRIST",))


def test_mura_masks_come_from_a_mask_store(mura, tmp_path):
    store = MaskStore(tmp_path / "mura_masks")
    ds = open_dataset(
        "mura", mura.root / "MURA-v1.1", "test", size=26, augment=False, mask_store=store
    )
    first = ds.image_ids[0]
    h, w = mura.sizes[first]
    drawn = np.zeros((h, w), dtype=np.uint8)
    drawn[5:15, 3:9] = 1
    store.put(first, drawn, source="drawn", tool="test")
    image, label, mask, has_mask = ds[0]
    assert bool(has_mask) and int(label) == mura.labels[first]
    assert mask.shape == (1, 26, 26) and 0 < mask.sum() < 26 * 26
    assert not bool(ds[1][3])
    folder = open_dataset("mura", mura.root, "test", size=26, mask_store=tmp_path / "mura_masks")
    assert bool(folder[0][3])


def test_mura_missing_label_file_is_named(mura, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(mura.root, copy)
    (copy / "MURA-v1.1" / "valid_labeled_studies.csv").unlink()
    with pytest.raises(FileNotFoundError, match="valid_labeled_studies.csv.*stanfordmlgroup"):
        open_dataset("mura", copy, "train")


# ---------------------------------------------------------------------------------------
# CUB-200-2011
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    return fx.make_cub(tmp_path_factory.mktemp("cub"))


def test_cub_few_shot_draws_from_the_archive(cub):
    two = load_cub(cub.root, images_per_class=2, val_per_class=2, seed=0).table.set_index(
        "image_id"
    )
    four = load_cub(cub.root, images_per_class=4, val_per_class=2, seed=0).table.set_index(
        "image_id"
    )
    assert dict(two["label"]) == cub.labels
    for table, n in ((two, 2), (four, 4)):
        assert (table[table["split"] == "train"].groupby("label").size() == n).all()
        assert (table[table["split"] == "val"].groupby("label").size() == 2).all()
        test = set(table.index[table["split"] == "test"])
        assert test == {i for i, official in cub.extra["official"].items() if not official}
        assert all(
            cub.extra["official"][i] for i in table.index[table["split"].isin(["train", "val"])]
        )
    assert set(two.index[two["split"] == "train"]) <= set(four.index[four["split"] == "train"])
    assert set(two.index[two["split"] == "val"]) == set(four.index[four["split"] == "val"])


def test_cub_part_discs_and_boxes_to_the_pixel(cub):
    parts = load_cub(cub.root, radius=5).masks
    boxes = load_cub(cub.root, mask_source="box").masks
    for image_id, centres in cub.extra["parts"].items():
        shape = cub.sizes[image_id]
        if centres:
            np.testing.assert_array_equal(
                parts(image_id), disc_mask(centres, 5, shape), err_msg=image_id
            )
        else:
            assert parts(image_id) is None
        np.testing.assert_array_equal(
            boxes(image_id), fx.expected_mask([cub.extra["bbox"][image_id]], shape)
        )


def test_cub_open_dataset_reads_split_bytes_lazily(cub):
    ds = open_dataset("cub", cub.root, "test", size=32, radius=5)
    files = ds._loader.files
    assert files._bytes == {}  # nothing read from the archive yet
    image, label, mask, has_mask = ds[0]
    assert image.shape == (3, 32, 32) and mask.shape == (1, 32, 32)
    assert set(files._bytes) == {f"images/{i}.jpg" for i in ds.image_ids}
    assert ds.class_names == ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]
    assert [int(label) for label in ds.labels] == [cub.labels[i] for i in ds.image_ids]


def test_cub_unpacked_folder_equals_archive(cub, tmp_path):
    folder = fx.make_cub(tmp_path, archive=False)
    a = load_cub(cub.root, images_per_class=3, radius=5)
    b = load_cub(folder.root, images_per_class=3, radius=5)
    assert a.table.equals(b.table)
    image_id = a.table["image_id"][0]
    np.testing.assert_array_equal(a.masks(image_id), b.masks(image_id))
    ds = open_dataset("cub", folder.root, "train", images_per_class=3, size=24, augment=False)
    assert len(ds) == 9


def test_cub_missing_member_is_named(tmp_path):
    truth = fx.make_cub(tmp_path, leave_out=("parts/part_locs.txt",))
    with pytest.raises(
        FileNotFoundError, match=r"CUB_200_2011/parts/part_locs.txt.*CUB_200_2011.tgz.*README"
    ):
        open_dataset("cub", truth.root, "train")
    assert (
        len(open_dataset("cub", truth.root, "train", mask_source="none", images_per_class=1)) == 3
    )
    with pytest.raises(FileNotFoundError, match="CUB_200_2011.tgz"):
        open_dataset("cub", tmp_path / "empty_dir_does_not_exist", "train")


# ---------------------------------------------------------------------------------------
# A folder of class subfolders
# ---------------------------------------------------------------------------------------


def test_folder_classes_split_and_mask_store(tmp_path):
    truth = fx.make_class_folder(tmp_path, per_class=(20, 20))
    store = MaskStore(truth.root / "masks")
    h, w = truth.sizes["normal/case003"]
    store.put("normal/case003", np.ones((h, w), dtype=np.uint8))
    table = load_folder(truth.root).table.set_index("image_id")
    assert dict(table["label"]) == truth.labels
    counts = table.groupby(["split", "label"]).size().to_dict()
    assert counts == {
        ("train", 0): 14,
        ("train", 1): 14,
        ("val", 0): 3,
        ("val", 1): 3,
        ("test", 0): 3,
        ("test", 1): 3,
    }
    split = table.at["normal/case003", "split"]
    ds = open_dataset("folder", truth.root, split, size=16, augment=False)
    assert ds.class_names == ["fractured", "normal"]
    assert bool(ds[ds.image_ids.index("normal/case003")][3])
    assert sum(bool(ds[i][3]) for i in range(len(ds))) == 1


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_dataset("folder", tmp_path / "nope", "train")
    (tmp_path / "empty" / "normal").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        open_dataset("folder", tmp_path / "empty", "train")


# ---------------------------------------------------------------------------------------
# Splits and argument checks
# ---------------------------------------------------------------------------------------


def test_split_helpers_stratify_and_group():
    labels = np.array([0] * 60 + [1] * 40)
    split = split_stratified(labels, (0.6, 0.2, 0.2), seed=0)
    for name, n in (("train", 60), ("val", 20), ("test", 20)):
        assert (split == name).sum() == n and (labels[split == name] == 1).mean() == pytest.approx(
            0.4
        )
    groups = np.repeat(np.arange(50), 2)
    grouped = split_by_group(groups, np.repeat(np.arange(50) % 2, 2), (0.6, 0.2, 0.2), seed=0)
    assert all(len(set(grouped[groups == g])) == 1 for g in range(50))
    with pytest.raises(ValueError, match="sum to 1"):
        split_stratified(labels, (0.5, 0.2, 0.2))


def test_unknown_dataset_split_and_option(fracatlas):
    with pytest.raises(ValueError, match="fracatlas"):
        open_dataset("imagenet", fracatlas.root, "train")
    with pytest.raises(ValueError, match="'val'"):
        open_dataset("fracatlas", fracatlas.root, "valid")
    with pytest.raises(ValueError, match="mask_source"):
        open_dataset("fracatlas", fracatlas.root, "train", mask_source="rle")
    with pytest.raises(TypeError):
        open_dataset("fracatlas", fracatlas.root, "train", body_parts=("XR_WRIST",))


def test_annotated_fraction_keeps_some_masks(fracatlas):
    full = open_dataset("fracatlas", fracatlas.root, "train", size=16, augment=False)
    half = open_dataset(
        "fracatlas", fracatlas.root, "train", size=16, augment=False, annotated_fraction=0.5
    )
    assert 0 < int(half.mask_kept.sum()) < int(full.mask_kept.sum())


# ---------------------------------------------------------------------------------------
# The CUB recipe (construction only: a tiny network, one epoch, no pretrained weights)
# ---------------------------------------------------------------------------------------


def test_cub_recipe_runs_one_tiny_epoch(cub):
    from agkit.experiments.recipes import PUBLISHED_CUB, cub_recipe, cub_transforms

    result = cub_recipe(
        cub.root,
        images_per_class=5,
        lam=0.01,
        epochs=1,
        device="cpu",
        backbone="tiny",
        pretrained=False,
        size=32,
        batch_size=4,
        radius=5,
        val_per_class=1,
        progress=False,
    )
    assert list(result["history"]["epoch"]) == [1] and "val_accuracy" in result["history"]
    assert result["model"].pooling == "softmax" and result["model"].num_classes == 3
    assert result["test"]["n"] == 6 and 0 <= result["test_accuracy"] <= 100
    assert result["published"] == 52.0 and PUBLISHED_CUB.at[0.0, 20] == 72.9
    train_tf, test_tf = cub_transforms(448)
    from torchvision import tv_tensors

    image, mask = test_tf(
        tv_tensors.Image(torch.rand(3, 600, 800)), tv_tensors.Mask(torch.ones(1, 600, 800))
    )
    assert (
        image.shape == (3, 448, 448)
        and mask.shape == (1, 448, 448)
        and set(mask.unique().tolist()) == {1.0}
    )


def test_folder_in_the_kits_own_format(tmp_path):
    from agkit.data import make_synthfrac

    saved = make_synthfrac(20, size=32, seed=0, split="val").save(tmp_path / "synth")
    ds = open_dataset("folder", saved, "train", size=32, augment=False)
    assert 0 < len(ds) < 20 and ds.meta["given_split"].eq("val").all()
    store = MaskStore(saved / "masks")
    for i, image_id in enumerate(ds.image_ids):
        expected = store.get(image_id)
        assert bool(ds[i][3]) == (expected is not None)
        if expected is not None:
            np.testing.assert_array_equal(ds[i][2][0].numpy(), expected)
    assert len(open_dataset("folder", saved, "val", split_column="split", size=32)) == 20
    with pytest.raises(ValueError, match="split_column"):
        open_dataset("folder", saved, "val", split_column="marker")


# ---------------------------------------------------------------------------------------
# YOLO polygon lines are polygons in every reader
# ---------------------------------------------------------------------------------------


def test_yolo_polygon_lines_are_polygons_never_boxes_in_every_reader(tmp_path):
    from agkit.data.annotation_yolo import read_yolo
    from agkit.data.shapes import rasterize_polygons

    line = "3 0.1 0.1 0.9 0.1 0.1 0.9\n"  # a right triangle, YOLO segmentation format

    def triangle(shape):
        h, w = shape
        return rasterize_polygons([[0.1 * w, 0.1 * h, 0.9 * w, 0.1 * h, 0.1 * w, 0.9 * h]], shape)

    # the store's import
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "img.txt").write_text(line)
    store = MaskStore(tmp_path / "store")
    store.import_yolo(labels, {"img": (20, 20)})
    expected = triangle((20, 20))
    assert 0 < expected.sum() < 0.6 * 16 * 16  # about half its bounding box
    np.testing.assert_array_equal(store.get("img"), expected)
    np.testing.assert_array_equal(read_yolo(labels / "img.txt").rasterize((20, 20)), expected)

    # GRAZPEDWRI-DX and FracAtlas read their YOLO folders with the same parser
    graz = fx.make_grazpedwri(tmp_path / "g", n_patients=4)
    image_id = next(iter(graz.sizes))
    label_file = next(graz.root.rglob(f"labels/{image_id}.txt"))
    label_file.write_text(line)
    atlas = fx.make_fracatlas(tmp_path / "f", n_pos=2, n_neg=2)
    atlas_id = next(i for i, boxes in atlas.shapes.items() if boxes)
    next(atlas.root.rglob(f"Annotations/YOLO/{atlas_id}.txt")).write_text(
        line.replace("3 ", "0 ", 1)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # four images cannot be stratified
        graz_masks = load_grazpedwri(graz.root).masks
        atlas_masks = load_fracatlas(atlas.root, mask_source="yolo").masks
    np.testing.assert_array_equal(graz_masks(image_id), triangle(graz.sizes[image_id]))
    np.testing.assert_array_equal(atlas_masks(atlas_id), triangle(atlas.sizes[atlas_id]))
    # a polygon of two points is not a YOLO line at all
    (labels / "img.txt").write_text("3 0.1 0.1 0.9 0.1 0.5\n")
    with pytest.raises(ValueError, match="img.txt:1"):
        read_yolo(labels / "img.txt")


# ---------------------------------------------------------------------------------------
# The CUB recipe tests without augmentation
# ---------------------------------------------------------------------------------------


def test_cub_recipe_evaluates_the_test_split_without_augmentation(cub, monkeypatch):
    import pandas as pd
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    import agkit.experiments.recipes as recipes
    from agkit.data.io import image_to_tensor

    seen = {}
    monkeypatch.setattr(recipes, "fit", lambda *a, **k: pd.DataFrame({"epoch": [1]}))

    def evaluate(model, loader):
        seen["test"] = loader.dataset
        return {"accuracy": 0.5, "n": len(loader.dataset)}

    monkeypatch.setattr(recipes, "evaluate", evaluate)
    recipes.cub_recipe(
        cub.root,
        images_per_class=2,
        epochs=1,
        device="cpu",
        backbone="tiny",
        pretrained=False,
        size=32,
        batch_size=4,
        radius=5,
        progress=False,
    )
    test = seen["test"]
    assert test.augment is False and len(test) == 6
    source = load_cub(cub.root, images_per_class=2, radius=5)
    rows = source.table[source.table["split"] == "test"].reset_index(drop=True)
    assert list(rows["image_id"]) == test.image_ids
    column = ImageColumn(source.files, rows["key"])
    resize_crop = v2.Compose([v2.Resize(round(32 * 512 / 448), antialias=True), v2.CenterCrop(32)])
    for i, image_id in enumerate(test.image_ids):
        image, label, mask, _ = test[(i, 1)]
        again = test[(i, 2)]  # another augmentation seed: the same item
        assert torch.equal(image, again[0]) and torch.equal(mask, again[2])
        full = image_to_tensor(column(i), 3)
        full_mask = torch.from_numpy(source.masks(image_id)).float()[None]
        want_image, want_mask = resize_crop(tv_tensors.Image(full), tv_tensors.Mask(full_mask))
        assert torch.allclose(image, want_image.as_subclass(torch.Tensor).clamp(0, 1), atol=1e-6)
        assert torch.equal(mask, want_mask.as_subclass(torch.Tensor))
        assert label == rows.at[i, "label"]


# ---------------------------------------------------------------------------------------
# The folder loader's labels.csv and class folders: one clear error each
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "id,file,class\na,images/a.png,1\n",
            r"labels.csv lacks the column\(s\) \['image_id', 'path', 'label'\].*"
            r"header line image_id,path,label",
        ),
        (
            "image_id,path,label\na,images/a.png,fractured\n",
            r"labels.csv: the label column must hold class numbers.*"
            r"line 2 has 'fractured'; write the class number",
        ),
        ("image_id,path,label\n", r"labels.csv has a header but no rows; add"),
        ("", r"labels.csv is empty; it needs a header line"),
        (
            "image_id,path,label\na,images/a.png,1\na,images/a.png,0\n",
            r"image_id 'a' appears more than once",
        ),
    ],
)
def test_folder_labels_csv_problems_name_the_file_and_the_fix(tmp_path, content, message):
    from agkit.data import GuidedDataset

    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(ValueError, match=message):
        open_dataset("folder", tmp_path, "train")
    with pytest.raises(ValueError, match=message):
        GuidedDataset.from_folder(tmp_path)


def test_folder_two_files_with_one_stem_in_a_class_folder_name_both(tmp_path):
    truth = fx.make_class_folder(tmp_path, per_class=(3, 3))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(
        truth.root / "normal" / "case001.png"
    )  # beside case001.jpg
    with pytest.raises(
        ValueError,
        match=r"case001.jpg and case001.png in .*normal share the name 'case001'.*"
        r"'normal/case001'; rename or remove one",
    ):
        open_dataset("folder", truth.root, "train")


# ---------------------------------------------------------------------------------------
# The folder loader never follows a symbolic link out of or back into the dataset
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_link, named",
    [
        (lambda root, out: (root / "loop").symlink_to("."), r"loop -> '\.', back inside"),
        (  # a loop one level down: normal/again -> .. holds every class again
            lambda root, out: (root / "normal" / "again").symlink_to(".."),
            r"normal/again -> '\.\.', back inside",
        ),
        (
            lambda root, out: (root / "borrowed").symlink_to(out),
            r"borrowed -> '.*outside', outside",
        ),
        (
            lambda root, out: (root / "normal" / "extra.png").symlink_to(out / "x.png"),
            r"normal/extra.png -> '.*x.png', outside",
        ),
    ],
    ids=["loop_to_root", "loop_inside_a_class", "folder_outside", "image_file_outside"],
)
def test_folder_symlink_loops_and_links_outside_are_refused_by_name(tmp_path, make_link, named):
    truth = fx.make_class_folder(tmp_path, per_class=(3, 2))
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(outside / "x.png")
    make_link(truth.root, outside)
    with pytest.raises(ValueError, match=named + r".*does not follow links.*cp -rL"):
        load_folder(truth.root)
    with pytest.raises(ValueError, match=named):
        open_dataset("folder", truth.root, "train")


def test_folder_without_links_has_each_image_once_with_its_class(tmp_path):
    truth = fx.make_class_folder(tmp_path, per_class=(10, 10))
    (truth.root / ".hidden_link").symlink_to(".")  # hidden entries are skipped, links too
    table = load_folder(truth.root).table
    assert sorted(table["image_id"]) == sorted(truth.labels)
    assert dict(zip(table["image_id"], table["label"], strict=True)) == truth.labels


# ---------------------------------------------------------------------------------------
# labels.csv in another encoding: read when its byte-order mark says which, else refused
# ---------------------------------------------------------------------------------------

LABELS_WITH_ACCENTS = "image_id,path,label,note\nröntgen_1,images/a.png,1,fracture à droite\n"


def _labels_folder(tmp_path, data: bytes):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels.csv").write_bytes(data)
    return tmp_path


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_folder_labels_csv_in_utf8_or_with_a_byte_order_mark_is_read_exactly(tmp_path, encoding):
    data = LABELS_WITH_ACCENTS.encode(encoding)
    if encoding == "utf-16-be":  # Python writes a byte-order mark only for plain "utf-16"
        data = b"\xfe\xff" + data
    table = load_folder(_labels_folder(tmp_path, data)).table
    assert list(table["image_id"]) == ["röntgen_1"] and list(table["label"]) == [1]
    assert list(table["note"]) == ["fracture à droite"]


@pytest.mark.parametrize(
    "encoding, message",
    [
        ("latin-1", r"labels.csv is not UTF-8 text: line 2 holds the byte 0xf6"),
        ("cp1252", r"labels.csv is not UTF-8 text: line 2 holds the byte 0xf6"),
        ("utf-16-le", r"labels.csv holds NUL bytes: it is probably UTF-16 without"),
    ],
)
def test_folder_labels_csv_not_utf8_names_the_file_line_and_fix(tmp_path, encoding, message):
    folder = _labels_folder(tmp_path, LABELS_WITH_ACCENTS.encode(encoding))
    with pytest.raises(ValueError, match=message + r".*save it as UTF-8"):
        open_dataset("folder", folder, "train")
