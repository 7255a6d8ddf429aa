"""How well the network classifies, and where it looks.

Classification metrics come from scikit-learn. The attention metrics (docs/method.md) score
the CAM of the *predicted* class against the guidance mask:

* mass in mask: the share of the softmax attention A_c inside the mask (1 = all inside);
* pointing game: whether the CAM's maximum, at input resolution, falls inside the mask;
* IoU: overlap of the thresholded, normalised, upsampled CAM with the mask.

A score means little without its chance level: a mask that covers a fifth of the image
catches a fifth of a uniform attention map. ``mass_in_mask_chance`` and
``pointing_game_chance`` give that level per image (the mask's share of the positions),
and ``random_cam_baseline`` scores CAMs of pure noise, the level a network reaches by
looking nowhere in particular. ``chance_levels`` collects both for a set of masks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from sklearn import metrics as skm

from agkit.analysis.claims import CHANCE_MARGIN
from agkit.method import cams as cam_utils
from agkit.method.loss import attention_loss_floor, shrink_masks  # noqa: F401 (shown with the metrics)


def classification_metrics(labels: ArrayLike, probs: ArrayLike) -> dict[str, Any]:
    """Scores of predicted class probabilities.

    Args:
        labels: n true classes (int).
        probs: n x N predicted probabilities (rows sum to 1).

    Returns:
        dict with accuracy, balanced_accuracy, auc (ROC AUC; one-vs-rest for N > 2; NaN
        when only one class is present), confusion (N x N array, rows = truth) and, for
        two classes, sensitivity (recall of class 1) and specificity (recall of class 0).
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    num_classes = probs.shape[1]
    predicted = probs.argmax(axis=1)
    with warnings.catch_warnings():
        # one class in labels and predictions (a tiny split): the score is still the recall
        # of that class, and scikit-learn's warning about the confusion matrix's shape
        # concerns a matrix we build below with every class
        warnings.filterwarnings("ignore", message="A single label was found")
        balanced = skm.balanced_accuracy_score(labels, predicted)
    scores = {
        "accuracy": skm.accuracy_score(labels, predicted),
        "balanced_accuracy": balanced,
        "confusion": skm.confusion_matrix(labels, predicted, labels=list(range(num_classes))),
    }
    if len(np.unique(labels)) < 2:
        scores["auc"] = float("nan")
    elif num_classes == 2:
        scores["auc"] = skm.roc_auc_score(labels, probs[:, 1])
    else:
        scores["auc"] = skm.roc_auc_score(
            labels, probs, multi_class="ovr", labels=list(range(num_classes))
        )
    if num_classes == 2:
        recall = skm.recall_score(
            labels, predicted, labels=[0, 1], average=None, zero_division=np.nan
        )
        scores["specificity"], scores["sensitivity"] = float(recall[0]), float(recall[1])
    return {
        k: (float(v) if isinstance(v, (int, float, np.number)) else v) for k, v in scores.items()
    }


def region_coverage(region: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The share of each CAM cell covered by a pixel region.

    region: B x 1 x H x W, values 0/1.  size: (h, w), the CAM grid.
    Returns B x 1 x h x w in [0, 1]: for each cell, the fraction of its pixels inside the
    region (an area average, exact when H and W are multiples of h and w). Unlike a
    nearest-neighbour shrink it never loses a region smaller than a cell.
    """
    if not region.is_floating_point():
        region = region.float()
    return F.adaptive_avg_pool2d(region, (int(size[0]), int(size[1])))


def attention_mass(
    cams: torch.Tensor, region: torch.Tensor, cells: str = "touched", resolution: str = "feature"
) -> torch.Tensor:
    """Share of each class map's softmax attention that falls on a region: B x N in [0, 1].

    cams: B x N x h x w raw CAMs. region: B x 1 x H x W 0/1 (a mask, or a confounder).
    cells: how the region sits on the h x w grid. "touched": a cell counts whole when the
    region touches it (``shrink_masks``, as in the paper's loss); "area": each cell counts
    by the share of its pixels in the region (``region_coverage``: the attention on the
    region's own pixels). resolution "input" enlarges the CAMs to H x W (bicubic) instead.
    """
    if resolution == "input":
        maps = cam_utils.upsample(cams, region.shape[-2:])
        on_grid = region.to(cams.dtype)
    else:
        maps = cams
        shrink = shrink_masks if cells == "touched" else region_coverage
        on_grid = shrink(region.to(cams.dtype), cams.shape[-2:])
    attention = maps.flatten(2).softmax(dim=2)  # B x N x P, each map sums to 1
    return (attention * on_grid.flatten(2)).sum(dim=2)


def mass_in_mask(
    cams: torch.Tensor, masks: torch.Tensor, class_index: torch.Tensor, resolution: str = "feature"
) -> torch.Tensor:
    """Share of the attention of class ``class_index`` inside the mask, per image: B values.

    cams: B x N x h x w raw CAMs; masks: B x 1 x H x W 0/1; class_index: B (usually the
    predicted class). resolution: "feature" (the mask on the grid, cells it touches) or
    "input" (CAM enlarged to H x W, bicubic), as in the loss.
    """
    mass = attention_mass(cams, masks, "touched", resolution)  # B x N
    return mass.gather(1, class_index.view(-1, 1).to(mass.device))[:, 0]


def pointing_game(
    cams: torch.Tensor, masks: torch.Tensor, class_index: torch.Tensor
) -> torch.Tensor:
    """Whether each CAM's peak at input resolution lies in the mask: B bools.

    cams B x N x h x w, masks B x 1 x H x W, class_index B.
    """
    maps = cam_utils.select_class(cams, class_index)
    maps = cam_utils.upsample(maps, masks.shape[-2:]).flatten(1)
    peak = maps.argmax(dim=1)
    return masks.flatten(1).gather(1, peak[:, None])[:, 0] > 0


def cam_iou(
    cams: torch.Tensor, masks: torch.Tensor, class_index: torch.Tensor, threshold: float = 0.5
) -> torch.Tensor:
    """IoU of (normalised upsampled CAM >= threshold) with the mask: B values in [0, 1].

    cams B x N x h x w, masks B x 1 x H x W, class_index B.
    """
    region = cam_utils.cam_at_input(cams, class_index, masks.shape[-2:]) >= threshold
    truth = masks > 0
    intersection = (region & truth).flatten(1).sum(dim=1)
    union = (region | truth).flatten(1).sum(dim=1)
    return intersection / union.clamp_min(1)


# ---------------------------------------------------------------------------------------
# Chance levels
# ---------------------------------------------------------------------------------------


def _annotated(masks: torch.Tensor) -> torch.Tensor:
    """Masks B x 1 x H x W -> the rows that are not all zero (images without a mask)."""
    masks = torch.as_tensor(masks).float()
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must be shaped B x 1 x H x W, got {tuple(masks.shape)}.")
    return masks[masks.flatten(1).sum(dim=1) > 0]


def mass_in_mask_chance(masks: torch.Tensor, cam_size: Sequence[int] | None = None) -> torch.Tensor:
    """Mass in mask of uniform attention, per image: the mask's share of the positions.

    Args:
        masks: B x 1 x H x W, 0/1. cam_size: (h, w) of the CAMs for the "feature"
            resolution of ``mass_in_mask`` (the mask is shrunk the same way, by shrink_masks);
            None scores at input resolution.

    Returns:
        B values in [0, 1]; an all-zero mask gives 0.
    """
    masks = torch.as_tensor(masks).float()
    if cam_size is not None:
        masks = shrink_masks(masks, tuple(cam_size))
    return masks.flatten(1).mean(dim=1)


def pointing_game_chance(masks: torch.Tensor) -> torch.Tensor:
    """Chance that a peak placed uniformly at random hits the mask: B values in [0, 1].

    masks B x 1 x H x W, 0/1 (the share of mask pixels at input resolution).
    """
    return torch.as_tensor(masks).float().flatten(1).mean(dim=1)


def random_cam_baseline(
    masks: torch.Tensor, cam_size: Sequence[int], draws: int = 20, seed: int = 0
) -> dict:
    """Attention scores of CAMs made of Gaussian noise, a network that looks nowhere.

    Args:
        masks: B x 1 x H x W, 0/1 (images with an all-zero mask are left out).
        cam_size: (h, w) of the noise CAMs, the model's feature grid.
        draws: noise CAMs per image; seed: makes the draws repeat.

    Returns:
        {"mass_in_mask", "pointing_game", "iou"}: each the mean over images and draws.
    """
    masks = _annotated(masks)
    if len(masks) == 0:
        return {"mass_in_mask": float("nan"), "pointing_game": float("nan"), "iou": float("nan")}
    generator = torch.Generator().manual_seed(seed)
    classes = torch.zeros(len(masks), dtype=torch.long)
    totals = {"mass_in_mask": 0.0, "pointing_game": 0.0, "iou": 0.0}
    for _ in range(draws):
        cams = torch.randn(len(masks), 1, *tuple(cam_size), generator=generator)
        totals["mass_in_mask"] += mass_in_mask(cams, masks, classes).mean().item()
        totals["pointing_game"] += pointing_game(cams, masks, classes).float().mean().item()
        totals["iou"] += cam_iou(cams, masks, classes).mean().item()
    return {k: v / draws for k, v in totals.items()}


def chance_levels(
    masks: torch.Tensor, cam_size: Sequence[int], draws: int = 20, seed: int = 0
) -> dict:
    """Chance levels of the attention metrics on a set of masks (annotated images only).

    Args:
        masks: B x 1 x H x W, 0/1; cam_size: (h, w) of the model's CAMs.

    Returns:
        {"uniform": {"mass_in_mask", "pointing_game"}, "random_cam": {"mass_in_mask",
        "pointing_game", "iou"}}: means over the annotated images. "uniform" is attention
        spread evenly (the mask's area share); "random_cam" scores CAMs of noise.
    """
    annotated = _annotated(masks)
    if len(annotated) == 0:
        uniform = {"mass_in_mask": float("nan"), "pointing_game": float("nan")}
    else:
        uniform = {
            "mass_in_mask": mass_in_mask_chance(annotated, cam_size).mean().item(),
            "pointing_game": pointing_game_chance(annotated).mean().item(),
        }
    return {"uniform": uniform, "random_cam": random_cam_baseline(annotated, cam_size, draws, seed)}


ATTENTION_METRICS = ("mass_in_mask", "pointing_game")


def attention_table(scores: dict, chance: dict, metrics: Sequence[str] = ATTENTION_METRICS) -> Any:
    """Attention scores of some models next to their chance levels, as a table.

    Args:
        scores: {model name: {metric: value}} (e.g. ``agkit.method.train.evaluate`` results).
        chance: what ``chance_levels`` returned for the same test masks.
        metrics: which columns to show.

    Returns:
        pandas DataFrame: one row per model, then "uniform attention (chance)" and
        "random CAM (chance)"; NaN where a chance level does not exist.
    """
    import pandas as pd

    rows = {
        name: {m: float(values.get(m, float("nan"))) for m in metrics}
        for name, values in scores.items()
    }
    for name, key in (
        ("uniform attention (chance)", "uniform"),
        ("random CAM (chance)", "random_cam"),
    ):
        rows[name] = {m: chance[key].get(m, float("nan")) for m in metrics}
    return pd.DataFrame(rows).T[list(metrics)]


def chance_headline(summary: Any, chance: dict, margin: float = CHANCE_MARGIN) -> list[str]:
    """The course's result in words, leading with what is above chance.

    Args:
        summary: pandas DataFrame, rows "baseline" and "guided", columns accuracy_shifted,
            mass_in_mask and (optionally) pointing_game_shifted: means over seeds on the
            shifted test split.
        chance: ``chance_levels`` of the shifted test split's masks.
        margin: how far above the highest chance level a score must be to count as
            "above chance" (default ``agkit.analysis.claims.CHANCE_MARGIN``: the one rule that every
            sentence of the course about chance follows).

    Returns:
        one sentence per method, then one for the gap in accuracy.
    """
    levels = {
        "accuracy_shifted": 0.5,
        "mass_in_mask": max(
            chance["uniform"]["mass_in_mask"], chance["random_cam"]["mass_in_mask"]
        ),
        "pointing_game_shifted": max(
            chance["uniform"]["pointing_game"], chance["random_cam"]["pointing_game"]
        ),
    }
    names = {
        "accuracy_shifted": "accuracy",
        "mass_in_mask": "mass in mask",
        "pointing_game_shifted": "pointing game",
    }
    lines = []
    for method in ("guided", "baseline"):
        above: list[str] = []
        near: list[str] = []
        for column, level in levels.items():
            if column not in summary.columns:
                continue
            value = float(summary.loc[method, column])
            text = f"{names[column]} {value:.2f} (chance {level:.2f})"
            (above if value > level + margin else near).append(text)
        parts = []
        if above:
            parts.append("above chance: " + ", ".join(above))
        if near:
            parts.append("at or near chance: " + ", ".join(near))
        lines.append(f"{method}: " + "; ".join(parts) + ".")
    gap = 100 * (
        summary.loc["guided", "accuracy_shifted"] - summary.loc["baseline", "accuracy_shifted"]
    )
    lines.append(f"guided - baseline accuracy on the shifted test split: {gap:+.1f} points.")
    return lines
