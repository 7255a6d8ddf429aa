"""What the annotator annotates (agkit.widgets.images): datasets, dicts, pairs, lists of
arrays or tensors, each read by the kit's one reader."""

import numpy as np
import pytest
import torch
from widget_testing import decode_png, on_disk

from agkit.widgets import MaskAnnotator


def test_accepts_datasets_dicts_tensors_and_rgb(tmp_path):
    class Dataset:  # like SynthFrac / GuidedDataset built from tensors
        image_ids = ["a", "b"]
        images = torch.rand(2, 1, 32, 16)

    ann = MaskAnnotator(Dataset(), tmp_path / "s1", display_size=64)
    assert (ann.canvas.width, ann.canvas.height) == (32, 64) and ann.current_mask.shape == (32, 16)
    rgb = {"x": np.random.default_rng(0).integers(0, 255, (10, 20, 3), dtype=np.uint8)}
    ann = MaskAnnotator(rgb, tmp_path / "s2", display_size=40)
    assert ann.current_mask.shape == (10, 20)
    # values are read by agkit.data.io.to_array: uint8 / 255
    assert ann.window.value == pytest.approx((rgb["x"].min() / 255, rgb["x"].max() / 255))
    with pytest.raises(TypeError, match="image_ids"):
        MaskAnnotator(42, tmp_path / "s3")


def test_accepts_lists_of_arrays_tensors_guided_datasets_and_synthfrac(tmp_path):
    from agkit.data import GuidedDataset, make_synthfrac

    arrays = [np.zeros((6, 8)), torch.zeros(1, 10, 4), np.zeros((5, 5, 3), np.uint8)]
    ann = MaskAnnotator(arrays, tmp_path / "a", display_size=20)
    assert ann.image_ids == ["0", "1", "2"] and ann.current_mask.shape == (6, 8)
    assert ann.go_to(1).current_mask.shape == (10, 4) and ann.go_to(2).current_mask.shape == (5, 5)
    ann = MaskAnnotator(arrays, tmp_path / "b", image_ids=["p", "q", "r"])
    assert ann.image_ids == ["p", "q", "r"]
    ann.go_to("q").draw_box(0, 0, 2, 2)
    assert on_disk(tmp_path / "b", "q").shape == (10, 4)
    stacked = torch.rand(3, 1, 12, 9)
    ann = MaskAnnotator(stacked, tmp_path / "c")
    assert ann.image_ids == ["0", "1", "2"] and ann.current_mask.shape == (12, 9)

    synth = make_synthfrac(3, size=32, seed=0)
    ann = MaskAnnotator(synth, tmp_path / "d", display_size=64)
    assert ann.image_ids == synth.image_ids and ann.current_mask.shape == (32, 32)
    shown = np.asarray(decode_png(ann.canvas.image))
    expected = synth.images[0, 0].numpy()
    lo, hi = expected.min(), expected.max()
    windowed = np.round((expected - lo) / (hi - lo) * 255).astype(np.uint8)
    np.testing.assert_array_equal(shown, windowed)

    # a GuidedDataset is annotated at its images' own size, not its training size
    guided = GuidedDataset(torch.rand(2, 1, 24, 16), [0, 1], image_ids=["u", "v"], size=8)
    ann = MaskAnnotator(guided, tmp_path / "e", start="v")
    assert ann.image_ids == ["u", "v"] and ann.current_mask.shape == (24, 16)

    with pytest.raises(ValueError, match="2 image_ids for 3"):
        MaskAnnotator(arrays, tmp_path / "f", image_ids=["x", "y"])
    with pytest.raises(ValueError, match="unique"):
        MaskAnnotator([np.zeros((4, 4))] * 2, tmp_path / "f", image_ids=["x", "x"])
    with pytest.raises(ValueError, match="leave image_ids out"):
        MaskAnnotator(synth, tmp_path / "f", image_ids=["a", "b", "c"])
    with pytest.raises(ValueError, match="H x W"):
        MaskAnnotator([np.zeros((2, 3, 4, 5))], tmp_path / "f")
    with pytest.raises(ValueError, match=r"pass \[image\]"):
        MaskAnnotator(np.zeros((8, 8)), tmp_path / "f")
    with pytest.raises(TypeError, match="GuidedDataset"):
        MaskAnnotator("images/", tmp_path / "f")
