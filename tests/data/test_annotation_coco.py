"""COCO imports (agkit.data.annotation_coco): no silent empty masks, clear errors.

Every import refuses (a ValueError naming the file and the annotation or line) or warns
(with the count and the file) on an annotation it cannot turn into a non-empty mask.
"""

import contextlib
import json
import warnings

import numpy as np
import pytest

from agkit.data.annotation_coco import decode_rle, read_coco
from agkit.data.mask_exchange import coco_masks
from agkit.data.mask_store import MaskStore


def coco_file(tmp_path, annotations, images=None, name="coco.json"):
    images = images or [{"id": 1, "file_name": "a.png", "width": 6, "height": 4}]
    path = tmp_path / name
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def ann(k, image_id=1, **fields):
    return {"id": k, "image_id": image_id, "category_id": 1, **fields}


@contextlib.contextmanager
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ------------------------------------------------------------------ high: no empty masks
def test_coco_polygon_of_two_points_is_skipped_with_a_warning(tmp_path):
    images = [
        {"id": 1, "file_name": "a.png", "width": 6, "height": 4},
        {"id": 2, "file_name": "b.png", "width": 6, "height": 4},
    ]
    path = coco_file(
        tmp_path,
        [
            ann(1, 1, segmentation=[[1, 1, 3, 1]]),  # two points: no area
            ann(2, 2, segmentation=[[0, 0, 2, 0, 2, 2, 0, 2]]),  # a 2 x 2 square
        ],
        images,
    )
    store = MaskStore(tmp_path / "m")
    with pytest.warns(UserWarning, match=r"coco\.json: 1 annotation\(s\) draw no pixel.*2 point"):
        assert store.import_coco(path) == ["b.png"]  # a.png gets no (empty) mask
    expected = np.zeros((4, 6), np.uint8)
    expected[0:2, 0:2] = 1
    np.testing.assert_array_equal(store.get("b.png"), expected)


def test_coco_polygon_of_two_points_beside_a_good_part_keeps_the_good_part(tmp_path):
    path = coco_file(tmp_path, [ann(1, segmentation=[[1, 1, 3, 1], [0, 0, 2, 0, 2, 2, 0, 2]])])
    with no_warnings():
        mask = coco_masks(path)["a.png"]
    assert mask.sum() == 4 and mask[0:2, 0:2].all()


def test_coco_box_outside_the_image_or_of_width_zero_is_skipped_with_a_warning(tmp_path):
    path = coco_file(tmp_path, [ann(1, bbox=[10, 1, 2, 2]), ann(2, bbox=[1, 1, 0, 2])])
    with pytest.warns(UserWarning, match=r"2 annotation\(s\) draw no pixel"):
        assert coco_masks(path) == {}


def test_coco_rle_without_bbox_is_decoded(tmp_path):
    # a 3 x 2 mask [[0, 1], [1, 1], [0, 0]]: column-major runs 1 zero, 1 one, 1 zero, 2 ones,
    # 1 zero; compressed (pycocotools 2.0.11 gives the same string) "11110"
    expected = np.array([[0, 1], [1, 1], [0, 0]], np.uint8)
    images = [
        {"id": 1, "file_name": "list.png", "width": 2, "height": 3},
        {"id": 2, "file_name": "string.png", "width": 2, "height": 3},
    ]
    path = coco_file(
        tmp_path,
        [
            ann(1, 1, iscrowd=1, segmentation={"size": [3, 2], "counts": [1, 1, 1, 2, 1]}),
            ann(2, 2, iscrowd=0, segmentation={"size": [3, 2], "counts": "11110"}),
        ],
        images,
    )
    with no_warnings():
        masks = coco_masks(path)
    np.testing.assert_array_equal(masks["list.png"], expected)
    np.testing.assert_array_equal(masks["string.png"], expected)
    # drawn at another size, each image pixel takes the RLE pixel under its centre
    shapes = read_coco(path)["list.png"]
    np.testing.assert_array_equal(shapes.rasterize((6, 4)), expected.repeat(2, 0).repeat(2, 1))


@pytest.mark.parametrize(
    "counts, size",
    [
        ("537O", [17, 1]),  # runs 5, 3, 7, 2: the fourth stored as 2 - 3 = -1 ("O")
        ("T3d0", [12, 10]),  # runs 100, 20: 100 takes two characters ("T3")
    ],
)
def test_decode_rle_compressed_strings_match_pycocotools(counts, size):
    runs = {"537O": [5, 3, 7, 2], "T3d0": [100, 20]}[counts]
    flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)
    expected = flat.reshape(size, order="F")  # runs go down the columns
    np.testing.assert_array_equal(decode_rle({"size": size, "counts": counts}), expected)
    np.testing.assert_array_equal(decode_rle({"size": size, "counts": runs}), expected)


@pytest.mark.parametrize(
    "segmentation, message",
    [
        ({"size": [3, 2], "counts": [1, 1, 1]}, "add up to 3"),  # 3 of 6 pixels
        ({"size": [3, 2], "counts": [7]}, "add up to 7"),
        ({"size": [3, 2], "counts": "1~"}, "not an RLE character"),
        ({"size": [3, 2], "counts": "T"}, "cut off"),  # 'T' says a group follows
        ({"size": [4, 2], "counts": [8]}, r"RLE size \[4, 2\] is not the image's"),
        ({"counts": [6]}, "'size'"),
    ],
)
def test_coco_rle_that_does_not_fill_its_image_is_refused(tmp_path, segmentation, message):
    images = [{"id": 1, "file_name": "a.png", "width": 2, "height": 3}]
    path = coco_file(tmp_path, [ann(1, segmentation=segmentation)], images)
    with pytest.raises(ValueError, match=rf"coco\.json: annotations\[0\].*{message}"):
        coco_masks(path)


def test_coco_rle_with_use_bbox_and_no_bbox_is_skipped_with_a_warning(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "width": 2, "height": 3}]
    path = coco_file(tmp_path, [ann(1, segmentation={"size": [3, 2], "counts": [6]})], images)
    with pytest.warns(UserWarning, match=r"1 annotation\(s\).*no bbox"):
        assert coco_masks(path, use="bbox") == {}
    with pytest.warns(UserWarning, match="RLE mask of no pixel"):  # all zeros
        assert coco_masks(path) == {}


def test_coco_same_file_name_with_two_sizes_is_an_error(tmp_path):
    images = [
        {"id": 1, "file_name": "a.png", "width": 10, "height": 10},
        {"id": 2, "file_name": "a.png", "width": 100, "height": 100},
    ]
    path = coco_file(
        tmp_path, [ann(1, 1, bbox=[0, 0, 2, 2]), ann(2, 2, bbox=[50, 50, 20, 20])], images
    )
    with pytest.raises(ValueError, match=r"coco\.json: images\[\] lists 'a\.png' twice.*10 x 10"):
        MaskStore(tmp_path / "m").import_coco(path)
    images[1].update(width=10, height=10)  # the same size twice is one image: boxes unioned
    path = coco_file(tmp_path, [ann(1, 1, bbox=[0, 0, 2, 2]), ann(2, 2, bbox=[5, 5, 2, 2])], images)
    assert coco_masks(path)["a.png"].sum() == 8


def test_coco_two_file_names_of_one_id_with_two_sizes_is_an_error(tmp_path):
    images = [
        {"id": 1, "file_name": "x/a.png", "width": 10, "height": 10},
        {"id": 2, "file_name": "y/a.png", "width": 20, "height": 20},
    ]
    path = coco_file(tmp_path, [ann(1, 1, bbox=[0, 0, 2, 2]), ann(2, 2, bbox=[0, 0, 2, 2])], images)
    with pytest.raises(ValueError, match=r"'x/a\.png'.*'y/a\.png'.*both become image id 'a'"):
        coco_masks(path, image_id="stem")


# ------------------------------------------------------------ medium: clear COCO errors
@pytest.mark.parametrize(
    "images, annotation, message",
    [
        (None, {"id": 1, "bbox": [0, 0, 2, 2]}, r"annotations\[0\] \(id 1\) has no image_id"),
        (
            [{"id": 1, "width": 6, "height": 4}],
            ann(1, bbox=[0, 0, 2, 2]),
            r"images\[0\].*'file_name'",
        ),
        ([{"file_name": "a.png", "width": 6, "height": 4}], ann(1), r"images\[0\].*\['id'\]"),
    ],
)
def test_coco_without_image_id_file_name_or_id_names_the_entry(
    tmp_path, images, annotation, message
):
    path = coco_file(tmp_path, [annotation], images)
    with pytest.raises(ValueError, match=rf"coco\.json: {message}"):
        coco_masks(path)


@pytest.mark.parametrize(
    "width, bbox, message",
    [
        ("NaN", "[0, 0, 2, 2]", r"images\[0\]: width and height must be finite"),
        ("Infinity", "[0, 0, 2, 2]", r"images\[0\]: width and height must be finite"),
        ("1e999", "[0, 0, 2, 2]", r"images\[0\]: width and height must be finite"),
        ("6.5", "[0, 0, 2, 2]", r"images\[0\]: width and height must be whole numbers"),
        ("6", "[0, NaN, 2, 2]", r"annotations\[0\] \(id 1\): bbox .* must be finite"),
        ("6", "[0, 0, Infinity, 2]", r"annotations\[0\] \(id 1\): bbox .* must be finite"),
        ("6", "[0, 0, -2, 2]", r"annotations\[0\] \(id 1\): bbox .* negative width"),
        ("6", "[0, 0, 2]", r"annotations\[0\] \(id 1\): bbox .* must be 4 numbers"),
    ],
)
def test_coco_nan_or_inf_sizes_and_boxes_name_the_entry(tmp_path, width, bbox, message):
    path = tmp_path / "coco.json"  # written by hand: json.dumps would not write 1e999
    path.write_text(
        '{"images": [{"id": 1, "file_name": "a.png", "width": ' + width + ', "height": 4}],\n'
        ' "annotations": [{"id": 1, "image_id": 1, "bbox": ' + bbox + "}]}"
    )
    with pytest.raises(ValueError, match=rf"coco\.json: {message}"):
        coco_masks(path)


def test_coco_nan_polygon_names_the_annotation(tmp_path):
    path = tmp_path / "coco.json"
    path.write_text(
        '{"images": [{"id": 1, "file_name": "a.png", "width": 6, "height": 4}],'
        ' "annotations": [{"id": 3, "image_id": 1, "segmentation": [[0, 0, 2, NaN, 2, 2]]}]}'
    )
    with pytest.raises(ValueError, match=r"annotations\[0\] \(id 3\): a polygon .* finite"):
        coco_masks(path)


def test_coco_latin1_file_names_file_and_line(tmp_path):
    path = tmp_path / "coco.json"
    text = '{"images": [\n{"id": 1, "file_name": "Röntgen.png", "width": 6, "height": 4}\n]}'
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=r"coco\.json:2: not UTF-8 text \(byte 0xf6\)"):
        read_coco(path)


def test_coco_broken_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "coco.json"
    path.write_text('{"images": [\n  {"id": 1, "file_name": "a.png", "width": 6, "height": 4},\n')
    with pytest.raises(ValueError, match=r"coco\.json:3:1: not valid JSON"):
        read_coco(path)
    path.write_text("[1, 2]")  # JSON, but not a COCO object
    with pytest.raises(ValueError, match=r"coco\.json: a COCO file is a JSON object"):
        read_coco(path)
