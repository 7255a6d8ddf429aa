"""MaskAnnotator without a browser: mouse events in display coordinates -> exact pixels on disk."""
import numpy as np
import pytest
import torch

from agkit.data.masks import MaskStore
from agkit.widgets import MaskAnnotator, MaskEditor, box_pixels, polygon_pixels, stroke_pixels


def mouse(ann, *events):
    """Feed ("down"|"move"|"up"|"out", x, y) events in as the browser's custom messages do."""
    for kind, x, y in events:
        ann.canvas._handle_custom_msg({"event": f"mouse_{kind}", "x": x, "y": y}, [])


def drag(ann, start, end, steps=4):
    (x0, y0), (x1, y1) = start, end
    moves = [("move", x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps) for k in range(1, steps)]
    mouse(ann, ("down", x0, y0), *moves, ("up", x1, y1))


def on_disk(folder, image_id):
    return MaskStore(folder).get(image_id)  # a fresh store: only what reached the disk


def grey_images(*shapes):
    rng = np.random.default_rng(0)
    return [(f"img{k}", rng.random(shape).astype(np.float32)) for k, shape in enumerate(shapes)]


@pytest.mark.parametrize("shape, display_size, canvas, start, end, box", [
    # (H, W), display size, expected canvas (w, h), drag start/end in display px, expected box x0 y0 x1 y1
    ((40, 60), 120, (120, 80), (20, 10), (40, 30), (10, 5, 20, 15)),    # zoom 2x
    ((64, 48), 32, (24, 32), (15, 12), (5, 3), (10, 6, 30, 24)),        # zoom 0.5x, dragged up-left
    ((30, 70), 100, (100, 43), (20, 10), (50, 30), (14, 7, 35, 21)),    # non-square, x 0.7 / y 30/43
])
def test_box_drag_saves_exact_pixels_at_any_zoom(tmp_path, shape, display_size, canvas, start, end, box):
    ann = MaskAnnotator(grey_images(shape), tmp_path, display_size=display_size)
    assert (ann.canvas.width, ann.canvas.height) == canvas
    drag(ann, start, end)
    expected = np.zeros(shape, np.uint8)
    x0, y0, x1, y1 = box
    expected[y0:y1, x0:x1] = 1
    np.testing.assert_array_equal(on_disk(tmp_path, "img0"), expected)
    provenance = MaskStore(tmp_path).provenance("img0")
    assert provenance["source"] == "drawn" and provenance["tool"] == "agkit.MaskAnnotator box"


def test_brush_and_eraser_pixels_match_hand_computation(tmp_path):
    ann = MaskAnnotator(grey_images((20, 20)), tmp_path, display_size=40)  # 2 display px per pixel
    ann.tool.value, ann.brush_radius.value = "brush", 2
    mouse(ann, ("down", 21, 21), ("up", 21, 21))  # a click at image (10.5, 10.5): a disc
    disc = {(10, j) for j in range(8, 13)} | {(i, j) for i in (9, 11) for j in (9, 10, 11)} | {(8, 10), (12, 10)}
    assert set(map(tuple, np.argwhere(on_disk(tmp_path, "img0")))) == disc

    ann.brush_radius.value = 1
    drag(ann, (9, 9), (17, 9))  # image (4.5, 4.5) -> (8.5, 4.5): a capsule of radius 1
    capsule = {(4, j) for j in range(3, 10)} | {(i, j) for i in (3, 5) for j in range(4, 9)}
    assert set(map(tuple, np.argwhere(on_disk(tmp_path, "img0")))) == disc | capsule
    assert MaskStore(tmp_path).provenance("img0")["tool"] == "agkit.MaskAnnotator brush"

    ann.tool.value = "eraser"
    mouse(ann, ("down", 21, 21), ("up", 21, 21))  # removes the centre and its 4 neighbours
    cross = {(10, 10), (9, 10), (11, 10), (10, 9), (10, 11)}
    assert set(map(tuple, np.argwhere(on_disk(tmp_path, "img0")))) == (disc - cross) | capsule
    assert MaskStore(tmp_path).provenance("img0")["tool"] == "agkit.MaskAnnotator eraser"


def test_stroke_leaving_the_canvas_is_finished_and_clipped(tmp_path):
    ann = MaskAnnotator(grey_images((10, 10)), tmp_path, display_size=10)
    ann.tool.value, ann.brush_radius.value = "brush", 1
    mouse(ann, ("down", 8.5, 5.5), ("move", 9.5, 5.5), ("out", 12.0, 5.5))
    mouse(ann, ("move", 5, 5), ("up", 5, 5))  # moves after the mouse left draw nothing more
    mask = on_disk(tmp_path, "img0")
    assert mask[5, 7:10].all() and mask[[4, 6], 8:10].all() and mask.sum() == 3 + 2 + 2


def test_undo_redo_and_clear_are_saved(tmp_path):
    ann = MaskAnnotator(grey_images((30, 30), (30, 30)), tmp_path, display_size=30)
    ann.draw_box(2, 2, 10, 10)
    ann.paint([(20.5, 20.5)], 3)
    both = ann.current_mask
    ann.undo()
    np.testing.assert_array_equal(on_disk(tmp_path, "img0"), box_pixels(2, 2, 10, 10, (30, 30)))
    ann.undo()  # back to empty: an empty mask means "not annotated", so it is deleted
    assert "img0" not in MaskStore(tmp_path) and "0 / 2 annotated" in ann.progress.value
    ann.redo()
    ann.redo()
    np.testing.assert_array_equal(on_disk(tmp_path, "img0"), both)
    assert "1 / 2 annotated" in ann.progress.value
    ann.clear()
    assert "img0" not in MaskStore(tmp_path) and ann.current_mask.sum() == 0
    ann.undo()  # clear is undoable too
    np.testing.assert_array_equal(on_disk(tmp_path, "img0"), both)


def test_polygon_by_clicks_and_close_button(tmp_path):
    ann = MaskAnnotator(grey_images((20, 20)), tmp_path, display_size=40)

    def button(description):
        (found,) = [b for row in ann.children[:3] for b in row.children if getattr(b, "description", "") == description]
        return found

    ann.tool.value = "polygon"
    for x, y in [(4, 4), (36, 4), (36, 36)]:  # image (2, 2), (18, 2), (18, 18)
        mouse(ann, ("down", x, y), ("up", x, y))
    assert "img0" not in MaskStore(tmp_path)  # nothing saved until the polygon is closed
    mouse(ann, ("down", 5, 5))  # a click next to the first vertex closes it
    expected = polygon_pixels([(2, 2), (18, 2), (18, 18)], (20, 20))
    np.testing.assert_array_equal(on_disk(tmp_path, "img0"), expected)
    # the pixel-centre rule, by hand: pixel (i, j) is covered when 2 < i + 0.5 < j + 0.5 < 18
    assert expected[10, 11] and expected[10, 17] and not expected[10, 9] and not expected[1].any()
    assert 120 <= expected.sum() <= 120 + 16  # strictly inside: 15 + 14 + ... + 1; centres on the diagonal tie

    for x, y in [(0, 20), (20, 0), (40, 40), (20, 20)]:  # a quadrilateral, closed with the button
        mouse(ann, ("down", x, y), ("up", x, y))
    button("Close polygon").click()
    quad = polygon_pixels([(0, 10), (10, 0), (20, 20), (10, 10)], (20, 20))
    np.testing.assert_array_equal(on_disk(tmp_path, "img0"), expected | quad)
    button("Clear").click()
    assert "img0" not in MaskStore(tmp_path) and "deleted" in ann.status.value


def test_resume_navigation_and_existing_masks(tmp_path):
    store = MaskStore(tmp_path)
    images = grey_images((16, 16), (16, 16), (16, 24), (16, 16))
    store.put("img0", box_pixels(0, 0, 4, 4, (16, 16)), source="imported", tool="test")
    store.put("img1", box_pixels(0, 0, 4, 4, (16, 16)), source="imported", tool="test")
    store.put("img3", box_pixels(0, 0, 4, 4, (16, 16)), source="imported", tool="test")
    ann = MaskAnnotator(images, store, display_size=64)
    assert ann.current_index == 2 and ann.current_id == "img2"  # first unannotated
    assert "3 / 4 annotated" in ann.progress.value
    assert (ann.canvas.width, ann.canvas.height) == (64, 43)  # a wider image, aspect kept
    ann.draw_box(0, 0, 2, 2)
    ann.next_unannotated()  # everything is annotated now: stays put and says so
    assert ann.current_index == 2 and "All images are annotated" in ann.status.value

    again = MaskAnnotator(images, tmp_path, display_size=64)  # "kernel restarted": all state from disk
    assert again.current_index == 0 and "4 / 4 annotated" in again.progress.value
    np.testing.assert_array_equal(again.current_mask, box_pixels(0, 0, 4, 4, (16, 16)))
    again.draw_box(8, 8, 12, 12)  # editing an imported mask keeps what was there
    assert on_disk(tmp_path, "img0").sum() == 16 + 16
    assert MaskStore(tmp_path).provenance("img0")["source"] == "drawn"
    again.clear()
    assert MaskAnnotator(images, tmp_path).current_id == "img0"
    again.go_to(3).next_unannotated()
    assert again.current_id == "img0"  # wraps round


def test_accepts_datasets_dicts_tensors_and_rgb(tmp_path):
    class Dataset:  # like SynthFrac / GuidedDataset built from tensors
        image_ids = ["a", "b"]
        images = torch.rand(2, 1, 32, 16)

    ann = MaskAnnotator(Dataset(), tmp_path / "s1", display_size=64)
    assert (ann.canvas.width, ann.canvas.height) == (32, 64) and ann.current_mask.shape == (32, 16)
    rgb = {"x": np.random.default_rng(0).integers(0, 255, (10, 20, 3), dtype=np.uint8)}
    ann = MaskAnnotator(rgb, tmp_path / "s2", display_size=40)
    assert ann.current_mask.shape == (10, 20) and ann.window.value == (rgb["x"].min(), rgb["x"].max())
    with pytest.raises(TypeError, match="image_ids"):
        MaskAnnotator(42, tmp_path / "s3")


def test_window_level_controls(tmp_path):
    image = np.linspace(0, 4095, 50 * 50).reshape(50, 50).astype(np.uint16)  # 12-bit radiograph
    ann = MaskAnnotator([("r", image)], tmp_path)
    assert ann.window.min == 0 and ann.window.max == 4095 and ann.window.value == (0, 4095)
    ann._auto_window()
    lo, hi = ann.window.value
    assert lo == pytest.approx(np.percentile(image, 1), abs=20) and hi == pytest.approx(np.percentile(image, 99), abs=20)
    MaskAnnotator([("flat", np.zeros((8, 8)))], tmp_path)  # a constant image must not divide by zero


def test_corrupt_index_is_reported_and_left_untouched(tmp_path):
    MaskStore(tmp_path).put("img0", box_pixels(0, 0, 3, 3, (8, 8)), source="drawn", tool="test")
    (tmp_path / "index.json").write_text('{"img0": {"source": "dr')  # cut short by a crash
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    ann = MaskAnnotator(grey_images((8, 8)), tmp_path, display_size=16)
    assert "Could not open the mask store" in ann.status.value
    drag(ann, (2, 2), (10, 10))
    assert "Could not open the mask store" in ann.status.value  # the edit is refused, with the reason
    with pytest.raises(RuntimeError, match="mask store"):
        ann.draw_box(0, 0, 2, 2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_truncated_mask_file_is_reported_and_not_overwritten(tmp_path):
    store = MaskStore(tmp_path)
    store.put("img0", box_pixels(0, 0, 3, 3, (8, 8)), source="drawn", tool="test")
    (png,) = tmp_path.rglob("*.png")
    png.write_bytes(png.read_bytes()[:40])
    store.put("img1", box_pixels(0, 0, 5, 5, (8, 8)), source="drawn", tool="test")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    ann = MaskAnnotator(grey_images((8, 8), (8, 8), (8, 8)), tmp_path, display_size=16, start=0)
    assert "Could not read the stored mask of img0" in ann.status.value
    drag(ann, (2, 2), (10, 10))
    assert "Could not read" in ann.status.value and ann.current_mask.sum() == 0
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    ann.go_to(1).draw_box(5, 5, 8, 8)  # the other images still work
    assert on_disk(tmp_path, "img1").sum() == 25 + 9


def test_failed_save_takes_the_edit_back(tmp_path):
    class BrokenStore(MaskStore):
        def put(self, *args, **kwargs):
            raise OSError("disk full")

    ann = MaskAnnotator(grey_images((8, 8)), BrokenStore(tmp_path), display_size=8)
    drag(ann, (1, 1), (5, 5))
    assert "NOT saved" in ann.status.value and "disk full" in ann.status.value
    assert ann.current_mask.sum() == 0 and "img0" not in MaskStore(tmp_path)


def test_editor_rasterisation_rules():
    assert box_pixels(5, 1, 2, 3, (4, 6)).sum() == 3 * 2  # corners in any order: mask[1:3, 2:5]
    assert box_pixels(-3, -3, 2, 2, (4, 4)).sum() == 4  # clipped to the image
    # radius 1 round the centre of pixel (1, 1): it and its 4 edge neighbours, not the corners
    np.testing.assert_array_equal(stroke_pixels([(1.5, 1.5)], 1, (3, 3)),
                                  [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    editor = MaskEditor(np.zeros((4, 4)))
    assert not editor.erase([(1, 1)], 2)  # no change: no history entry
    assert editor.draw_box(0, 0, 2, 2) and editor.undo() and not editor.undo() and editor.redo()
    assert editor.mask.sum() == 4 and editor.mask.dtype == np.uint8
    with pytest.raises(ValueError, match="3 vertices"):
        polygon_pixels([(0, 0), (1, 1)], (4, 4))
