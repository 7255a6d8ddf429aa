"""MaskAnnotator without a browser: mouse events in display coordinates -> exact pixels on disk."""

from pathlib import Path

import faults
import numpy as np
import pytest
from widget_testing import drag, grey_images, mouse, on_disk

from agkit.data.mask_store import MaskStore
from agkit.widgets import MaskAnnotator, box_pixels, polygon_pixels

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "shape, display_size, canvas, start, end, box",
    [
        # (H, W), display size, expected canvas (w, h), drag start/end in display px,
        # expected box x0 y0 x1 y1
        ((40, 60), 120, (120, 80), (20, 10), (40, 30), (10, 5, 20, 15)),  # zoom 2x
        ((64, 48), 32, (24, 32), (15, 12), (5, 3), (10, 6, 30, 24)),  # zoom 0.5x, dragged up-left
        ((30, 70), 100, (100, 43), (20, 10), (50, 30), (14, 7, 35, 21)),  # x 0.7 / y 30/43
    ],
)
def test_box_drag_saves_exact_pixels_at_any_zoom(
    tmp_path, shape, display_size, canvas, start, end, box
):
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
    disc = (
        {(10, j) for j in range(8, 13)}
        | {(i, j) for i in (9, 11) for j in (9, 10, 11)}
        | {(8, 10), (12, 10)}
    )
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
        (found,) = [
            b
            for row in ann.children[:3]
            for b in row.children
            if getattr(b, "description", "") == description
        ]
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
    # strictly inside: 15 + 14 + ... + 1; centres on the diagonal tie
    assert 120 <= expected.sum() <= 120 + 16

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

    # "kernel restarted": all state from disk
    again = MaskAnnotator(images, tmp_path, display_size=64)
    assert again.current_index == 0 and "4 / 4 annotated" in again.progress.value
    np.testing.assert_array_equal(again.current_mask, box_pixels(0, 0, 4, 4, (16, 16)))
    again.draw_box(8, 8, 12, 12)  # editing an imported mask keeps what was there
    assert on_disk(tmp_path, "img0").sum() == 16 + 16
    assert MaskStore(tmp_path).provenance("img0")["source"] == "drawn"
    again.clear()
    assert MaskAnnotator(images, tmp_path).current_id == "img0"
    again.go_to(3).next_unannotated()
    assert again.current_id == "img0"  # wraps round


def test_window_level_controls(tmp_path):
    image = np.linspace(0, 4095, 50 * 50).reshape(50, 50).astype(np.uint16)  # 12-bit radiograph
    ann = MaskAnnotator([("r", image)], tmp_path)
    # 16-bit values are scaled by the image's own range (agkit.data.image_scale):
    # 0 .. 4095 -> 0 .. 1
    assert ann.window.min == 0 and ann.window.max == 1 and ann.window.value == (0, 1)
    ann._auto_window()
    lo, hi = ann.window.value
    assert lo == pytest.approx(np.percentile(image, 1) / 4095, abs=0.005)
    assert hi == pytest.approx(np.percentile(image, 99) / 4095, abs=0.005)
    MaskAnnotator([("flat", np.zeros((8, 8)))], tmp_path)  # a constant image: no division by 0


def test_corrupt_index_is_reported_and_left_untouched(tmp_path):
    MaskStore(tmp_path).put("img0", box_pixels(0, 0, 3, 3, (8, 8)), source="drawn", tool="test")
    (tmp_path / "index.json").write_text('{"img0": {"source": "dr')  # cut short by a crash
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    ann = MaskAnnotator(grey_images((8, 8)), tmp_path, display_size=16)
    assert "Could not open the mask store" in ann.status.value
    drag(ann, (2, 2), (10, 10))
    # the edit is refused, with the reason
    assert "Could not open the mask store" in ann.status.value
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


@pytest.mark.parametrize("case", ["new_mask", "overwrite", "clear"])
def test_disk_full_on_index_write_message_is_true(tmp_path, monkeypatch, case):
    """index.json cannot be written: the widget says "NOT saved ... taken back", and it is so."""

    old = box_pixels(0, 0, 3, 3, (8, 8))
    if case != "new_mask":
        MaskStore(tmp_path).put("img0", old, source="drawn", tool="test")
    ann = MaskAnnotator(grey_images((8, 8)), tmp_path, display_size=8)

    def files():  # the lock file appears with the first write and holds nothing
        return {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != ".index.json.lock"}

    before = files()
    faults.index_write_fails(monkeypatch)
    if case == "clear":
        (clear,) = [
            b
            for row in ann.children[:3]
            for b in row.children
            if getattr(b, "description", "") == "Clear"
        ]
        clear.click()
    else:
        drag(ann, (4, 4), (7, 7))  # the box mask[4:7, 4:7]
    assert "NOT saved" in ann.status.value and "taken back" in ann.status.value
    assert "No space left on device" in ann.status.value
    # what the message says holds: the editor, the open store and the files are as before
    expected = np.zeros((8, 8), np.uint8) if case == "new_mask" else old
    np.testing.assert_array_equal(ann.current_mask, expected)
    assert files() == before
    assert ann.store.annotated_ids() == ([] if case == "new_mask" else ["img0"])
    assert ann.store.annotated_ids() == MaskStore(tmp_path).annotated_ids()
    assert f"{0 if case == 'new_mask' else 1} / 1 annotated" in ann.progress.value


def test_colab_widget_manager_is_enabled_by_the_kit(tmp_path, fake_colab, monkeypatch):
    from agkit.course import colab
    from agkit.widgets import annotator

    asked = []
    monkeypatch.setattr(
        annotator, "enable_widget_manager", lambda: asked.append(1) or colab.enable_widget_manager()
    )
    MaskAnnotator(grey_images((8, 8)), tmp_path, display_size=16)
    # agkit.course.colab's one switch is used (anywidget may ask Colab again by itself)
    assert asked == [1] and ("enable_custom_widget_manager",) in fake_colab.calls


def test_no_widget_manager_call_outside_colab(tmp_path, not_colab):
    ann = MaskAnnotator(grey_images((8, 8)), tmp_path, display_size=16)
    assert ann.current_mask.shape == (8, 8)  # built without touching google.colab


# ----------------------------------------------------------------------------- bad input (issue 9)
def test_go_to_takes_only_valid_indices_or_ids(tmp_path):
    ann = MaskAnnotator(grey_images((8, 8), (8, 8), (8, 12)), tmp_path, display_size=16)
    ann.go_to(1)
    state = (ann.current_index, ann.position.value, ann.canvas.image, ann.canvas.width)
    bad = [
        (True, TypeError),
        (np.bool_(False), TypeError),
        (1.0, TypeError),
        ("1", ValueError),
        ("img9", ValueError),
        (3, IndexError),
        (-1, IndexError),
        (np.int64(7), IndexError),
        (None, TypeError),
        ([2], TypeError),
    ]
    for index, error in bad:
        with pytest.raises(error, match="image"):
            ann.go_to(index)
        assert (ann.current_index, ann.position.value, ann.canvas.image, ann.canvas.width) == state
    assert ann.go_to(np.int64(2)).current_id == "img2" and ann.canvas.width == 16
    assert ann.go_to("img0").current_index == 0
    assert MaskAnnotator(grey_images((8, 8), (8, 8)), tmp_path, start="img1").current_index == 1
    with pytest.raises(TypeError, match="index"):
        MaskAnnotator(grey_images((8, 8)), tmp_path, start=0.0)
    assert list(tmp_path.iterdir()) == []  # nothing was saved


@pytest.mark.parametrize(
    "call",
    [
        lambda a: a.paint([(4, 4)], 0.5),
        lambda a: a.erase([(2, 2)], 0),
        lambda a: a.paint([(4, 4)], -2),
        lambda a: a.paint([(4, 4)], float("nan")),
        lambda a: a.paint([(4, 4)], float("inf")),
        lambda a: a.paint([(4, 4)], True),
        lambda a: a.paint([(4, 4), (float("nan"), 3)], 2),
        lambda a: a.draw_box(0, 0, np.inf, 4),
        lambda a: a.draw_box(float("nan"), 0, 4, 4),
        lambda a: a.fill_polygon([(0, 0), (4, 0), (4, -np.inf)]),
        lambda a: a.erase([(np.nan, np.nan)], 2),
    ],
)
def test_bad_radius_or_coordinates_are_rejected_and_nothing_is_saved(tmp_path, call):
    store = MaskStore(tmp_path)
    store.put("img0", box_pixels(1, 1, 3, 3, (8, 8)), source="imported", tool="test")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    ann = MaskAnnotator(grey_images((8, 8)), tmp_path, display_size=16, start=0)
    with pytest.raises(ValueError, match="radius|finite"):
        call(ann)
    np.testing.assert_array_equal(ann.current_mask, box_pixels(1, 1, 3, 3, (8, 8)))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    # the rejected call left no history entry: undo has nothing to take back
    np.testing.assert_array_equal(ann.undo(), box_pixels(1, 1, 3, 3, (8, 8)))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_nonfinite_mouse_positions_are_reported_and_save_nothing(tmp_path):
    ann = MaskAnnotator(grey_images((8, 8)), tmp_path, display_size=16)
    mouse(ann, ("down", 2, 2), ("move", float("nan"), 4), ("up", 10, 10))
    assert "finite" in ann.status.value and "img0" not in MaskStore(tmp_path)
    ann.tool.value = "brush"
    mouse(ann, ("down", 2, 2), ("move", 4, 4), ("up", float("inf"), 4))
    assert "finite" in ann.status.value and "img0" not in MaskStore(tmp_path)
    mouse(ann, ("down", None, 4), ("up", 4, 4))
    assert "numbers" in ann.status.value and "img0" not in MaskStore(tmp_path)
    mouse(ann, ("down", 2, 2), ("up", 2, 2))  # the widget still works after the bad events
    assert on_disk(tmp_path, "img0").sum() > 0
    with pytest.raises(ValueError, match="brush radius"):
        MaskAnnotator(grey_images((8, 8)), tmp_path, brush_radius=0)


# ----------------------------------------------------------------------------- a ranking to follow
def test_next_unannotated_follows_the_given_order(tmp_path):
    images = grey_images(*[(8, 8)] * 6)
    MaskStore(tmp_path).put("img4", box_pixels(0, 0, 2, 2, (8, 8)), source="drawn", tool="test")
    ann = MaskAnnotator(images, tmp_path, display_size=16, order=[4, 1, np.int64(5), 2])
    assert ann.current_index == 1  # the first unannotated image of the ranking, not img0
    visited = [ann.current_index]
    for _ in range(3):
        ann.draw_box(0, 0, 3, 3)
        ann.next_unannotated()
        visited.append(ann.current_index)
    assert visited == [1, 5, 2, 2] and "in the given order are annotated" in ann.status.value
    MaskStore(tmp_path).delete("img5")
    again = MaskAnnotator(images, tmp_path, order=["img5", 3])  # ids work too
    assert again.current_index == 5 and again.next_unannotated().current_index == 3
    assert again.go_to(0).next_unannotated().current_index == 5
    for order, error in [
        ([1, 1], ValueError),
        ([7], IndexError),
        ([1.0], TypeError),
        ([], ValueError),
        (3, TypeError),
    ]:
        with pytest.raises(error):
            MaskAnnotator(images, tmp_path, order=order)
