"""Tests for agkit.data.dataset: GuidedDataset (inputs, items, transforms) and read_image."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageFile
from toy_images import toy

from agkit.data.dataset import GuidedDataset
from agkit.data.io import read_image
from agkit.data.loader import make_loader
from agkit.data.mask_store import MaskStore

torch.set_num_threads(1)


# ---------------------------------------------------------------------- items
def test_tensor_items_are_exact_without_transforms():
    images, labels, masks = toy()
    masks[3] = 0  # an empty mask means "no mask"
    ds = GuidedDataset(images, labels, masks)
    image, label, mask, has_mask = ds[2]
    assert image.dtype == torch.float32 and image.shape == (1, 16, 16)
    assert label.dtype == torch.int64 and label.ndim == 0 and label.item() == 0
    assert mask.dtype == torch.float32 and mask.shape == (1, 16, 16)
    assert has_mask.dtype == torch.bool and has_mask.item()
    assert torch.equal(image, images[2]) and torch.equal(mask, masks[2])
    assert not ds[3][3] and ds[3][2].sum() == 0
    assert ds.image_ids[:3] == ["0", "1", "2"] and ds.class_names == ["0", "1"]
    batch = next(iter(make_loader(ds, batch_size=5)))
    assert [tuple(t.shape) for t in batch] == [(5, 1, 16, 16), (5,), (5, 1, 16, 16), (5,)]
    assert batch[3].tolist() == [True, True, True, False, True]
    assert GuidedDataset(images, labels)[0][3].item() is False  # no masks at all


def test_channels_and_uint8():
    rgb = torch.zeros(1, 3, 2, 2)
    rgb[0, 0] = 1.0  # pure red
    gray = GuidedDataset(rgb, [0], in_channels=1)[0][0]
    assert gray.shape == (1, 2, 2) and torch.allclose(gray, torch.full((1, 2, 2), 0.299))
    three = GuidedDataset(torch.full((1, 1, 2, 2), 0.5), [0], in_channels=3)[0][0]
    assert three.shape == (3, 2, 2) and torch.all(three == 0.5)
    as_uint8 = GuidedDataset(torch.full((1, 2, 2), 51, dtype=torch.uint8), [1])[0][0]  # N x H x W
    assert as_uint8.shape == (1, 2, 2) and torch.allclose(as_uint8, torch.full((1, 2, 2), 0.2))


def test_resize_keeps_mask_binary():
    images, labels, masks = toy(n=2, size=16)
    ds = GuidedDataset(images, labels, masks, size=8)
    image, _, mask, _ = ds[0]
    assert image.shape == mask.shape == (1, 8, 8)
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.sum() == 9  # 6x6 square -> 3x3
    assert 0 <= image.min() and image.max() <= 1


def centroid(a):
    rows, cols = torch.meshgrid(torch.arange(a.shape[-2]), torch.arange(a.shape[-1]), indexing="ij")
    return torch.stack([(a * rows).sum(), (a * cols).sum()]) / a.sum()


def test_augment_moves_mask_with_image():
    images, labels, masks = toy(n=20, size=32, noise=0.0)  # image == mask before augmenting
    ds = GuidedDataset(images, labels, masks, augment=True, size=24)
    offsets, ious = [], []
    for i in range(len(ds)):
        for seed in range(5):
            image, _, mask, has_mask = ds[(i, seed)]
            assert image.shape == mask.shape == (1, 24, 24)
            assert set(mask.unique().tolist()) <= {0.0, 1.0}
            if has_mask and image.sum() > 0:
                offsets.append((centroid(image[0]) - centroid(mask[0])).tolist())
                bright = image[0] > 0.5
                ious.append(
                    (bright & (mask[0] > 0)).sum().item() / (bright | (mask[0] > 0)).sum().item()
                )
    assert len(offsets) > 80
    # centroids of the bright square and of the mask agree to a fraction of a pixel, with no bias
    offsets = np.array(offsets)
    assert np.abs(offsets).max() < 0.75 and np.abs(offsets).mean() < 0.25
    assert np.abs(offsets.mean(axis=0)).max() < 0.1
    assert np.mean(ious) > 0.8
    rgb = GuidedDataset(images, labels, masks, augment=True, size=24, in_channels=3)[(0, 0)]
    assert rgb[0].shape == (3, 24, 24) and torch.equal(
        rgb[2], ds[(0, 0)][2]
    )  # same seed, same mask


def test_annotated_fraction_is_stratified_and_seeded():
    labels = torch.tensor([0] * 20 + [1] * 10)
    images = torch.zeros(30, 1, 4, 4)
    masks = torch.ones(30, 1, 4, 4)
    ds = GuidedDataset(images, labels, masks, annotated_fraction=0.25, seed=3)
    has = torch.stack([ds[i][3] for i in range(30)])
    assert (
        has[:20].sum() == 5 and has[20:].sum() == 3
    )  # round(0.25 * 20) = 5, round(2.5) = 3 (halves up)
    assert torch.equal(has, ds.mask_kept)
    for i in torch.nonzero(~has).flatten().tolist():
        assert ds[i][2].sum() == 0
    other = GuidedDataset(images, labels, masks, annotated_fraction=0.25, seed=4).mask_kept
    assert other[:20].sum() == 5 and not torch.equal(other, ds.mask_kept)
    assert torch.equal(
        GuidedDataset(images, labels, masks, annotated_fraction=0.25, seed=3).mask_kept,
        ds.mask_kept,
    )
    assert GuidedDataset(images, labels, masks, annotated_fraction=0).mask_kept.sum() == 0
    with pytest.raises(ValueError, match="between 0 and 1"):
        GuidedDataset(images, labels, masks, annotated_fraction=25)


# -------------------------------------------------------------- mask sources
def test_mask_sources_store_mapping_callable(tmp_path):
    images, labels, masks = toy(n=4, size=8)
    ids = ["a/1", "a/2", "b/1", "b/2"]
    store = MaskStore(tmp_path)
    store.put("a/2", masks[1, 0])
    mapping = {"a/2": masks[1, 0].numpy()}
    for source in (store, mapping, lambda iid: mapping.get(iid)):
        ds = GuidedDataset(images, labels, source, image_ids=ids)
        assert [bool(ds[i][3]) for i in range(4)] == [False, True, False, False]
        assert torch.equal(ds[1][2], masks[1])
    store.put("b/1", torch.ones(4, 4))
    with pytest.raises(ValueError, match="'b/1' is 4x4 but the image is 8x8"):
        GuidedDataset(images, labels, store, image_ids=ids)
    with pytest.raises(ValueError, match="'b/1' is 4x4 but the image is 8x8"):
        GuidedDataset(
            images, labels, lambda iid: np.ones((4, 4)) if iid == "b/1" else None, image_ids=ids
        )[2]
    with pytest.raises(ValueError, match="only 0 and 1"):
        GuidedDataset(images, labels, {"a/1": np.full((8, 8), 255)}, image_ids=ids)[0]


def test_bad_arguments_name_the_fix():
    images, labels, masks = toy(n=4, size=8)
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        GuidedDataset(images, labels[:3])
    with pytest.raises(ValueError, match="masks must have the image size"):
        GuidedDataset(images, labels, torch.zeros(4, 1, 6, 6))
    with pytest.raises(ValueError, match="divide by 255"):
        GuidedDataset(images * 255, labels)
    with pytest.raises(ValueError, match=r"shape \(4, 2\); for one-hot labels pass labels.argmax"):
        GuidedDataset(images, torch.nn.functional.one_hot(labels.long(), 2))
    assert GuidedDataset(images, labels[:, None]).labels.tolist() == labels.tolist()  # N x 1
    with pytest.raises(ValueError, match="label 2 has no class: class_names names 2 classes"):
        GuidedDataset(images, torch.tensor([0, 1, 2, 1]), class_names=["normal", "fractured"])
    ids = torch.tensor([0, 1, 2**40, 1])  # an image id where a class number belongs
    with pytest.raises(ValueError, match="label 1099511627776 has no class: .* below 100,000"):
        GuidedDataset(images, ids)
    spoiled = images.clone()
    spoiled[2, 0, 1, 1] = float("nan")
    spoiled[3, 0, 0, 0] = float("inf")
    with pytest.raises(
        ValueError, match=r"2 image\(s\) hold NaN or inf values \(at positions 2, 3\)"
    ):
        GuidedDataset(spoiled, labels)
    with pytest.raises(ValueError, match="unique"):
        GuidedDataset(images, labels, image_ids=["x"] * 4)
    with pytest.raises(ValueError, match="threshold"):
        GuidedDataset(images, labels, masks * 255)
    sizes = [(8, 8), (8, 8), (6, 8), (8, 8)]
    ds = GuidedDataset(lambda i: np.zeros(sizes[i], np.uint8), labels)
    ds[0]
    with pytest.raises(ValueError, match="pass size="):
        ds[2]
    assert GuidedDataset(lambda i: np.zeros(sizes[i], np.uint8), labels, size=5)[2][0].shape == (
        1,
        5,
        5,
    )


# -------------------------------------------------------------------- files
def test_read_image_bit_depths_and_colour(tmp_path):
    Image.fromarray(np.array([[0, 51], [255, 102]], np.uint8)).save(tmp_path / "g8.png")
    assert torch.allclose(read_image(tmp_path / "g8.png"), torch.tensor([[[0, 0.2], [1, 0.4]]]))
    Image.fromarray(np.array([[0, 65535], [13107, 1]], np.uint16)).save(tmp_path / "g16.png")
    g16 = read_image(tmp_path / "g16.png")
    assert torch.allclose(g16, torch.tensor([[[0, 1], [0.2, 1 / 65535]]], dtype=torch.float32))
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    assert torch.allclose(read_image(tmp_path / "red.png", 1), torch.full((1, 2, 3), 0.299))
    assert read_image(tmp_path / "red.png", 3)[0].eq(1).all()
    assert read_image(tmp_path / "g8.png", 3).shape == (3, 2, 2)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(
        tmp_path / "x.jpg", quality=95
    )
    data = (tmp_path / "x.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="cut.jpg is truncated.*on_corrupt='load'"):
        read_image(tmp_path / "cut.jpg")
    image = read_image(tmp_path / "cut.jpg", on_corrupt="load")
    assert image.shape == (1, 64, 64)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the global PIL switch is restored


def write_folder(folder, sizes=((8, 8),) * 4):
    (folder / "images").mkdir(parents=True)
    rows = []
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.full((h, w), 20 * i, np.uint8)).save(folder / "images" / f"im{i}.png")
        rows.append(
            {"image_id": f"{i:03d}", "path": f"images/im{i}.png", "label": i % 2, "site": "x"}
        )
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    store = MaskStore(folder / "masks")
    store.put("001", np.eye(sizes[1][0], sizes[1][1], dtype=np.uint8))
    return folder


def test_from_folder(tmp_path):
    ds = GuidedDataset.from_folder(write_folder(tmp_path / "d"))
    assert ds.image_ids == ["000", "001", "002", "003"] and ds.labels.tolist() == [0, 1, 0, 1]
    assert list(ds.meta["site"]) == ["x"] * 4
    image, label, mask, has_mask = ds[1]
    assert torch.allclose(image, torch.full((1, 8, 8), 20 / 255)) and label == 1
    assert has_mask and torch.equal(mask[0], torch.eye(8))
    assert not ds[0][3]
    big = GuidedDataset.from_folder(tmp_path / "d", size=16, in_channels=3)
    assert big[1][0].shape == (3, 16, 16) and big[1][2].shape == (1, 16, 16)


def test_from_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No labels.csv.*image_id,path,label"):
        GuidedDataset.from_folder(tmp_path)
    folder = write_folder(tmp_path / "d")
    (folder / "images" / "im1.png").unlink()
    (folder / "images" / "im3.png").unlink()
    with pytest.raises(FileNotFoundError, match="2 image file.*im1.png.*im3.png"):
        GuidedDataset.from_folder(folder)
    mixed = write_folder(tmp_path / "m", sizes=[(8, 8), (8, 8), (8, 6), (8, 8)])
    with pytest.raises(ValueError, match="different sizes.*pass size="):
        GuidedDataset.from_folder(mixed)
    assert GuidedDataset.from_folder(mixed, size=8)[2][0].shape == (1, 8, 8)


def test_from_synthfrac_duck_typed():
    images, labels, masks = toy(n=6, size=8)
    s = SimpleNamespace(
        images=images,
        labels=labels,
        masks=masks,
        image_ids=[f"train_{i:05d}" for i in range(6)],
        meta=pd.DataFrame(
            {"image_id": [f"train_{i:05d}" for i in range(6)], "marker": [False] * 6}
        ),
    )
    ds = GuidedDataset.from_synthfrac(s, annotated_fraction=0.5)
    assert ds.image_ids[2] == "train_00002" and ds.class_names == ["normal", "fractured"]
    assert ds.mask_kept.sum() == 4  # round(0.5 * 3) = 2 per class
    assert len(ds.meta) == 6 and torch.equal(ds[0][0], images[0])


def test_subset_and_set_transform():
    images, labels, masks = toy(n=6, size=8)
    ds = GuidedDataset(images, labels, masks, annotated_fraction=0.5)
    sub = ds.subset([4, 1])
    assert len(sub) == 2 and sub.image_ids == ["4", "1"] and sub.labels.tolist() == [0, 1]
    assert torch.equal(sub[0][0], images[4]) and torch.equal(sub.mask_kept, ds.mask_kept[[4, 1]])
    from torchvision.transforms import v2

    flipped = GuidedDataset(images, labels, masks).set_transform(v2.RandomHorizontalFlip(p=1.0))
    image, _, mask, _ = flipped[0]
    assert torch.equal(image, images[0].flip(-1)) and torch.equal(mask, masks[0].flip(-1))
