"""The checks of notebook 04 (agkit.course.exercises.notebook04)."""

import numpy as np
import pytest
import torch
from exercise_testing import blank, cell, fails_with, passes

from agkit.course import exercises
from agkit.course.exercises import notebook04

# ---------------------------------------------------------------------------------- 04


def bootstrap(values, draws, seed):
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(draws, len(values))).mean(axis=1)
    return tuple(np.quantile(means, [0.025, 0.975]))


def bootstrap_integers(values, draws, seed):
    rng = np.random.default_rng(seed)
    values = np.asarray(values)
    picks = rng.integers(0, len(values), size=(draws, len(values)))
    low, high = np.percentile(values[picks].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def bootstrap_loop(values, draws=10_000, seed=0):
    rng = np.random.default_rng(seed)
    means = sorted(
        float(np.mean(rng.choice(values, len(values), replace=True))) for _ in range(draws)
    )
    return [means[int(0.025 * draws)], means[int(0.975 * draws) - 1]]


@pytest.mark.parametrize("fn", [bootstrap, bootstrap_integers, bootstrap_loop])
def test_bootstrap_interval_check_accepts_other_right_answers(fn):
    passes(exercises.check_bootstrap_interval, fn)


def test_bootstrap_interval_check_names_the_mistakes():
    check = exercises.check_bootstrap_interval
    fails_with(check, blank, "returned nothing")
    fails_with(
        check,
        lambda v, d, s: (np.mean(v) - 1.96 * np.std(v), np.mean(v) + 1.96 * np.std(v)),
        "normal approximation",
    )
    fails_with(check, lambda v, d, s: (np.mean(v) - 0.01, np.mean(v) + 0.01), "not the 2.5 %")
    fails_with(check, lambda v, d, s: (0.9, 1.0), "contain the mean")
    fails_with(check, lambda v, d, s: bootstrap(v, d, s)[::-1], "smaller quantile comes first")

    def no_replacement(values, draws, seed):
        rng = np.random.default_rng(seed)
        means = [rng.choice(values, len(values), replace=False).mean() for _ in range(draws)]
        return tuple(np.quantile(means, [0.025, 0.975]))

    fails_with(check, no_replacement, "with replacement")

    def unseeded(values, draws, seed):
        return bootstrap(values, draws, None)

    fails_with(check, unseeded, "same seed gave different intervals")


def test_miss_bootstrap_quantiles_of_the_raw_values():
    fails_with(
        exercises.check_bootstrap_interval,
        lambda v, d, s: tuple(np.quantile(v, [0.025, 0.975])),
        "quantiles of the values themselves",
    )


def test_miss_bootstrap_90_percent_interval():
    def ninety(values, draws, seed):
        rng = np.random.default_rng(seed)
        means = rng.choice(values, size=(draws, len(values))).mean(axis=1)
        return tuple(np.quantile(means, [0.05, 0.95]))

    fails_with(exercises.check_bootstrap_interval, ninety, "90 % interval")


def test_miss_bootstrap_dict_returned_says_what_was_returned():
    message = fails_with(
        exercises.check_bootstrap_interval,
        lambda v, d, s: dict(zip(("low", "high"), bootstrap(v, d, s), strict=True)),
        "returned a dict",
    )
    assert "raised" not in message


def test_bootstrap_check_uses_at_least_five_values():
    assert len(notebook04._VALUES) >= 5


def box_from_mask(masks):
    out = torch.zeros_like(masks)
    for k, mask in enumerate(masks[:, 0]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(ys):
            out[k, 0, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = 1
    return out


def box_from_mask_outer(masks):
    rows = masks.amax(dim=3) > 0  # n x 1 x H
    cols = masks.amax(dim=2) > 0  # n x 1 x W

    def between(line):
        return (line.cumsum(-1) > 0) & (line.flip(-1).cumsum(-1).flip(-1) > 0)

    return (between(rows)[..., :, None] & between(cols)[..., None, :]).float()


def box_from_mask_numpy(masks):
    out = np.zeros(masks.shape, dtype=np.float32)
    for k in range(len(masks)):
        rows = np.where(masks[k, 0].numpy().any(axis=1))[0]
        cols = np.where(masks[k, 0].numpy().any(axis=0))[0]
        if rows.size:
            out[k, 0, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = 1
    return out


@pytest.mark.parametrize("fn", [box_from_mask, box_from_mask_outer, box_from_mask_numpy])
def test_box_from_mask_check_accepts_other_right_answers(fn):
    passes(exercises.check_box_from_mask, fn)


def test_box_from_mask_check_names_the_mistakes():
    check = exercises.check_box_from_mask
    fails_with(check, blank, "returned nothing")

    def exclusive(masks):
        out = torch.zeros_like(masks)
        for k, mask in enumerate(masks[:, 0]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(ys):
                out[k, 0, ys.min() : ys.max(), xs.min() : xs.max()] = 1
        return out

    fails_with(check, exclusive, "too small")
    fails_with(check, torch.ones_like, "too big")

    def fills_empty(masks):
        empty = masks.flatten(1).amax(1) == 0
        return box_from_mask(masks) + empty[:, None, None, None].float()

    fails_with(check, fills_empty, "empty mask must stay empty")
    fails_with(check, lambda masks: masks.clone(), "the mask itself")

    def reading_order(masks):
        out = torch.zeros_like(masks)
        for k, mask in enumerate(masks[:, 0]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(ys):
                out[k, 0, ys[0] : ys[-1] + 1, min(xs[0], xs[-1]) : max(xs[0], xs[-1]) + 1] = 1
        return out

    fails_with(check, reading_order, "smallest and the largest column")

    def one_box(masks):
        return box_from_mask(masks.amax(dim=0, keepdim=True)).expand_as(masks).clone()

    fails_with(check, one_box, "its own box")


def test_miss_box_from_mask_transposed_says_swapped():
    message = fails_with(
        exercises.check_box_from_mask,
        lambda masks: box_from_mask(masks.transpose(2, 3)),
        "rows and columns are swapped",
    )
    assert "too big" not in message


def test_miss_box_from_mask_crash_on_the_empty_mask_is_told_kindly():
    fn = cell(
        "def box_from_mask(masks):\n"
        "    boxes = torch.zeros_like(masks)\n"
        "    for k in range(len(masks)):\n"
        "        rows, cols = torch.nonzero(masks[k, 0], as_tuple=True)\n"
        "        r0, r1 = rows.min(), rows.max()\n"
        "        boxes[k, 0, r0 : r1 + 1, cols.min() : cols.max() + 1] = 1\n"
        "    return boxes\n",
        "box_from_mask",
    )
    fails_with(
        exercises.check_box_from_mask,
        fn,
        "given a batch with an empty mask, your function raised RuntimeError at line 5 of "
        "your cell",
        "leave its box empty",
    )
