"""The checks of notebook 05: sensitivity and specificity, and the chance level of a test
split.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from agkit.course.exercises.answers import (
    _number,
    _numbers,
)
from agkit.course.exercises.feedback import Hint
from agkit.course.exercises.inputs import _masks
from agkit.course.exercises.runner import _check
from agkit.method import metrics

# --------------------------------------------------------------------------------------
# Notebook 05: sensitivity and specificity, and the chance level of a test split
# --------------------------------------------------------------------------------------

_SPLITS = (
    (torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 0, 0]), torch.tensor([1, 1, 1, 0, 0, 0, 0, 0, 1, 1])),
    (
        torch.tensor([0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]),
        torch.tensor([0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0]),
    ),
)


@_check("sensitivity and specificity", uses=((metrics, "classification_metrics"),))
def check_sensitivity_specificity(student) -> str:
    """fn(labels n, predicted n) -> (sensitivity, specificity); class 1 = fractured."""
    for labels, predicted in _SPLITS:
        got = _numbers(student(labels.clone(), predicted.clone()), "(sensitivity, specificity)")
        sick, healthy = labels == 1, labels == 0
        tp, tn = int((predicted[sick] == 1).sum()), int((predicted[healthy] == 0).sum())
        right = (tp / int(sick.sum()), tn / int(healthy.sum()))
        if all(math.isclose(g, r, abs_tol=1e-6) for g, r in zip(got, right, strict=True)):
            continue
        called_sick, called_healthy = int((predicted == 1).sum()), int((predicted == 0).sum())
        if all(math.isclose(g, r, abs_tol=1e-6) for g, r in zip(got, right[::-1], strict=True)):
            raise Hint(
                "those are the share of normal images called normal and of fractured "
                "images found, in the other order."
            )
        if math.isclose(got[0], tp, abs_tol=1e-6) or math.isclose(got[1], tn, abs_tol=1e-6):
            raise Hint("those are counts; return shares, the count divided by the class's size.")
        accuracy = float((labels == predicted).float().mean())
        if any(math.isclose(g, accuracy, abs_tol=1e-6) for g in got):
            raise Hint("that is the accuracy; each share counts the images of one class only.")
        if not math.isclose(got[0], right[0], abs_tol=1e-6):
            if math.isclose(got[0], tp / called_sick, abs_tol=1e-6):
                raise Hint(
                    "you divided by the images predicted fractured (that is precision); "
                    "divide by the images that are fractured (label 1)."
                )
            raise Hint(
                "sensitivity is the share of fractured images (label 1) that were predicted "
                "fractured."
            )
        if math.isclose(got[1], tn / called_healthy, abs_tol=1e-6):
            raise Hint(
                "you divided by the images predicted normal; divide by the images that are "
                "normal (label 0)."
            )
        raise Hint(
            "specificity is the share of normal images (label 0) that were predicted normal."
        )
    return "3 of 4 fractured images found (0.75), 4 of 6 normal ones called normal (0.67)."


@_check(
    "chance level of mass in mask",
    uses=((metrics, "mass_in_mask_chance"), (metrics, "chance_levels")),
)
def check_uniform_chance(student) -> str:
    """fn(masks n x 1 x H x W, cam_size (h, w)) -> mean mass in mask of uniform attention."""
    masks = _masks(4, 32, empty=(1,))
    masks[2, 0, 29:31, 1:3] = 1  # a speck that touches one cell in part
    annotated = masks[masks.flatten(1).sum(1) > 0]
    expected = metrics.mass_in_mask_chance(annotated, (8, 8)).mean().item()
    value = _number(student(masks.clone(), (8, 8)), "one number, the mean over the images")
    if math.isclose(value, expected, abs_tol=1e-6):
        return "uniform attention scores the mask's share of the CAM cells."
    wrong = [
        (
            metrics.mass_in_mask_chance(masks, (8, 8)).mean().item(),
            "leave out the images without a mask: they have no mass in mask at all.",
        ),
        (
            metrics.pointing_game_chance(annotated).mean().item(),
            "close: that is the share of the mask's pixels; count the CAM cells the mask "
            "touches instead (shrink with F.adaptive_max_pool2d, not the pixel average).",
        ),
        (
            F.adaptive_avg_pool2d(annotated, (8, 8)).flatten(1).mean(1).mean().item(),
            "a cell counts as a whole when the mask touches it: shrink with adaptive_max_pool2d, "
            "not the average.",
        ),
        (
            1 / 64,
            "1/(h*w) is the attention on one cell; the mass in mask adds it over the "
            "cells inside the mask.",
        ),
    ]
    for level, hint in wrong:
        if math.isclose(value, level, abs_tol=1e-6):
            raise Hint(hint)
    raise Hint(
        "uniform attention puts 1/(h*w) on every cell, so it scores the share of "
        "cells inside the mask; average that over the annotated images."
    )
