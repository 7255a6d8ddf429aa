"""agkit.data.shapes: the rasterisers and masks -> boxes/polygons, pixel by pixel."""

import numpy as np
import pytest
from scipy import ndimage
from toy_images import square

from agkit.data.shapes import (
    mask_to_boxes,
    mask_to_polygons,
    rasterize_boxes,
    rasterize_discs,
    rasterize_polygons,
    rasterize_strokes,
)


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
