"""The checks of notebook 01 (agkit.course.exercises.notebook01): right answers written in
other ways pass, blanks and typical mistakes fail with the sentence that names them.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_testing import blank, fails_with, passes

from agkit.course import exercises

# ---------------------------------------------------------------------------------- 01


def cam(features, weight, bias):
    return torch.einsum("nk,bkhw->bnhw", weight, features) + bias[None, :, None, None]


def cam_matmul(features, weight, bias):
    b, k, h, w = features.shape
    flat = weight @ features.flatten(2)  # B x N x (h*w)
    return (flat + bias[:, None]).view(b, -1, h, w)


def cam_conv(features, weight, bias):
    return F.conv2d(features, weight[:, :, None, None], bias)


def cam_loop(features, weight, bias):
    maps = [
        sum(weight[c, k] * features[:, k] for k in range(weight.shape[1])) + bias[c]
        for c in range(weight.shape[0])
    ]
    return torch.stack(maps, dim=1)


@pytest.mark.parametrize("fn", [cam, cam_matmul, cam_conv, cam_loop])
def test_cam_check_accepts_other_right_answers(fn):
    passes(exercises.check_cam, fn)


def test_cam_check_names_the_mistakes():
    check = exercises.check_cam
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda f, w, b: torch.einsum("nk,bkhw->bnhw", w, f), "add the class's bias")
    fails_with(check, lambda f, w, b: torch.einsum("nk,bkhw->bhwn", w, f) + b, "should have shape")
    fails_with(check, lambda f, w, b: cam(f, w, b).relu(), "no ReLU")
    fails_with(check, lambda f, w, b: cam(f, w, b).detach(), "no gradient reaches")
    fails_with(check, lambda f, w, b: cam(f, w, b) * 2, "differ from CAMNet")
    fails_with(check, lambda f, w, b: cam(f, w, b.detach()), "no gradient reaches")
    fails_with(check, None, "pass your function")


def test_miss_cam_numpy_wrapped_in_a_tensor_that_requires_grad():
    def numpy_cam(features, weight, bias):
        f, w, b = (t.detach().numpy() for t in (features, weight, bias))
        cams = np.einsum("nk,bkhw->bnhw", w, f) + b[None, :, None, None]
        return torch.tensor(cams, requires_grad=True)

    fails_with(exercises.check_cam, numpy_cam, "no gradient reaches the features")


def test_check_prints_one_line(capsys):
    exercises.check_cam(cam)
    assert capsys.readouterr().out.startswith("✓ CAM from features")


def test_average_pooling_check_accepts_other_right_answers():
    check = exercises.check_average_pooling
    passes(check, lambda cams: cams.mean(dim=(2, 3)))
    passes(check, lambda cams: cams.sum(dim=(2, 3)) / (cams.shape[2] * cams.shape[3]))
    passes(check, lambda cams: F.adaptive_avg_pool2d(cams, 1)[:, :, 0, 0])
    passes(check, lambda cams: cams.flatten(2).mean(-1))


def test_average_pooling_check_names_the_mistakes():
    check = exercises.check_average_pooling
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda cams: cams.sum(dim=(2, 3)), "summed")
    fails_with(check, lambda cams: cams.mean(dim=1), "shape")
    fails_with(check, lambda cams: cams.amax(dim=(2, 3)), "max pooling")
    fails_with(check, lambda cams: cams.mean(dim=(2, 3)).detach(), "no gradient reaches")
    fails_with(
        check,
        lambda cams: torch.tensor(cams.detach().numpy().mean(axis=(2, 3)), requires_grad=True),
        "no gradient reaches",
    )


def mass(cams, masks, classes):
    maps = cams[torch.arange(len(cams)), classes]
    small = F.adaptive_max_pool2d(masks, maps.shape[-2:])[:, 0]
    return (maps.flatten(1).softmax(1) * small.flatten(1)).sum(1)


def mass_loop_numpy(cams, masks, classes):
    out = []
    for k in range(len(cams)):
        m = cams[k, classes[k]].numpy().astype(np.float64)
        attention = np.exp(m - m.max())
        attention /= attention.sum()
        h, w = m.shape
        sh, sw = masks.shape[-2] // h, masks.shape[-1] // w
        small = masks[k, 0].numpy().reshape(h, sh, w, sw).max(axis=(1, 3))
        out.append((attention * small).sum())
    return np.array(out)


def mass_gather(cams, masks, classes):
    maps = cams.gather(1, classes[:, None, None, None].expand(-1, 1, *cams.shape[-2:]))
    attention = torch.softmax(maps.flatten(1), dim=1)
    return (attention * F.adaptive_max_pool2d(masks, cams.shape[-2:]).flatten(1)).sum(1)


@pytest.mark.parametrize("fn", [mass, mass_loop_numpy, mass_gather])
def test_mass_in_mask_check_accepts_other_right_answers(fn):
    passes(exercises.check_mass_in_mask, fn)


def test_mass_in_mask_check_names_the_mistakes():
    check = exercises.check_mass_in_mask
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda c, m, k: mass(c, m, torch.zeros_like(k)), "another class")

    def raw(c, m, k):
        small = F.adaptive_max_pool2d(m, (8, 8)).flatten(1)
        return (c[torch.arange(len(c)), k].flatten(1) * small).sum(1)

    fails_with(check, raw, "between 0 and 1")

    def by_row(c, m, k):
        rows = c[torch.arange(len(c)), k].softmax(-1)
        return (rows * F.adaptive_max_pool2d(m, (8, 8))[:, 0]).flatten(1).sum(1)

    fails_with(check, by_row, "all h x w positions")

    def average_shrink(c, m, k):
        maps = c[torch.arange(len(c)), k].flatten(1).softmax(1)
        return (maps * F.adaptive_avg_pool2d(m, (8, 8)).flatten(1)).sum(1)

    fails_with(check, average_shrink, "adaptive_max_pool2d")

    def over_classes(c, m, k):
        attention = c.softmax(dim=1)[torch.arange(len(c)), k]
        return (attention * F.adaptive_max_pool2d(m, (8, 8))[:, 0]).flatten(1).sum(1)

    fails_with(check, over_classes, "not over the classes")
