"""The simulated annotator (agkit.widgets.simulated): boxes and brush strokes as a person draws."""

import numpy as np
import pytest

from agkit.data.mask_store import MaskStore
from agkit.widgets import MaskAnnotator
from agkit.widgets.simulated import gestures, simulate_annotator, simulated_mask


def slanted_bar(shape=(48, 48), width=5, offset=0):
    """A bone-like bar along the diagonal, ``width`` pixels across."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    bar = np.abs((ys - xs - offset) / np.sqrt(2)) <= width / 2
    return (bar & (xs > 6) & (xs < 42)).astype(np.uint8)


def iou(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return (a & b).sum() / (a | b).sum()


def test_a_fractured_image_gets_its_box_and_no_more_without_jitter():
    truth = np.zeros((32, 32), np.uint8)
    truth[10:14, 5:20] = 1
    truth[14, 7] = 1
    moves = gestures(truth, 1, np.random.default_rng(0), jitter=0)
    assert moves == [("box", 5, 10, 20, 15)]
    drawn = simulated_mask(truth, 1, np.random.default_rng(0), jitter=0)
    assert drawn.sum() == 15 * 5 and drawn[10:15, 5:20].all()


def test_jitter_moves_the_corners_by_at_most_its_pixels():
    truth = np.zeros((32, 32), np.uint8)
    truth[10:20, 10:20] = 1
    rng = np.random.default_rng(1)
    for _ in range(50):
        (_, *corners), *_ = gestures(truth, 1, rng, jitter=3)
        assert np.abs(np.array(corners) - [10, 10, 20, 20]).max() <= 3


def test_a_normal_bone_is_painted_along_its_length_about_as_wide_as_it_is():
    bar = slanted_bar()
    moves = gestures(bar, 0, np.random.default_rng(0), jitter=0)
    assert len(moves) == 1 and moves[0][0] == "stroke"
    _, points, radius = moves[0]
    assert radius == pytest.approx(2.5, abs=0.8)  # half of a 5-pixel bone
    drawn = simulated_mask(bar, 0, np.random.default_rng(0), jitter=0)
    assert iou(drawn, bar) > 0.75
    assert 0.8 < drawn.sum() / bar.sum() < 1.3


def test_every_bone_gets_its_own_stroke_and_nothing_marks_nothing():
    two = np.maximum(slanted_bar(offset=-12), slanted_bar(offset=12))
    assert len(gestures(two, 0, np.random.default_rng(0))) == 2
    assert iou(simulated_mask(two, 0, np.random.default_rng(0), jitter=1), two) > 0.6
    assert gestures(np.zeros((8, 8)), 0, np.random.default_rng(0)) == []
    assert gestures(np.zeros((8, 8)), 1, np.random.default_rng(0)) == []


def test_the_simulated_annotator_saves_through_the_widget_and_spares_drawn_masks(tmp_path):
    truth = np.stack([slanted_bar(), slanted_bar(offset=6), slanted_bar(offset=-6)])[:, None]
    truth[1, 0] = 0
    truth[1, 0, 20:26, 20:30] = 1  # image 1 is fractured: its break
    labels = [0, 1, 0]
    images = [(f"img{k}", np.full((48, 48), 0.5, np.float32)) for k in range(3)]
    store = MaskStore(tmp_path)
    widget = MaskAnnotator(images, store)
    widget.go_to(2)
    widget.draw_box(0, 0, 4, 4)  # a person already marked image 2
    marked = simulate_annotator(widget, truth, labels, order=[1, 2, 0], n=2, jitter=0)
    assert marked == 1  # image 1 only: image 2 had a mask, image 0 is beyond n
    fresh = MaskStore(tmp_path)  # what reached the disk
    assert sorted(fresh.annotated_ids()) == ["img1", "img2"]
    assert fresh.get("img1")[20:26, 20:30].all() and fresh.get("img1").sum() == 60
    assert fresh.get("img2").sum() == 16  # untouched
    assert fresh.provenance("img1")["tool"].endswith("box")  # saved as the mouse saves


@pytest.mark.parametrize(
    "n, jitter, message",
    [
        (-1, 2, "n must be a whole number >= 0 .* got -1"),  # order[:-1] marked all but one
        (2.5, 2, "n must be a whole number >= 0 .* got 2.5"),
        (2, -2, "jitter must be a finite number >= 0 .* got -2"),
        (2, float("nan"), "jitter must be a finite number >= 0 .* got nan"),
    ],
)
def test_a_bad_count_or_jitter_is_named_and_nothing_is_drawn(n, jitter, message, tmp_path):
    images = [(f"img{k}", np.full((48, 48), 0.5, np.float32)) for k in range(3)]
    store = MaskStore(tmp_path)
    widget = MaskAnnotator(images, store)
    truth = np.stack([slanted_bar()] * 3)[:, None]
    with pytest.raises(ValueError, match=message):
        simulate_annotator(widget, truth, [0, 0, 0], order=[0, 1, 2], n=n, jitter=jitter)
    assert len(MaskStore(tmp_path)) == 0


@pytest.mark.slow
def test_the_benchmark_trains_notebook_3s_runs_on_what_the_annotator_drew(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "simulated_annotator", root / "benchmarks" / "simulated_annotator.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "simulated.json"
    runs = tmp_path / "runs"
    results = bench.main(
        ["--profile", "ci", "--seeds", "0", "--n", "8", "--jobs", "1", "--runs-dir", str(runs)]
        + ["--json", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    store = MaskStore(runs / "simulated-balanced" / "annotations" / "synthfrac-ci-seed0")
    assert len(store) == 8  # the annotator's masks, where notebook 3 looks for them
    seed = results["seeds"]["0"] if "0" in results["seeds"] else results["seeds"][0]
    assert 0.3 < seed["iou_drawn"] < 1  # boxes and strokes: close to the masks, not exact
    assert 0 <= seed["iou_proposed"] <= 1
