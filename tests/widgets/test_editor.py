"""The editing model (agkit.widgets.editor): its rasterisation rules are the kit's."""

import numpy as np
import pytest

from agkit.widgets import MaskEditor, box_pixels, polygon_pixels, stroke_pixels


def test_editor_rasterisation_rules():
    assert box_pixels(5, 1, 2, 3, (4, 6)).sum() == 3 * 2  # corners in any order: mask[1:3, 2:5]
    assert box_pixels(-3, -3, 2, 2, (4, 4)).sum() == 4  # clipped to the image
    # radius 1 round the centre of pixel (1, 1): it and its 4 edge neighbours, not the corners
    np.testing.assert_array_equal(
        stroke_pixels([(1.5, 1.5)], 1, (3, 3)), [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    )
    editor = MaskEditor(np.zeros((4, 4)))
    assert not editor.erase([(1, 1)], 2)  # no change: no history entry
    assert editor.draw_box(0, 0, 2, 2) and editor.undo() and not editor.undo() and editor.redo()
    assert editor.mask.sum() == 4 and editor.mask.dtype == np.uint8
    with pytest.raises(ValueError, match="3 vertices"):
        polygon_pixels([(0, 0), (1, 1)], (4, 4))


def test_editor_uses_the_kits_pixel_convention():
    from agkit.data.shapes import rasterize_polygons

    # pixel centres on a polygon's left/top edges are in, on its right/bottom edges out
    # (agkit.data.shapes): the square with corners (0.5, 0.5), (2.5, 2.5) holds pixels [0:2, 0:2]
    square = [(0.5, 0.5), (2.5, 0.5), (2.5, 2.5), (0.5, 2.5)]
    expected = np.zeros((4, 4), bool)
    expected[0:2, 0:2] = True
    np.testing.assert_array_equal(polygon_pixels(square, (4, 4)), expected)
    np.testing.assert_array_equal(rasterize_polygons([np.ravel(square)], (4, 4)) > 0, expected)
    editor = MaskEditor(np.zeros((4, 4)))
    editor.fill_polygon(square)
    np.testing.assert_array_equal(editor.mask, expected)
