"""The annotator's view (agkit.widgets.view): what reaches the browser half, the canvas."""

import numpy as np
from widget_testing import decode_png, grey_images, mouse

from agkit.data.mask_store import MaskStore
from agkit.widgets import MaskAnnotator, box_pixels


def test_canvas_receives_windowed_image_and_exact_overlay(tmp_path):
    image = np.arange(8 * 12, dtype=np.uint16).reshape(8, 12) * 40  # 0 .. 3800
    ann = MaskAnnotator([("r", image)], tmp_path, display_size=48)  # zoom 4x
    shown = np.asarray(decode_png(ann.canvas.image))
    assert shown.shape == (8, 12)  # zoomed in: sent at the image's own size; the browser enlarges
    np.testing.assert_array_equal(shown, np.round(image / 3800 * 255).astype(np.uint8))
    ann.draw_box(2, 1, 5, 3)
    overlay = decode_png(ann.canvas.mask).convert("RGBA")
    alpha = np.asarray(overlay)[..., 3]
    np.testing.assert_array_equal(alpha > 0, box_pixels(2, 1, 5, 3, (8, 12)))
    assert tuple(np.asarray(overlay)[1, 2]) == (255, 60, 40, 110)

    big = MaskAnnotator([("b", np.zeros((400, 200)))], tmp_path / "b", display_size=100)
    assert decode_png(big.canvas.image).size == (50, 100)  # zoomed out: shrunk in the kernel
    assert decode_png(big.canvas.mask).size == (200, 400)  # the mask always at full resolution


def test_polygon_preview_and_brush_radius_reach_the_canvas(tmp_path):
    ann = MaskAnnotator(grey_images((20, 20)), tmp_path, display_size=40)
    ann.tool.value, ann.brush_radius.value = "brush", 3
    assert ann.canvas.tool == "brush" and ann.canvas.radius == 6  # canvas pixels
    ann.tool.value = "polygon"
    mouse(ann, ("down", 4, 4), ("up", 4, 4), ("down", 36, 4), ("up", 36, 4))
    assert ann.canvas.polygon == [[4, 4], [36, 4]]
    ann.tool.value = "box"  # changing tool drops the unfinished polygon
    assert ann.canvas.polygon == []
    ann.canvas._handle_custom_msg({"event": "keydown", "key": "x"}, [])  # not ours: ignored
    ann.canvas._handle_custom_msg("garbage", [])
    assert "img0" not in MaskStore(tmp_path)
