"""YOLO imports (agkit.data.annotation_yolo): no silent empty masks, clear errors.

Every import refuses (a ValueError naming the file and the annotation or line) or warns
(with the count and the file) on an annotation it cannot turn into a non-empty mask.
"""

import pytest

from agkit.data.annotation_yolo import read_yolo, yolo_classes
from agkit.data.mask_exchange import yolo_masks
from agkit.data.mask_store import MaskStore


def test_yolo_box_in_pixel_coordinates_is_refused(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "img.txt").write_text("0 0.5 0.5 0.2 0.2\n0 5 5 4 4\n")
    with pytest.raises(ValueError, match=r"img\.txt:2: YOLO coordinates are normalised"):
        yolo_masks(labels, {"img": (10, 10)})
    (labels / "img.txt").write_text("0 0.1 0.1 0.9 0.1 0.5 -0.2\n")  # a polygon too
    with pytest.raises(ValueError, match=r"img\.txt:1: YOLO coordinates are normalised"):
        read_yolo(labels / "img.txt")


def test_yolo_box_of_no_area_is_skipped_with_a_warning(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("0 0.5 0.5 0 0.2\n0 0.1 0.1 0.5 0.5 0.9 0.9\n")  # collinear
    (labels / "b.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    with pytest.warns(UserWarning, match=r"a\.txt: 2 annotation\(s\) draw no pixel.*line 1"):
        masks = yolo_masks(labels, {"a": (10, 10), "b": (10, 10)})
    assert list(masks) == ["b"] and masks["b"].sum() == 25


def test_yolo_box_too_small_for_the_image_is_skipped_with_a_warning(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("0 0.51 0.51 0.02 0.02\n")  # 0.2 px of a 10 x 10 image
    store = MaskStore(tmp_path / "m")
    with pytest.warns(UserWarning, match=r"labels: the shapes of 1 label file\(s\).*a\.txt"):
        assert store.import_yolo(labels, {"a": (10, 10)}) == []
    assert len(store) == 0


def test_yolo_two_files_of_one_id_is_an_error(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (labels / "b.txt").write_text("0 0.2 0.2 0.2 0.2\n")
    with pytest.raises(ValueError, match=r"a\.txt and .*b\.txt both become image id 'x'"):
        yolo_masks(labels, {"x": (10, 10)}, image_id=lambda stem: "x")


# ------------------------------------------------------------ medium: clear YOLO errors
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_yolo_nan_or_inf_names_file_and_line(tmp_path, value):
    path = tmp_path / "img.txt"
    path.write_text(f"0 0.5 0.5 0.2 0.2\n\n0 0.5 {value} 0.2 0.2\n")
    with pytest.raises(ValueError, match=r"img\.txt:3: NaN or inf"):
        read_yolo(path)
    with pytest.raises(ValueError, match=r"img\.txt:3: NaN or inf"):
        yolo_classes(path)


def test_yolo_class_that_is_not_a_whole_number_names_file_and_line(tmp_path):
    path = tmp_path / "img.txt"
    path.write_text("0 0.5 0.5 0.2 0.2\n2.5 0.5 0.5 0.2 0.2\n")
    with pytest.raises(ValueError, match=r"img\.txt:2: the class must be a whole number"):
        read_yolo(path, classes=[2])


def test_yolo_non_utf8_file_names_file_and_line(tmp_path):
    path = tmp_path / "img.txt"
    path.write_bytes(b"0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2 \xff\xfe\n")
    with pytest.raises(ValueError, match=r"img\.txt:2: not UTF-8 text \(byte 0xff\)"):
        read_yolo(path)
    with pytest.raises(ValueError, match=r"img\.txt:2: not UTF-8"):
        yolo_classes(path)
