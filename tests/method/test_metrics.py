"""Classification and attention metrics against hand-made cases."""

import math

import numpy as np
import pytest
import torch

from agkit.method import cams as cam
from agkit.method import metrics


def test_classification_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45]])
    scores = metrics.classification_metrics(labels, probs)
    # predictions 0 0 1 1 0: TN=2 FP=1 TP=1 FN=1
    assert scores["accuracy"] == pytest.approx(3 / 5)
    assert scores["sensitivity"] == pytest.approx(1 / 2)
    assert scores["specificity"] == pytest.approx(2 / 3)
    assert scores["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # positive scores .8 and .45 against negatives .1 .4 .7: pairs won 3 + 2 = 5 of 6
    assert scores["auc"] == pytest.approx(5 / 6)
    assert scores["confusion"].tolist() == [[2, 1], [1, 1]]


def test_auc_is_nan_with_one_class():
    scores = metrics.classification_metrics([1, 1], [[0.2, 0.8], [0.4, 0.6]])
    assert math.isnan(scores["auc"]) and scores["accuracy"] == 1.0


def test_mass_in_mask_by_hand():
    cams = torch.zeros(1, 2, 2, 2)
    cams[0, 1] = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).log()
    masks = torch.zeros(1, 1, 4, 4)
    masks[0, 0, 2:, :] = 1  # bottom row of the grid
    assert metrics.mass_in_mask(cams, masks, torch.tensor([1])).item() == pytest.approx(0.7)
    assert metrics.mass_in_mask(cams, masks, torch.tensor([0])).item() == pytest.approx(0.5)


def test_pointing_game_and_iou():
    cams = torch.full((2, 1, 4, 4), -5.0)
    cams[:, 0, 1, 1] = 5.0  # a single hot cell near the top-left
    masks = torch.zeros(2, 1, 16, 16)
    masks[0, 0, 2:10, 2:10] = 1  # contains the peak
    masks[1, 0, 10:, 10:] = 1  # does not
    labels = torch.zeros(2, dtype=torch.long)
    assert metrics.pointing_game(cams, masks, labels).tolist() == [True, False]
    iou = metrics.cam_iou(cams, masks, labels)
    region = cam.cam_at_input(cams, labels, 16)[0, 0] >= 0.5
    truth = masks[0, 0] > 0
    assert iou[0].item() == pytest.approx(((region & truth).sum() / (region | truth).sum()).item())
    assert iou[1].item() == 0.0


def test_overlay_is_grayscale_safe_rgb():
    image = torch.linspace(0, 1, 32 * 48).view(1, 32, 48)
    heat = torch.zeros(4, 6)
    rgb = cam.overlay(image, heat, alpha=0.0)
    assert rgb.shape == (32, 48, 3)
    np.testing.assert_allclose(rgb[..., 0], image[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(rgb[..., 0], rgb[..., 2])
    hot = cam.overlay(image, torch.ones(4, 6) * torch.arange(6.0), alpha=1.0)
    assert hot[:, -1, 0].mean() > hot[:, 0, 0].mean()  # jet: high values are red


def test_normalize_maps_each_cam_to_unit_range():
    cams = torch.randn(3, 2, 5, 5) * 7 + 3
    normal = cam.normalize(cams)
    assert torch.allclose(normal.flatten(2).min(2).values, torch.zeros(3, 2))
    assert torch.allclose(normal.flatten(2).max(2).values, torch.ones(3, 2))
