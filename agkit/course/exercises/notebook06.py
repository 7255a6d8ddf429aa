"""The checks of notebook 06: the "don't look here" CAM term, and Right for the Right
Reasons.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agkit.course.exercises.answers import (
    _DETACHED,
    _close,
    _empty_batch_gives_zero,
    _gradients,
    _same_gradients,
    _tensor,
)
from agkit.course.exercises.feedback import Hint
from agkit.course.exercises.inputs import _images, _leaves, _model
from agkit.course.exercises.runner import _check
from agkit.guidance import ForbiddenGuidance, RRRGuidance
from agkit.method import metrics
from agkit.method.camnet import CAMOutput
from agkit.method.metrics import attention_mass

# --------------------------------------------------------------------------------------
# Notebook 06: the "don't look here" CAM term, and Right for the Right Reasons
# --------------------------------------------------------------------------------------


def _forbidden_batch():
    """CAMs 4 x 2 x 8 x 8 and regions 4 x 1 x 32 x 32: image 0's box covers cells only in
    part (so a touched-cell shrink differs from the pixel share), image 2 has no region."""
    generator = torch.Generator().manual_seed(7)
    cams = torch.randn(4, 2, 8, 8, generator=generator) * 2
    region = torch.zeros(4, 1, 32, 32)
    region[0, 0, 2:9, 2:9] = 1
    region[1, 0, 0:8, 24:32] = 1
    region[3, 0, 20:30, 4:14] = 1
    return cams, region


@_check(
    "don't-look-here term",
    uses=((ForbiddenGuidance, "__call__"), (metrics, "attention_mass")),
)
def check_forbidden_loss(student) -> str:
    """fn(cams B x N x h x w, region B x 1 x H x W) -> scalar mean of -log(1 - mass)."""
    start, region = _forbidden_batch()
    (ref_cams,) = _leaves(start)
    out = CAMOutput(logits=ref_cams.mean(dim=(2, 3)), cams=ref_cams)
    expected = ForbiddenGuidance()(None, None, None, None, None, out, region)
    (cams,) = _leaves(start)
    value = _tensor(student(cams, region.clone()), (), "one number, a scalar tensor")
    if not _close(value, expected):
        present = region.flatten(1).amax(dim=1) > 0
        mass = attention_mass(start, region, cells="area")  # 4 x 2
        touched = F.adaptive_max_pool2d(region, (8, 8))
        attention = start.flatten(2).softmax(dim=2).view_as(start)
        mass_touched = (attention * touched).flatten(2).sum(dim=2)[present]
        wrong = [
            (-expected, "the sign is wrong: -log(1 - mass) is positive, and 0 with no mass there."),
            (
                -torch.log(mass[present]).mean(),
                "-log(mass) pulls attention *into* the region; pushing it out is -log(1 - mass).",
            ),
            (
                -torch.log1p(-mass).mean(),
                "an image without a region adds nothing: average over the images that have one.",
            ),
            (
                -torch.log1p(-mass_touched.clamp(max=1 - 1e-6)).mean(),
                "a cell partly inside the region counts by the share of its pixels inside "
                "(F.adaptive_avg_pool2d), not as a whole cell (max pooling).",
            ),
            (mass[present].mean(), "that is the mean mass itself; the term is -log(1 - mass)."),
            (
                -torch.log1p(-mass[present]).sum(),
                "that is the sum; the term is the mean over every class map of every image "
                "with a region.",
            ),
        ]
        for loss, hint in wrong:
            if _close(value, loss):
                raise Hint(hint)
        raise Hint(
            "the value differs from the kit's term: take the softmax of every map over all its "
            "positions, sum it over the region's share of each cell (F.adaptive_avg_pool2d), "
            "and average -log(1 - mass) over every class map of every image with a region."
        )
    _same_gradients(
        value,
        [cams],
        expected,
        [ref_cams],
        "the CAMs",
        _DETACHED,
        "the value is right but its gradient is not: keep the whole term one differentiable "
        "expression of the CAMs.",
    )
    _empty_batch_gives_zero(student, start, region, "region")
    return "your term and its gradient equal the kit's, and a batch without regions gives 0."


@_check("RRR penalty", uses=((RRRGuidance, "__call__"),))
def check_rrr_penalty(student) -> str:
    """fn(model, images B x C x H x W, region B x 1 x H x W) -> scalar RRR penalty."""
    model = _model(8)
    images = _images(8)
    region = torch.zeros(4, 1, 32, 32)
    region[:, :, :8, :8] = 1  # a corner of every image
    # the penalty is tiny here (about 3e-6: an untrained network barely reads a corner), so
    # values are compared by their relative difference only (atol=0)
    reference = images.clone().requires_grad_(True)
    expected = RRRGuidance()(model, reference, None, None, None, model(reference), region)
    (ref_grad,) = torch.autograd.grad(expected, [model.classifier.weight])
    value = _tensor(student(model, images, region.clone()), (), "one number, a scalar tensor")
    if images.requires_grad or images.grad is not None:
        raise Hint(
            "you changed the caller's images (requires_grad or .grad); differentiate a "
            "copy, images.detach().requires_grad_(True)."
        )
    if not _close(value, expected, atol=0.0):
        copy = images.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(model(copy).logits.sum(), copy)
        if _close(value, (region * gradient).pow(2).sum() / 4, atol=0.0):
            raise Hint(
                "differentiate the sum of the log-probabilities (F.log_softmax), not the logits."
            )
        (gradient,) = torch.autograd.grad(F.log_softmax(model(copy).logits, 1).sum(), copy)
        if _close(value, gradient.pow(2).sum() / 4, atol=0.0):
            raise Hint("only the forbidden pixels count: multiply the gradient by the region.")
        if _close(value, (region * gradient).pow(2).mean(), atol=0.0):
            raise Hint("sum over pixels and channels and divide by the number of images only.")
        if _close(value, (region * gradient).pow(2).sum(), atol=0.0):
            raise Hint("divide the sum by the number of images.")
        if _close(value, (region * gradient).abs().sum() / 4, atol=0.0):
            raise Hint("square the gradient on the region (RRR penalises its square).")
        raise Hint(
            "the value differs from RRR: the gradient of the summed log-probabilities with "
            "respect to the pixels, times the region, squared, summed, divided by B."
        )
    if not value.requires_grad:
        raise Hint(
            "the value is right but cannot be trained: take the input gradient with "
            "create_graph=True (double backpropagation)."
        )
    (weights,) = _gradients(value, [model.classifier.weight])
    if weights is None or not weights.abs().sum() > 0:
        raise Hint("no gradient reaches the weights: use create_graph=True in autograd.grad.")
    if not torch.allclose(weights, ref_grad, rtol=1e-3, atol=0.0):
        raise Hint(
            "the value is right but its gradient with respect to the weights is not RRR's: "
            "keep the input gradient in the graph (create_graph=True) and use it as it is."
        )
    return "your penalty and its gradient for the weights equal RRR's (double backprop)."
