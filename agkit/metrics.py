"""How well the network classifies, and where it looks.

Classification metrics come from scikit-learn. The attention metrics (docs/method.md) score
the CAM of the *predicted* class against the guidance mask:

* mass in mask: the share of the softmax attention A_c inside the mask (1 = all inside);
* pointing game: whether the CAM's maximum, at input resolution, falls inside the mask;
* IoU: overlap of the thresholded, normalised, upsampled CAM with the mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn import metrics as skm

from agkit import cam as cam_utils
from agkit.losses import shrink_masks


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
    scores = {
        "accuracy": skm.accuracy_score(labels, predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(labels, predicted),
        "confusion": skm.confusion_matrix(labels, predicted, labels=list(range(num_classes))),
    }
    if len(np.unique(labels)) < 2:
        scores["auc"] = float("nan")
    elif num_classes == 2:
        scores["auc"] = skm.roc_auc_score(labels, probs[:, 1])
    else:
        scores["auc"] = skm.roc_auc_score(labels, probs, multi_class="ovr",
                                          labels=list(range(num_classes)))
    if num_classes == 2:
        recall = skm.recall_score(labels, predicted, labels=[0, 1], average=None, zero_division=np.nan)
        scores["specificity"], scores["sensitivity"] = float(recall[0]), float(recall[1])
    return {k: (float(v) if isinstance(v, (int, float, np.number)) else v)
            for k, v in scores.items()}


def mass_in_mask(cams: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor,
                 resolution: str = "feature") -> torch.Tensor:
    """Share of attention inside the mask, per image.

    Args:
        cams: B x N x h x w raw CAMs; masks: B x 1 x H x W 0/1; classes: B (usually the
        predicted class). resolution: "feature" (mask shrunk to h x w by shrink_masks) or "input"
        (CAM enlarged to H x W, bicubic), as in the loss.

    Returns:
        B values in [0, 1].
    """
    maps = cam_utils.select_class(cams, classes)
    masks = masks.to(cams.dtype)
    if resolution == "feature":
        masks = shrink_masks(masks, maps.shape[-2:])  # as in the loss
    else:
        maps = cam_utils.upsample(maps, masks.shape[-2:])
    attention = maps.flatten(1).softmax(dim=1)
    return (attention * masks.flatten(1)).sum(dim=1)


def pointing_game(cams: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Whether each CAM's peak at input resolution lies in the mask: B bools.

    cams B x N x h x w, masks B x 1 x H x W, classes B.
    """
    maps = cam_utils.upsample(cam_utils.select_class(cams, classes), masks.shape[-2:]).flatten(1)
    peak = maps.argmax(dim=1)
    return masks.flatten(1).gather(1, peak[:, None])[:, 0] > 0


def cam_iou(cams: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor,
            threshold: float = 0.5) -> torch.Tensor:
    """IoU of (normalised upsampled CAM >= threshold) with the mask: B values in [0, 1].

    cams B x N x h x w, masks B x 1 x H x W, classes B.
    """
    region = cam_utils.cam_at_input(cams, classes, masks.shape[-2:]) >= threshold
    truth = masks > 0
    intersection = (region & truth).flatten(1).sum(dim=1)
    union = (region | truth).flatten(1).sum(dim=1)
    return intersection / union.clamp_min(1)
