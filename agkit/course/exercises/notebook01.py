"""The checks of notebook 01: the CAM from features, average pooling, mass in mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agkit.course.exercises.answers import (
    _DETACHED,
    _close,
    _same_gradients,
    _tensor,
)
from agkit.course.exercises.feedback import Hint
from agkit.course.exercises.inputs import _images, _leaves, _masks, _model
from agkit.course.exercises.runner import _check
from agkit.method import camnet as models
from agkit.method import metrics
from agkit.method.camnet import CAMNet, pool_cams

# --------------------------------------------------------------------------------------
# Notebook 01: the CAM, average pooling, mass in mask
# --------------------------------------------------------------------------------------


@_check("CAM from features", uses=((CAMNet, "cams_from_features"),))
def check_cam(student) -> str:
    """fn(features B x K x h x w, weight N x K, bias N) -> CAMs B x N x h x w."""
    model = _model()
    with torch.no_grad():
        features = model.features(_images())
    ref_features = features.clone().requires_grad_(True)
    expected = model.cams_from_features(ref_features)
    ref_inputs = [ref_features, model.classifier.weight, model.classifier.bias]
    inputs = _leaves(*ref_inputs)
    b, _, h, w = features.shape
    cams = _tensor(
        student(*inputs), (b, 3, h, w), "one h x w map per class for every image, B x N x h x w"
    )
    bias = inputs[2].detach()[None, :, None, None]
    if not _close(cams, expected, 1e-4):
        if _close(cams, expected - bias, 1e-4):
            raise Hint("the maps are right up to a constant per class: add the class's bias.")
        if _close(cams, expected.relu(), 1e-4):
            raise Hint("the CAM is the plain weighted sum: no ReLU (negative values stay).")
        if _close(cams, expected - bias + bias.mean(), 1e-4) or _close(
            cams, (expected - bias) + bias.sum(), 1e-4
        ):
            raise Hint("each class has its own bias: add bias[c] to map c only.")
        raise Hint(
            "the values differ from CAMNet's CAMs: map c at (i, j) is the sum over the "
            "channels k of weight[c, k] times feature k at (i, j), plus bias[c]."
        )
    _same_gradients(
        cams,
        inputs,
        expected,
        ref_inputs,
        "the features, the weight and the bias",
        _DETACHED,
        "the values are right but the gradient is not CAMNet's: compute the CAM as one "
        "differentiable expression of features, weight and bias.",
    )
    return "your CAMs equal CAMNet's, and so do their gradients."


@_check("average pooling", uses=((models, "pool_cams"),))
def check_average_pooling(student) -> str:
    """fn(cams B x N x h x w) -> logits B x N equal to fc(GAP(features))."""
    model = _model()
    with torch.no_grad():
        features = model.features(_images(1))
    (ref_cams,) = _leaves(model.cams_from_features(features))
    expected = model.classifier(features.mean(dim=(2, 3)))
    reference = pool_cams(ref_cams, "avg")
    (cams,) = _leaves(ref_cams)
    logits = _tensor(
        student(cams), (cams.shape[0], cams.shape[1]), "one logit per class for every image, B x N"
    )
    if not _close(logits, expected, 1e-4):
        flat = ref_cams.detach().flatten(2)
        if _close(logits, flat.sum(dim=2)):
            raise Hint("you summed over the positions; the pooling takes their mean.")
        if _close(logits, flat.amax(dim=2)):
            raise Hint("that is max pooling; average pooling takes the mean of each map.")
        if _close(logits, flat.median(dim=2).values):
            raise Hint("that is the median; average pooling takes the mean of each map.")
        raise Hint(
            "the logits differ from the classifier applied to the averaged features; "
            "average each class map over all h x w positions."
        )
    _same_gradients(
        logits,
        [cams],
        reference,
        [ref_cams],
        "the CAMs",
        _DETACHED,
        "the values are right but the gradient is not the mean's: every position gets 1/(h*w).",
    )
    return "averaging the CAMs gives exactly fc(GAP(features)), with the gradient of a mean."


def _mass_batch():
    generator = torch.Generator().manual_seed(2)
    cams = torch.randn(6, 3, 8, 8, generator=generator) * 2
    masks = torch.cat([_masks(4), _masks(2)])
    masks[4, 0, 1:6, 25:31] = 1  # a second, small patch that touches cells only in part
    classes = torch.tensor([0, 2, 1, 2, 1, 0])
    return cams, masks, classes


@_check("mass in mask", uses=((metrics, "mass_in_mask"),))
def check_mass_in_mask(student) -> str:
    """fn(cams B x N x h x w, masks B x 1 x H x W, classes B) -> B shares in [0, 1]."""
    cams, masks, classes = _mass_batch()
    expected = metrics.mass_in_mask(cams, masks, classes)
    value = _tensor(
        student(cams.clone(), masks.clone(), classes.clone()),
        (6,),
        "one share of attention per image",
        numpy_ok=True,
    ).double()
    if _close(value, expected, 1e-5):
        return "your shares of attention inside the masks equal the kit's."
    picked = cams[torch.arange(6), classes]  # 6 x 8 x 8

    def share(maps, small):
        return (maps * small).flatten(1).sum(1)

    touched = F.adaptive_max_pool2d(masks, (8, 8))[:, 0]
    for other in [torch.full((6,), c) for c in range(3)] + [cams.mean(dim=(2, 3)).argmax(1)]:
        if _close(value, metrics.mass_in_mask(cams, masks, other), 1e-5):
            raise Hint("you scored another class than the one given: use classes[i] for image i.")
    if _close(value, share(picked.softmax(dim=-1), touched), 1e-5) or _close(
        value, share(picked.softmax(dim=-2), touched), 1e-5
    ):
        raise Hint("the softmax must run over all h x w positions at once, not along one row.")
    by_class = cams.softmax(dim=1)[torch.arange(6), classes]
    if _close(value, share(by_class, touched), 1e-5):
        raise Hint("the softmax runs over the h x w positions of one map, not over the classes.")
    attention = picked.flatten(1).softmax(1).view_as(picked)
    if _close(value, share(attention, F.adaptive_avg_pool2d(masks, (8, 8))[:, 0]), 1e-5):
        raise Hint(
            "a cell counts as a whole when the mask touches it (adaptive_max_pool2d), "
            "not by the share of its pixels inside (the average)."
        )
    if _close(value, metrics.mass_in_mask(cams, masks, classes, resolution="input"), 1e-5):
        raise Hint("shrink the mask to the CAM's h x w instead of enlarging the CAM.")
    if (
        _close(value, share(picked, touched), 1e-5)
        or (value < -1e-6).any()
        or (value > 1 + 1e-6).any()
    ):
        raise Hint(
            "a share of attention lies between 0 and 1: turn the CAM into a probability "
            "distribution over its positions (softmax) first."
        )
    raise Hint(
        "the values differ from the reference: shrink the mask to the CAM's size (a cell "
        "counts when the mask touches it) and add up the attention of the given class inside it."
    )
