"""The checks of notebook 05 (agkit.course.exercises.notebook05)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_testing import blank, fails_with, passes

from agkit.course import exercises

# ---------------------------------------------------------------------------------- 05


def sens_spec(labels, predicted):
    return (
        ((predicted == 1) & (labels == 1)).sum() / (labels == 1).sum(),
        ((predicted == 0) & (labels == 0)).sum() / (labels == 0).sum(),
    )


def sens_spec_numpy(labels, predicted):
    y, p = np.asarray(labels), np.asarray(predicted)
    return np.mean(p[y == 1] == 1), np.mean(p[y == 0] == 0)


def sens_spec_loop(labels, predicted):
    counts = {(a, b): 0 for a in (0, 1) for b in (0, 1)}
    for y, p in zip(labels.tolist(), predicted.tolist(), strict=True):
        counts[y, p] += 1
    return [
        counts[1, 1] / (counts[1, 1] + counts[1, 0]),
        counts[0, 0] / (counts[0, 0] + counts[0, 1]),
    ]


@pytest.mark.parametrize("fn", [sens_spec, sens_spec_numpy, sens_spec_loop])
def test_sensitivity_specificity_check_accepts_other_right_answers(fn):
    passes(exercises.check_sensitivity_specificity, fn)


def test_sensitivity_specificity_check_names_the_mistakes():
    check = exercises.check_sensitivity_specificity
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda y, p: sens_spec(y, p)[::-1], "other order")
    fails_with(
        check,
        lambda y, p: (((p == 1) & (y == 1)).sum() / (p == 1).sum(), sens_spec(y, p)[1]),
        "precision",
    )
    fails_with(
        check,
        lambda y, p: (((p == 1) & (y == 1)).sum(), ((p == 0) & (y == 0)).sum()),
        "those are counts",
    )
    fails_with(check, lambda y, p: ((y == p).float().mean(),) * 2, "accuracy")
    fails_with(
        check,
        lambda y, p: {"sensitivity": sens_spec(y, p)[0], "specificity": sens_spec(y, p)[1]},
        "returned a dict",
    )


def uniform(masks, cam_size):
    small = F.adaptive_max_pool2d(masks, cam_size).flatten(1)
    annotated = masks.flatten(1).sum(1) > 0
    return small.mean(1)[annotated].mean()


def uniform_numpy(masks, cam_size):
    h, w = cam_size
    shares = []
    for mask in masks[:, 0].numpy():
        if mask.any():
            cells = mask.reshape(h, mask.shape[0] // h, w, mask.shape[1] // w).max(axis=(1, 3))
            shares.append(cells.mean())
    return float(np.mean(shares))


def uniform_uniform_cams(masks, cam_size):
    annotated = masks[masks.flatten(1).amax(1) > 0]
    attention = torch.full((len(annotated), *cam_size), 1 / (cam_size[0] * cam_size[1]))
    small = F.adaptive_max_pool2d(annotated, cam_size)[:, 0]
    return (attention * small).flatten(1).sum(1).mean().item()


@pytest.mark.parametrize("fn", [uniform, uniform_numpy, uniform_uniform_cams])
def test_uniform_chance_check_accepts_other_right_answers(fn):
    passes(exercises.check_uniform_chance, fn)


def test_uniform_chance_check_names_the_mistakes():
    check = exercises.check_uniform_chance
    fails_with(check, blank, "returned nothing")
    fails_with(
        check,
        lambda m, s: F.adaptive_max_pool2d(m, s).flatten(1).mean(1).mean(),
        "leave out the images without a mask",
    )
    fails_with(
        check,
        lambda m, s: m[m.flatten(1).sum(1) > 0].flatten(1).mean(1).mean(),
        "count the CAM cells the mask touches",
    )
    fails_with(
        check,
        lambda m, s: F.adaptive_avg_pool2d(m[m.flatten(1).sum(1) > 0], s).flatten(1).mean(),
        "the share of the mask's pixels",
    )
    fails_with(
        check, lambda m, s: F.adaptive_max_pool2d(m, s).flatten(1).mean(1), "returned a Tensor"
    )
