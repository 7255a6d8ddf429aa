"""Diagnostics: worst-group accuracy, wrong-reason scores and the randomisation check."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agkit.analysis import diagnostics
from agkit.data import make_synthfrac
from agkit.method.camnet import CAMNet


def test_group_accuracy_by_hand():
    labels = [0, 0, 0, 1, 1, 1, 1]
    marker = [0, 1, 1, 1, 1, 0, 0]
    predicted = [0, 1, 0, 1, 1, 0, 1]
    table = diagnostics.group_accuracy(predicted, labels, marker)
    groups = table[["label", "confounder", "n"]].values.tolist()
    assert groups == [[0, 0, 1], [0, 1, 2], [1, 0, 2], [1, 1, 2]]
    assert table["accuracy"].tolist() == [1.0, 0.5, 0.5, 1.0]
    assert diagnostics.worst_group_accuracy(predicted, labels, marker) == 0.5
    # a shortcut model ("marker means fractured") gets both off-diagonal groups wrong
    assert diagnostics.worst_group_accuracy(marker, labels, marker) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        diagnostics.group_accuracy([], [], [])


def test_marker_masks_sit_on_the_bright_marker_box_and_off_the_bones():
    data = make_synthfrac(48, seed=0, split="test_shifted", noise=0)
    masks = diagnostics.synthfrac_marker_masks(data)
    has = torch.tensor(data.meta["marker"].to_numpy())
    assert has.any() and (masks[~has] == 0).all()
    assert (masks * data.bone_masks).sum() == 0
    image, box = data.images[has, 0], masks[has, 0]
    # the box's outer rows/columns (the marker's bright rim) against the pixels just outside
    for dim, step in ((1, 1), (1, -1), (2, 1), (2, -1)):
        rim = box * (1 - torch.roll(box, step, dims=dim))  # box pixels whose neighbour is out
        beyond = torch.roll(rim, -step, dims=dim)  # that neighbour
        assert (image * rim).sum() / rim.sum() > 1.5 * (image * beyond).sum() / beyond.sum()


def test_every_corner_masks_cover_each_marker_and_the_empty_corners_of_every_image():
    data = make_synthfrac(48, seed=0, split="test_shifted", noise=0)
    marker = diagnostics.synthfrac_marker_masks(data)
    corners = diagnostics.synthfrac_marker_masks(data, every_corner=True)
    has = torch.tensor(data.meta["marker"].to_numpy())
    assert (~has).any()  # images without a marker get the four boxes as well
    box = max(7, round(0.17 * 64))
    assert (corners.flatten(1).sum(1) == 4 * box * box).all()
    assert (corners == corners[:1]).all()
    assert (marker <= corners).all()  # every marker box is one of the four


def test_attribution_share_by_hand():
    attributions = torch.tensor([[[[1.0, -3.0], [0.0, 0.0]]]])
    region = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])
    assert diagnostics.attribution_share(attributions, region).tolist() == [0.75]


class Pixels(nn.Module):
    out_channels = 1

    def forward(self, x):
        return x


def test_wrong_reason_of_a_model_that_only_reads_one_pixel():
    """CAM: softmax attention on the region; IG: |attribution| on it; both by hand."""
    model = CAMNet("tiny", num_classes=2, in_channels=1)
    model.backbone = Pixels()
    model.classifier = nn.Linear(1, 2)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model.classifier.bias.zero_()
    images = torch.tensor([[[[2.0, 0.0], [0.0, 0.0]]]])
    region = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    scores = diagnostics.wrong_reason(model, images, region, steps=8)
    # CAM of class 0 = the image: softmax (2, 0, 0, 0) puts e^2 / (e^2 + 3) on the region
    assert scores["cam"] == pytest.approx(np.e**2 / (np.e**2 + 3), rel=1e-5)
    # a linear model: IG = x * w / 4, nonzero only on the one bright pixel
    assert scores["ig"] == pytest.approx(1.0) and scores["n"] == 1
    empty = diagnostics.wrong_reason(model, images, torch.zeros_like(region))
    assert empty["n"] == 0 and np.isnan(empty["cam"])


def test_rank_correlation_by_hand():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    b = torch.tensor([[10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    values = diagnostics.rank_correlation(a, b)
    assert values[0] == pytest.approx(1.0) and values[1] == pytest.approx(-1.0)
    assert np.isnan(values[2])


def test_randomization_check_goes_top_down_and_the_cam_decorrelates():
    torch.manual_seed(0)
    model = CAMNet("tiny", num_classes=2, in_channels=1).eval()
    images = make_synthfrac(8, size=32, seed=0).images
    table = diagnostics.randomization_check(model, images, seed=1)
    layers = [name for name, _ in diagnostics.layers_top_down(model)]
    assert table["layer"].tolist() == ["(trained)"] + layers
    assert layers[0] == "classifier" and layers[-1].startswith("backbone.stem")
    assert table["spearman"].iloc[0] == 1.0
    assert table["spearman"].iloc[-1] < 0.5  # every layer new: little of the old map is left
    # the model itself is untouched
    torch.manual_seed(0)
    fresh = CAMNet("tiny", num_classes=2, in_channels=1).eval()
    with torch.no_grad():
        assert torch.equal(model(images).cams, fresh(images).cams)


def test_randomizing_only_the_bias_leaves_the_ranking_alone():
    """The CAM of a class is W_c F + b_c: a new bias shifts it and keeps the order of its cells."""
    torch.manual_seed(0)
    model = CAMNet("tiny", num_classes=2, in_channels=1).eval()
    images = make_synthfrac(4, size=32, seed=0).images
    with torch.no_grad():
        reference = model(images).cams
        model.classifier.bias.add_(5.0)
        shifted = model(images).cams
    assert np.allclose(diagnostics.rank_correlation(reference[:, 0], shifted[:, 0]), 1.0)
    assert torch.allclose(
        F.softmax(reference.flatten(2), 2), F.softmax(shifted.flatten(2), 2), atol=1e-6
    )
