"""The one image reader (agkit.data.io): scaling rule, corrupt files, and one file read
through every public path."""

import json
import warnings

import fixtures_real as fx
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from agkit.data import GuidedDataset, MaskStore, open_dataset, read_image
from agkit.data.annotation_coco import read_coco
from agkit.data.annotation_yolo import read_yolo
from agkit.data.corrupt_policy import CorruptImageError
from agkit.data.io import to_array

torch.set_num_threads(1)


def class_folder(root, files):
    """root/a/<name> for every (name, writer) and four plain 8-bit images in root/b/."""
    for name, write in files.items():
        (root / "a").mkdir(parents=True, exist_ok=True)
        write(root / "a" / name)
    (root / "b").mkdir(parents=True, exist_ok=True)
    for k in range(4):
        Image.fromarray(np.full((2, 3), 10 * k, np.uint8)).save(root / "b" / f"p{k}.png")
    return root


def folder_image(ds, image_id):
    return ds[ds.image_ids.index(image_id)][0]


# ------------------------------------------------------------------------- scaling rule
def test_float_tiff_in_unit_range_reads_as_its_values(tmp_path):
    values = np.array([[0.0, 0.25, 0.5], [0.75, 1.0, 0.1]], np.float32)
    write = lambda p: Image.fromarray(values, mode="F").save(p)  # noqa: E731
    root = class_folder(tmp_path / "f", {"x.tif": write})
    expected = torch.from_numpy(values)[None]
    assert torch.equal(read_image(root / "a" / "x.tif"), expected)
    assert torch.equal(GuidedDataset([root / "a" / "x.tif"], [0])[0][0], expected)
    ds = open_dataset("folder", root, "train", size=None, augment=False, fractions=(1, 0, 0))
    assert torch.equal(folder_image(ds, "a/x"), expected)  # was all black (float -> "L")
    np.testing.assert_array_equal(to_array(root / "a" / "x.tif"), values)


def test_16_bit_and_float_images_are_scaled_by_their_real_range(tmp_path):
    twelve_bit = np.array([[100, 4095], [2000, 100]], np.uint16)  # a 12-bit radiograph in 16 bits
    wide = np.array([[-50.0, 150.0], [50.0, 0.0]], np.float32)
    root = class_folder(
        tmp_path / "r",
        {
            "g16.png": lambda p: Image.fromarray(twelve_bit).save(p),
            "wide.tif": lambda p: Image.fromarray(wide, mode="F").save(p),
        },
    )
    expected16 = torch.tensor([[[0.0, 1.0], [1900 / 3995, 0.0]]])
    expected_wide = torch.tensor([[[0.0, 1.0], [0.5, 0.25]]])
    assert torch.allclose(read_image(root / "a" / "g16.png"), expected16)  # was / 65535
    assert torch.allclose(read_image(root / "a" / "wide.tif"), expected_wide)  # was an error
    ds = open_dataset("folder", root, "train", size=None, augment=False, fractions=(1, 0, 0))
    assert torch.allclose(folder_image(ds, "a/g16"), expected16)
    assert torch.allclose(folder_image(ds, "a/wide"), expected_wide)
    # in-memory arrays follow the same rule
    assert torch.allclose(GuidedDataset(lambda i: twelve_bit, [0])[0][0], expected16)


def test_nan_in_a_float_image_names_the_file(tmp_path):
    Image.fromarray(np.array([[0.5, np.nan]], np.float32), mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(CorruptImageError, match="nan.tif holds NaN or inf"):
        read_image(tmp_path / "nan.tif")


# ------------------------------------------------------------------------ corrupt files
def write_bad_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "garbage.png").write_bytes(b"this is not an image at all")
    paths = [folder / "empty.png", folder / "garbage.png"]
    for k in range(3):
        Image.fromarray(np.full((4, 4), 50 * k, np.uint8)).save(folder / f"ok{k}.png")
        paths.append(folder / f"ok{k}.png")
    return paths


def test_zero_byte_and_undecodable_files_are_caught_when_a_dataset_is_built(tmp_path):
    paths = write_bad_files(tmp_path / "img")
    with pytest.raises(
        CorruptImageError, match="2 corrupt image file.*empty.png.*garbage.png"
    ) as e:
        GuidedDataset(paths, [0, 1, 0, 1, 0])
    assert f"'{paths[0]}' (" in str(e.value) and "PosixPath" not in str(e.value)
    with pytest.warns(UserWarning, match="2 corrupt image file.*skipped 2"):
        ds = GuidedDataset(
            paths, [0, 1, 0, 1, 0], image_ids=list("abcde"), on_corrupt="skip", meta={"n": range(5)}
        )
    assert ds.image_ids == ["c", "d", "e"] and ds.labels.tolist() == [0, 1, 0]
    assert list(ds.meta["n"]) == [2, 3, 4]
    assert [float(ds[i][0].max()) for i in range(3)] == pytest.approx([0.0, 50 / 255, 100 / 255])
    with pytest.raises(CorruptImageError, match="empty.png is empty"):
        read_image(paths[0])
    with pytest.raises(CorruptImageError, match="garbage.png cannot be decoded"):
        read_image(paths[1])


def test_open_dataset_folder_applies_on_corrupt_to_empty_files(tmp_path):
    fine = lambda p: Image.fromarray(np.zeros((2, 3), np.uint8)).save(p)  # noqa: E731
    root = class_folder(
        tmp_path / "c", {"empty.png": lambda p: p.write_bytes(b""), "fine.png": fine}
    )
    with pytest.raises(CorruptImageError, match="a/empty.png.*on_corrupt='skip'"):
        open_dataset("folder", root, "train", on_corrupt="error", fractions=(1, 0, 0))
    for policy in ("skip", "load"):  # an empty file cannot be read as far as it goes either
        with pytest.warns(UserWarning, match="skipped 1"):
            ds = open_dataset(
                "folder", root, "train", on_corrupt=policy, fractions=(1, 0, 0), size=4
            )
        assert "a/empty" not in ds.image_ids and len(ds) == 5


# ----------------------------------------------------- one file through every public path
def test_one_image_and_one_annotation_read_identically_through_every_path(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 24), dtype=np.uint8)
    polygon = [4.2, 3.1, 20.3, 6.4, 9.1, 19.3]  # a triangle in pixel coordinates
    corners = list(zip(polygon[0::2], polygon[1::2], strict=True))
    expected_mask = np.zeros((24, 24), np.uint8)  # by hand: pixel centres inside the triangle
    for r in range(24):
        for c in range(24):
            x, y = c + 0.5, r + 0.5
            side = [
                (bx - ax) * (y - ay) - (by - ay) * (x - ax)
                for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1], strict=True)
            ]
            assert 0 not in side  # no centre on an edge, so no tie rule is involved
            expected_mask[r, c] = all(s > 0 for s in side) or all(s < 0 for s in side)
    assert 50 < expected_mask.sum() < 200
    coco = {
        "images": [{"id": 1, "file_name": "IMG0000001.png", "width": 24, "height": 24}],
        "categories": [{"id": 1, "name": "fractured"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [polygon],
                "bbox": [4, 3, 16, 16],
                "area": 100,
            }
        ],
    }
    yolo_line = "0 " + " ".join(f"{v / 24:.10f}" for v in polygon) + "\n"

    # a FracAtlas folder with the image, its COCO polygon and the YOLO polygon
    atlas = tmp_path / "FracAtlas"
    for sub in (
        "images/Fractured",
        "images/Non_fractured",
        "Annotations/COCO JSON",
        "Annotations/YOLO",
    ):
        (atlas / sub).mkdir(parents=True)
    Image.fromarray(pixels).save(atlas / "images/Fractured/IMG0000001.png")
    (atlas / "Annotations/COCO JSON/COCO_fracture_masks.json").write_text(json.dumps(coco))
    (atlas / "Annotations/YOLO/IMG0000001.txt").write_text(yolo_line)
    columns = fx.FRACATLAS_COLUMNS
    pd.DataFrame([["IMG0000001.png", 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0]], columns=columns).to_csv(
        atlas / "dataset.csv", index=False
    )
    image_file = atlas / "images/Fractured/IMG0000001.png"

    # a labels.csv folder and a class folder with the same file and masks imported from COCO
    kit = tmp_path / "kit"
    (kit / "images").mkdir(parents=True)
    Image.fromarray(pixels).save(kit / "images/IMG0000001.png")
    table = {"image_id": ["IMG0000001"], "path": ["images/IMG0000001.png"], "label": [1]}
    pd.DataFrame(table).to_csv(kit / "labels.csv", index=False)
    MaskStore(kit / "masks").import_coco(coco, image_id="stem")
    classes = tmp_path / "classes"
    (classes / "fractured").mkdir(parents=True)
    Image.fromarray(pixels).save(classes / "fractured/IMG0000001.png")
    MaskStore(classes / "masks").import_coco(coco, image_id=lambda name: "fractured/" + name[:-4])
    yolo_store = MaskStore(tmp_path / "yolo_store")
    yolo_store.import_yolo(atlas / "Annotations/YOLO", {"IMG0000001": (24, 24)})

    expected_image = torch.from_numpy(pixels.astype(np.float32) / 255)[None]
    images = {
        "read_image": read_image(image_file),
        "to_array": torch.from_numpy(to_array(image_file))[None],
        "GuidedDataset.from_folder": GuidedDataset.from_folder(kit)[0][0],
    }
    masks = {
        "read_coco": read_coco(atlas / "Annotations/COCO JSON/COCO_fracture_masks.json")[
            "IMG0000001.png"
        ].rasterize((24, 24)),
        "read_yolo": read_yolo(atlas / "Annotations/YOLO/IMG0000001.txt").rasterize((24, 24)),
        "MaskStore.import_coco": MaskStore(kit / "masks").get("IMG0000001"),
        "MaskStore.import_yolo": yolo_store.get("IMG0000001"),
        "GuidedDataset.from_folder": GuidedDataset.from_folder(kit)[0][2][0].numpy(),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a one-image dataset cannot be stratified
        for mask_source in ("polygon", "yolo"):
            ds = open_dataset(
                "fracatlas", atlas, "train", size=24, augment=False, mask_source=mask_source
            )
            images[f"open_dataset fracatlas {mask_source}"] = ds[0][0]
            masks[f"open_dataset fracatlas {mask_source}"] = ds[0][2][0].numpy()
        ds = open_dataset("folder", classes, "train", size=24, augment=False, fractions=(1, 0, 0))
        images["open_dataset folder"] = ds[0][0]
        masks["open_dataset folder"] = ds[0][2][0].numpy()
    # the annotation widget: the image it shows and the polygon drawn with the mouse tools
    from agkit.widgets import MaskAnnotator

    widget = MaskAnnotator([("IMG0000001", image_file)], tmp_path / "drawn")
    images["MaskAnnotator"] = torch.from_numpy(widget._get_image(0))[None]
    widget.fill_polygon(corners)
    masks["MaskAnnotator.fill_polygon"] = MaskStore(tmp_path / "drawn").get("IMG0000001")
    for path, image in images.items():
        assert torch.equal(image, expected_image), path
    for path, mask in masks.items():
        np.testing.assert_array_equal(mask, expected_mask, err_msg=path)
