"""Instant checks for the coding exercises of the course notebooks.

Each ``check_*`` function takes the student's function, runs it on small fixed inputs,
compares the result with the kit's own implementation and prints one line: ``✓`` and what
is right, or ``✗`` and one sentence saying what is wrong (the shape, the values, the
gradient, ...) without giving the answer away. A check never raises, so "Run all" goes on
past an exercise that is not done yet; ``check_x.verdict(fn)`` returns ``(passed, message)``
instead of printing (the tests use it).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from agkit import metrics
from agkit.guidance import ForbiddenGuidance, RRRGuidance, attention_mass
from agkit.losses import attention_guidance_loss
from agkit.models import CAMNet, CAMOutput, pool_cams


class Hint(Exception):
    """What is wrong with a student's answer, in one sentence."""


def _check(title: str):
    """Turn ``body(fn) -> str`` (raising Hint when wrong) into a printing check."""

    def decorate(body):
        def verdict(fn) -> tuple[bool, str]:
            if not callable(fn):
                return False, (
                    f"✗ {title}: pass your function itself (no brackets after its name)."
                )
            try:
                with torch.random.fork_rng(devices=[]):  # the notebook's random state stays
                    return True, f"✓ {title}: {body(fn)}"
            except Hint as hint:
                return False, f"✗ {title}: {hint}"
            except NotImplementedError:
                return False, f"✗ {title}: not written yet; replace the blank with your code."
            except Exception as error:  # noqa: BLE001 (any error of the student's code is news)
                return False, (
                    f"✗ {title}: your function raised {type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else ''}"
                )

        @functools.wraps(body)
        def check(fn) -> None:
            print(verdict(fn)[1])

        check.verdict = verdict
        return check

    return decorate


def _tensor(value, name: str, shape: tuple, what: str) -> torch.Tensor:
    if value is None or value is Ellipsis:
        raise Hint(f"{name} returned nothing; it should return {what}.")
    if not isinstance(value, torch.Tensor):
        raise Hint(
            f"{name} returned a {type(value).__name__}, not a torch tensor; "
            f"it should return {what}."
        )
    if tuple(value.shape) != tuple(shape):
        raise Hint(
            f"the result has shape {tuple(value.shape)} but should have shape "
            f"{tuple(shape)} ({what})."
        )
    if not torch.isfinite(value.float()).all():
        raise Hint("the result contains NaN or infinity.")
    return value


def _close(value: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5) -> bool:
    return torch.allclose(value.detach().double(), expected.detach().double(), atol=atol, rtol=1e-4)


def _trains_the_cams_and_gives_0_without_annotation(fn, value, cams, annotation, hint):
    """Raise Hint unless the student's loss ``value`` sends a finite gradient to ``cams``
    and ``fn(cams, all-zero annotation)`` is exactly 0 (``hint`` says so otherwise)."""
    cams.grad = None
    value.backward()
    if cams.grad is None or not torch.isfinite(cams.grad).all():
        raise Hint("the value is right but no gradient reaches the CAMs.")
    none = fn(cams.detach(), torch.zeros_like(annotation))
    if none is None or not torch.isfinite(torch.as_tensor(none)).all() or float(none) != 0:
        raise Hint(hint)


def _model(seed: int = 0, pooling: str = "avg") -> CAMNet:
    torch.manual_seed(seed)
    model = CAMNet("tiny", num_classes=3, pooling=pooling).eval()
    with torch.no_grad():  # a non-zero bias, so a forgotten bias shows
        model.classifier.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    return model


def _images(seed: int = 0, n: int = 4, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _masks(n: int = 4, size: int = 32, empty: tuple = ()) -> torch.Tensor:
    """n different rectangles (image k's is shifted by k), some left empty."""
    masks = torch.zeros(n, 1, size, size)
    for k in range(n):
        if k not in empty:
            masks[k, 0, 4 + 2 * k : 20 + k, 8 : 24 - k] = 1
    return masks


# --------------------------------------------------------------------------------------
# Notebook 01: the CAM, average pooling, mass in mask
# --------------------------------------------------------------------------------------


@_check("CAM from features")
def check_cam(fn) -> str:
    """fn(features B x K x h x w, weight N x K, bias N) -> CAMs B x N x h x w."""
    model = _model()
    images = _images()
    features = model.features(images).detach()
    weight = model.classifier.weight.detach().clone().requires_grad_(True)
    bias = model.classifier.bias.detach().clone()
    expected = model(images).cams
    b, _, h, w = features.shape
    cams = _tensor(
        fn(features, weight, bias),
        "your function",
        (b, 3, h, w),
        "one h x w map per class for every image, B x N x h x w",
    )
    if not _close(cams, expected, 1e-4):
        if _close(cams, expected - bias[None, :, None, None], 1e-4):
            raise Hint("the maps are right up to a constant per class: add the class's bias.")
        raise Hint(
            "the values differ from CAMNet's CAMs: map c at (i, j) is the sum over the "
            "channels k of weight[c, k] times feature k at (i, j)."
        )
    if not cams.requires_grad:
        raise Hint(
            "the values are right, but no gradient flows back to the weight; use "
            "torch operations only (no .detach(), .numpy() or loops over floats)."
        )
    return "your CAMs equal CAMNet's (torch.allclose)."


@_check("average pooling")
def check_average_pooling(fn) -> str:
    """fn(cams B x N x h x w) -> logits B x N equal to fc(GAP(features))."""
    model = _model()
    images = _images(1)
    features = model.features(images).detach()
    cams = model.cams_from_features(features).detach()
    expected = model.classifier(features.mean(dim=(2, 3)))
    logits = _tensor(
        fn(cams),
        "your function",
        (cams.shape[0], cams.shape[1]),
        "one logit per class for every image, B x N",
    )
    if _close(logits, cams.flatten(2).sum(dim=2)):
        raise Hint("you summed over the positions; the pooling takes their mean.")
    if not _close(logits, expected, 1e-4):
        raise Hint(
            "the logits differ from the classifier applied to the averaged features; "
            "average each class map over all h x w positions."
        )
    return "averaging the CAMs gives exactly fc(GAP(features))."


@_check("mass in mask")
def check_mass_in_mask(fn) -> str:
    """fn(cams B x N x h x w, masks B x 1 x H x W, classes B) -> B shares in [0, 1]."""
    generator = torch.Generator().manual_seed(2)
    cams = torch.randn(4, 3, 8, 8, generator=generator) * 2
    masks = _masks()
    classes = torch.tensor([0, 2, 1, 2])
    expected = metrics.mass_in_mask(cams, masks, classes)
    value = _tensor(
        fn(cams, masks, classes), "your function", (4,), "one share of attention per image"
    )
    if _close(value, expected, 1e-5):
        return "your shares equal agkit.metrics.mass_in_mask."
    for other in range(3):
        if _close(value, metrics.mass_in_mask(cams, masks, torch.full((4,), other)), 1e-5):
            raise Hint(
                "you scored the same class for every image; use the class given for each image."
            )
    by_row = cams.softmax(dim=-1)
    picked = by_row[torch.arange(4), classes]
    small = F.adaptive_max_pool2d(masks, (8, 8))[:, 0]
    if _close((picked * small).flatten(1).sum(1) / 8, value, 1e-5) or _close(
        (picked * small).flatten(1).sum(1), value, 1e-5
    ):
        raise Hint("the softmax must run over all h x w positions at once, not along one row.")
    if (value < -1e-6).any() or (value > 1 + 1e-6).any():
        raise Hint(
            "a share of attention must lie between 0 and 1: turn the CAM into a "
            "probability distribution over its positions first."
        )
    raise Hint(
        "the values differ from the reference; shrink the mask to the CAM's size "
        "(a cell counts when the mask touches it: F.adaptive_max_pool2d) and sum the "
        "attention of the given class inside it."
    )


# --------------------------------------------------------------------------------------
# Notebook 02: masks from boxes, the pointing game, agreement between masks
# --------------------------------------------------------------------------------------


@_check("box to mask")
def check_box_mask(fn) -> str:
    """fn(box (x0, y0, x1, y1), height, width) -> H x W tensor of 0/1, box = mask[y0:y1, x0:x1]."""
    from agkit.data import rasterize_boxes

    box, height, width = (3, 5, 11, 8), 12, 16
    expected = torch.as_tensor(rasterize_boxes([box], (height, width))).float()
    value = fn(box, height, width)
    if isinstance(value, np.ndarray):
        value = torch.as_tensor(value)
    value = _tensor(value, "your function", (height, width), "an H x W mask")
    value = value.float()
    if ((value != 0) & (value != 1)).any():
        raise Hint("a mask holds only 0 and 1.")
    if torch.equal(value, expected):
        return "your mask equals agkit.data.rasterize_boxes."
    if value.sum() == 0:
        raise Hint("the mask is empty: set the pixels inside the box to 1.")
    swapped = torch.as_tensor(rasterize_boxes([(5, 3, 8, 11)], (height, width))).float()
    if torch.equal(value, swapped):
        raise Hint("x and y are swapped: rows are y (height), columns are x (width).")
    inclusive = torch.as_tensor(rasterize_boxes([(3, 5, 12, 9)], (height, width))).float()
    if torch.equal(value, inclusive):
        raise Hint(
            "the box is one pixel too big: x1 and y1 are exclusive ends, as in Python slices."
        )
    raise Hint(
        f"the mask covers {int(value.sum())} pixels where the box covers "
        f"{int(expected.sum())}; fill rows y0 to y1 and columns x0 to x1."
    )


@_check("pointing game")
def check_pointing_game(fn) -> str:
    """fn(cams B x N x h x w, masks B x 1 x H x W, classes B) -> B bools."""
    generator = torch.Generator().manual_seed(3)
    cams = torch.randn(6, 2, 8, 8, generator=generator)
    masks = torch.cat([_masks(4), _masks(2)])
    classes = torch.tensor([0, 1, 1, 0, 1, 0])
    expected = metrics.pointing_game(cams, masks, classes)
    value = fn(cams, masks, classes)
    value = _tensor(value, "your function", (6,), "one True/False per image")
    if value.dtype != torch.bool:
        if ((value != 0) & (value != 1)).any():
            raise Hint("the pointing game is a hit or a miss: return a bool per image.")
        value = value.bool()
    if torch.equal(value, expected):
        return "your hits equal agkit.metrics.pointing_game."
    raise Hint(
        f"{int((value != expected).sum())} of 6 images scored differently: upsample "
        "the CAM of the given class to the mask's size, find its largest pixel and "
        "look the mask up there."
    )


@_check("agreement of two masks (IoU)")
def check_mask_iou(fn) -> str:
    """fn(a H x W 0/1, b H x W 0/1) -> float intersection over union."""
    a = torch.zeros(10, 10)
    a[2:6, 2:6] = 1  # 16 pixels
    b = torch.zeros(10, 10)
    b[4:8, 2:8] = 1  # 24 pixels, 2 x 4 = 8 shared
    value = fn(a, b)
    if value is None or value is Ellipsis:
        raise Hint("your function returned nothing; it should return one number.")
    value = float(value)
    if math.isclose(value, 8 / 32, abs_tol=1e-6):
        if fn(torch.zeros(4, 4), torch.zeros(4, 4)) is None:
            raise Hint("two empty masks gave nothing back; return 0 when the union is empty.")
        empty = float(fn(torch.zeros(4, 4), torch.zeros(4, 4)))
        if not math.isfinite(empty):
            raise Hint("two empty masks gave NaN: return 0 when the union is empty.")
        return "8 shared pixels of 32 in the union give 0.25, and empty masks give 0."
    if math.isclose(value, 2 * 8 / 40, abs_tol=1e-6):
        raise Hint(
            "that is the Dice score (twice the overlap over the sum of both areas); "
            "IoU divides the overlap by the area of the union."
        )
    if math.isclose(value, 8 / 40, abs_tol=1e-6):
        raise Hint("the union counts the shared pixels twice; count each pixel once.")
    raise Hint(
        f"got {value:.3f} on a test with a known answer; IoU = pixels in both masks / "
        "pixels in either mask."
    )


# --------------------------------------------------------------------------------------
# Notebook 03: softmax pooling, the attention loss, one training step
# --------------------------------------------------------------------------------------


@_check("softmax pooling")
def check_softmax_pooling(fn) -> str:
    """fn(cams B x N x h x w) -> logits B x N, z_c = sum_ij softmax(M_c)_ij M_c(i,j)."""
    generator = torch.Generator().manual_seed(4)
    cams = (torch.randn(3, 2, 8, 8, generator=generator) * 2).requires_grad_(True)
    expected = pool_cams(cams, "softmax")
    logits = _tensor(fn(cams), "your function", (3, 2), "one logit per class for every image")
    if _close(logits, pool_cams(cams, "avg")):
        raise Hint("that is average pooling; weight each position by its softmax attention.")
    if _close(logits, cams.flatten(2).max(dim=2).values):
        raise Hint("that is max pooling; weight each position by its softmax attention.")
    if not _close(logits, expected, 1e-5):
        row = (cams.softmax(dim=-1) * cams).sum(dim=(2, 3))
        if _close(logits, row, 1e-5):
            raise Hint("the softmax must run over all h x w positions at once, not along one row.")
        raise Hint(
            "the logits differ from softmax pooling: the weights are softmax(M_c) over "
            "all positions, and the logit is the weighted sum of M_c."
        )
    if not logits.requires_grad:
        raise Hint("the values are right but carry no gradient; use torch operations only.")
    return "your logits equal CAMNet's softmax pooling."


@_check("attention loss")
def check_attention_loss(fn) -> str:
    """fn(cams B x N x h x w, masks B x 1 x H x W) -> scalar L_att (feature resolution)."""
    generator = torch.Generator().manual_seed(5)
    cams = (torch.randn(4, 2, 8, 8, generator=generator) * 2).requires_grad_(True)
    masks = _masks(4, 32, empty=(3,))
    expected = attention_guidance_loss(cams, masks)
    value = fn(cams, masks)
    value = _tensor(value, "your function", (), "one number, a scalar tensor")
    if _close(value, -expected, 1e-5):
        raise Hint("the sign is wrong: the loss is the mean of -log A, a positive number.")
    if not _close(value, expected, 1e-5):
        flat = F.adaptive_max_pool2d(masks, (8, 8)).flatten(2)
        log_a = cams.flatten(2).log_softmax(dim=2)
        per_image = -(flat * log_a).sum() / (4 * 2)
        if _close(value, per_image, 1e-5):
            raise Hint(
                "divide by the number of annotated positions (over all class maps), "
                "not by the number of images."
            )
        if _close(value, -(flat * log_a).sum() / flat.sum(), 1e-5):
            raise Hint(
                "each class map counts: divide by the mask area times the number of classes."
            )
        raise Hint(
            "the value differs from attention_guidance_loss: shrink the mask to the "
            "CAM's size (F.adaptive_max_pool2d), take log softmax over all positions of each map, "
            "and average -log A over every masked position of every class map."
        )
    _trains_the_cams_and_gives_0_without_annotation(
        fn,
        value,
        cams,
        masks,
        "a batch without any mask must give a loss of exactly 0 (not NaN): "
        "nothing is annotated, so there is nothing to pull.",
    )
    return "your loss equals attention_guidance_loss, and a batch without masks gives 0."


def _step_batch():
    generator = torch.Generator().manual_seed(6)
    images = torch.rand(8, 1, 32, 32, generator=generator)
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    masks = torch.cat([_masks(4), _masks(4, empty=(0, 2))])
    return images, labels, masks


def _reference_step(model, images, labels, masks, optimizer, lam):
    out = model(images)
    loss = F.cross_entropy(out.logits, labels) + lam * attention_guidance_loss(out.cams, masks)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


@_check("training step")
def check_training_step(fn) -> str:
    """fn(model, images, labels, masks, optimizer, lam) -> the loss; one SGD step."""
    images, labels, masks = _step_batch()
    lam = 2.0

    def fresh():
        torch.manual_seed(7)
        model = CAMNet("tiny", num_classes=2, pooling="softmax")
        return model, torch.optim.SGD(model.parameters(), lr=0.1)

    reference, ref_opt = fresh()
    expected, weights = [], []
    for _ in range(2):
        expected.append(_reference_step(reference, images, labels, masks, ref_opt, lam).item())
        weights.append([p.detach().clone() for p in reference.parameters()])
    model, optimizer = fresh()
    before = [p.detach().clone() for p in model.parameters()]
    first = fn(model, images, labels, masks, optimizer, lam)
    if all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)):
        raise Hint(
            "the weights did not change: compute the gradients (backward) and let "
            "the optimizer take its step."
        )
    if first is None:
        raise Hint("your step trains but returns nothing; return the loss.")
    first = float(first)
    if not math.isclose(first, expected[0], rel_tol=1e-4, abs_tol=1e-5):
        torch.manual_seed(7)
        out = CAMNet("tiny", num_classes=2, pooling="softmax")(images)
        ce = F.cross_entropy(out.logits, labels).item()
        att = attention_guidance_loss(out.cams, masks).item()
        if math.isclose(first, ce, rel_tol=1e-4):
            raise Hint("the loss is the cross-entropy alone: add lam times the attention loss.")
        if math.isclose(first, att, rel_tol=1e-4) or math.isclose(first, lam * att, rel_tol=1e-4):
            raise Hint("the loss is missing the cross-entropy term.")
        if math.isclose(first, ce + att, rel_tol=1e-4):
            raise Hint("the attention loss must be weighted by lam.")
        raise Hint(
            f"the loss of the first step is {first:.4f} where CE + lam * L_att is "
            f"{expected[0]:.4f}."
        )
    if not all(
        torch.allclose(a, b, atol=1e-5, rtol=1e-4)
        for a, b in zip(model.parameters(), weights[0], strict=True)
    ):
        raise Hint(
            "the loss is right but the weights moved differently: call backward on "
            "that loss and step the optimizer once per call."
        )
    fn(model, images, labels, masks, optimizer, lam)
    if not all(
        torch.allclose(a, b, atol=1e-5, rtol=1e-4)
        for a, b in zip(model.parameters(), weights[1], strict=True)
    ):
        raise Hint(
            "the first step is right but the second is not: clear the old gradients "
            "(optimizer.zero_grad()) before each backward pass."
        )
    return "two steps on a fixed batch give the reference losses and weights."


# --------------------------------------------------------------------------------------
# Notebook 04: what a 95 % interval over three seeds is; a box from a mask
# --------------------------------------------------------------------------------------


def _bootstrap_means(values) -> np.ndarray:
    """Every equally likely resample's mean (n**n of them): the exact bootstrap distribution."""
    n = len(values)
    return np.array(
        [np.mean([values[i] for i in pick]) for pick in itertools.product(range(n), repeat=n)]
    )


@_check("bootstrap interval")
def check_bootstrap_interval(fn) -> str:
    """fn(values, draws, seed) -> (low, high), the percentile bootstrap 95 % interval."""
    values = [0.62, 0.71, 0.90]
    answer = fn(values, 4000, 0)
    if answer is None or answer is Ellipsis:
        raise Hint("your function returned nothing; it should return (low, high).")
    try:
        low, high = (float(v) for v in answer)
    except (TypeError, ValueError):
        raise Hint("return two numbers, (low, high).") from None
    if not low <= float(np.mean(values)) <= high:
        raise Hint("the interval must contain the mean of the values.")
    if low < min(values) - 1e-9 or high > max(values) + 1e-9:
        raise Hint(
            "a mean of resampled values can never leave [min, max]; resample the "
            "values with replacement and take the mean of each resample."
        )
    means = _bootstrap_means(values)
    lows = np.quantile(means, [0.01, 0.05], method="inverted_cdf")
    highs = np.quantile(means, [0.95, 0.99], method="inverted_cdf")
    if not (lows[0] - 1e-9 <= low <= lows[1] + 1e-9 and highs[0] - 1e-9 <= high <= highs[1] + 1e-9):
        raise Hint(
            f"({low:.3f}, {high:.3f}) is not the 2.5 % and 97.5 % quantiles of the "
            "means of many resamples."
        )
    return (
        f"({low:.3f}, {high:.3f}): with three seeds the interval spans almost "
        f"min..max = ({min(values):.2f}, {max(values):.2f})."
    )


@_check("mask to box")
def check_box_from_mask(fn) -> str:
    """fn(masks n x 1 x H x W 0/1) -> n x 1 x H x W, each mask's bounding box filled."""
    from agkit.data.mask_quality import bounding_boxes

    masks = _masks(3, 24, empty=(2,))
    masks[0, 0, 20, 3] = 1  # a stray pixel far from the rest stretches the box
    expected = bounding_boxes(masks)
    value = _tensor(fn(masks), "your function", tuple(masks.shape), "one box mask per image")
    if torch.equal(value.float(), expected):
        return "your boxes equal agkit.data.mask_quality.bounding_boxes."
    if value[2].sum() > 0:
        raise Hint("an empty mask must stay empty.")
    if value.sum() < expected.sum():
        raise Hint(
            "the box is too small: it runs from the first to the last row and column "
            "that hold any mask pixel, both included."
        )
    raise Hint(
        "the box is too big: it runs from the first to the last row and column that "
        "hold any mask pixel, both included."
    )


# --------------------------------------------------------------------------------------
# Notebook 05: sensitivity and specificity, and the chance level of a test split
# --------------------------------------------------------------------------------------


@_check("sensitivity and specificity")
def check_sensitivity_specificity(fn) -> str:
    """fn(labels n, predicted n) -> (sensitivity, specificity); class 1 = fractured."""
    labels = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    predicted = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0, 1, 1])
    answer = fn(labels, predicted)
    if answer is None or answer is Ellipsis:
        raise Hint("your function returned nothing; it should return (sensitivity, specificity).")
    sensitivity, specificity = (float(v) for v in answer)
    swapped = math.isclose(sensitivity, 4 / 6, rel_tol=1e-6) and math.isclose(
        specificity, 3 / 4, rel_tol=1e-6
    )
    if swapped:
        raise Hint(
            "those are the share of normal images called normal and of fractured "
            "images found, in the other order."
        )
    if not math.isclose(sensitivity, 3 / 4, rel_tol=1e-6):
        raise Hint(
            "sensitivity is the share of fractured images (label 1) that were predicted fractured."
        )
    if not math.isclose(specificity, 4 / 6, rel_tol=1e-6):
        raise Hint(
            "specificity is the share of normal images (label 0) that were predicted normal."
        )
    return "3 of 4 fractured images found (0.75), 4 of 6 normal ones called normal (0.67)."


@_check("chance level of mass in mask")
def check_uniform_chance(fn) -> str:
    """fn(masks n x 1 x H x W, cam_size (h, w)) -> mean mass in mask of uniform attention."""
    masks = _masks(4, 32, empty=(1,))
    expected = metrics.chance_levels(masks, (8, 8), draws=1)["uniform"]["mass_in_mask"]
    value = fn(masks, (8, 8))
    if value is None or value is Ellipsis:
        raise Hint("your function returned nothing; it should return one number.")
    value = float(value)
    if math.isclose(value, expected, abs_tol=1e-6):
        return "uniform attention scores the mask's share of the CAM cells."
    with_empty = metrics.mass_in_mask_chance(masks, (8, 8)).mean().item()
    if math.isclose(value, with_empty, abs_tol=1e-6):
        raise Hint("leave out the images without a mask: they have no mass in mask at all.")
    at_input = metrics.pointing_game_chance(masks[masks.flatten(1).sum(1) > 0]).mean().item()
    if math.isclose(value, at_input, abs_tol=1e-6):
        raise Hint(
            "close: shrink the masks to the CAM's size (F.adaptive_max_pool2d) first, as "
            "mass_in_mask does."
        )
    raise Hint(
        "uniform attention puts 1/(h*w) on every cell, so it scores the share of "
        "cells inside the mask; average that over the annotated images."
    )


# --------------------------------------------------------------------------------------
# Notebook 06: the "don't look here" CAM term, and Right for the Right Reasons
# --------------------------------------------------------------------------------------


def _forbidden_batch():
    """CAMs 4 x 2 x 8 x 8 (with a graph) and regions 4 x 1 x 32 x 32: image 0's box covers
    cells only in part (so a touched-cell shrink differs from the pixel share), image 2 has
    no region."""
    generator = torch.Generator().manual_seed(7)
    cams = (torch.randn(4, 2, 8, 8, generator=generator) * 2).requires_grad_(True)
    region = torch.zeros(4, 1, 32, 32)
    region[0, 0, 2:9, 2:9] = 1
    region[1, 0, 0:8, 24:32] = 1
    region[3, 0, 20:30, 4:14] = 1
    return cams, region


@_check("don't-look-here term")
def check_forbidden_loss(fn) -> str:
    """fn(cams B x N x h x w, region B x 1 x H x W) -> scalar mean of -log(1 - mass)."""
    cams, region = _forbidden_batch()
    out = CAMOutput(logits=cams.mean(dim=(2, 3)), cams=cams)
    expected = ForbiddenGuidance()(None, None, None, None, None, out, region)
    value = _tensor(fn(cams, region), "your function", (), "one number, a scalar tensor")
    if not _close(value, expected):
        present = region.flatten(1).amax(dim=1) > 0
        mass = attention_mass(cams, region)  # 4 x 2
        if _close(value, -expected):
            raise Hint("the sign is wrong: -log(1 - mass) is positive, and 0 with no mass there.")
        if _close(value, -torch.log(mass[present]).mean()):
            raise Hint(
                "-log(mass) pulls attention *into* the region; pushing it out is -log(1 - mass)."
            )
        if _close(value, -torch.log1p(-mass).mean()):
            raise Hint(
                "an image without a region adds nothing: average over the images that have one."
            )
        touched = F.adaptive_max_pool2d(region, (8, 8))
        attention = cams.flatten(2).softmax(dim=2).view_as(cams)
        mass_touched = (attention * touched).flatten(2).sum(dim=2)[present]
        if _close(value, -torch.log1p(-mass_touched.clamp(max=1 - 1e-6)).mean()):
            raise Hint(
                "a cell partly inside the region counts by the share of its pixels inside "
                "(F.adaptive_avg_pool2d), not as a whole cell (max pooling)."
            )
        raise Hint(
            "the value differs from the kit's term: take the softmax of every map over all its "
            "positions, sum it over the region's share of each cell (F.adaptive_avg_pool2d), "
            "and average -log(1 - mass) over every class map of every image with a region."
        )
    _trains_the_cams_and_gives_0_without_annotation(
        fn, value, cams, region, "a batch without any region must give exactly 0 (not NaN)."
    )
    return "your term equals the kit's ForbiddenGuidance, and a batch without regions gives 0."


@_check("RRR penalty")
def check_rrr_penalty(fn) -> str:
    """fn(model, images B x C x H x W, region B x 1 x H x W) -> scalar RRR penalty."""
    model = _model(8)
    images = _images(8)
    region = torch.zeros(4, 1, 32, 32)
    region[:, :, :8, :8] = 1  # a corner of every image
    # the penalty is tiny here (about 3e-6: an untrained network barely reads a corner), so
    # values are compared by their relative difference only (atol=0)
    reference = images.clone().requires_grad_(True)
    expected = RRRGuidance()(model, reference, None, None, None, model(reference), region)
    value = _tensor(fn(model, images, region), "your function", (), "one number, a scalar tensor")
    if images.requires_grad or images.grad is not None:
        raise Hint(
            "you changed the caller's images (requires_grad or .grad); differentiate a "
            "copy, images.detach().requires_grad_(True)."
        )
    if not _close(value, expected, atol=0.0):
        copy = images.clone().requires_grad_(True)
        logits = model(copy).logits
        (gradient,) = torch.autograd.grad(logits.sum(), copy)
        if _close(value, (region * gradient).pow(2).sum() / 4, atol=0.0):
            raise Hint(
                "differentiate the sum of the log-probabilities (F.log_softmax), not the logits."
            )
        (gradient,) = torch.autograd.grad(F.log_softmax(model(copy).logits, 1).sum(), copy)
        if _close(value, gradient.pow(2).sum() / 4, atol=0.0):
            raise Hint("only the forbidden pixels count: multiply the gradient by the region.")
        if _close(value, (region * gradient).pow(2).mean(), atol=0.0):
            raise Hint("sum over pixels and channels and divide by the number of images only.")
        if _close(value, (region * gradient).abs().sum() / 4, atol=0.0):
            raise Hint("square the gradient on the region (RRR penalises its square).")
        raise Hint(
            "the value differs from RRR: the gradient of the summed log-probabilities with "
            "respect to the pixels, times the region, squared, summed, divided by B."
        )
    model.zero_grad()
    if not value.requires_grad:
        raise Hint(
            "the value is right but cannot be trained: take the input gradient with "
            "create_graph=True (double backpropagation)."
        )
    value.backward()
    weights = model.classifier.weight.grad
    if weights is None or not weights.abs().sum() > 0:
        raise Hint("no gradient reaches the weights: use create_graph=True in autograd.grad.")
    return "your penalty equals the kit's RRRGuidance and trains the weights (double backprop)."
