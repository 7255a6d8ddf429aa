"""The checks of notebook 04: what a 95 % bootstrap interval means, a box from a mask."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from agkit.course.exercises.answers import (
    _extent,
    _numbers,
    _tensor,
)
from agkit.course.exercises.feedback import Hint
from agkit.course.exercises.inputs import _masks
from agkit.course.exercises.runner import _check
from agkit.data import mask_quality
from agkit.data.mask_quality import bounding_boxes

# --------------------------------------------------------------------------------------
# Notebook 04: what a 95 % interval means; a box from a mask
# --------------------------------------------------------------------------------------

_VALUES = [
    0.6213,
    0.7139,
    0.9047,
    0.5521,
    0.8068,
    0.6872,
]  # six, so a near-miss shows (3 allow almost any)
_DRAWS = 20_000


def _bootstrap_means(values) -> np.ndarray:
    """Every equally likely resample's mean (n**n of them): the exact bootstrap distribution."""
    n = len(values)
    picks = np.array(list(itertools.product(range(n), repeat=n)))
    return np.asarray(values, dtype=float)[picks].mean(axis=1)


def _quantile_band(means: np.ndarray, level: float, draws: int) -> tuple[float, float]:
    """Where the ``level`` quantile of ``draws`` resampled means falls (4 standard errors of
    the Monte Carlo either side), read off the exact bootstrap distribution ``means``."""
    spread = 4 * math.sqrt(level * (1 - level) / draws)
    low, high = np.quantile(means, [max(level - spread, 0), min(level + spread, 1)])
    return float(low) - 1e-9, float(high) + 1e-9


@_check("bootstrap interval")
def check_bootstrap_interval(student) -> str:
    """fn(values, draws, seed) -> (low, high), the percentile bootstrap 95 % interval."""
    values, draws = list(_VALUES), _DRAWS
    low, high = _numbers(student(list(values), draws, 0), "(low, high)")
    mean = float(np.mean(values))
    means = _bootstrap_means(values)
    sd = float(np.std(values))
    normal = {
        (mean - 1.96 * sd / math.sqrt(len(values)), mean + 1.96 * sd / math.sqrt(len(values))),
        (mean - 1.96 * sd, mean + 1.96 * sd),
        (
            mean - 1.96 * np.std(values, ddof=1) / math.sqrt(len(values)),
            mean + 1.96 * np.std(values, ddof=1) / math.sqrt(len(values)),
        ),
    }
    if any(
        math.isclose(low, a, abs_tol=1e-6) and math.isclose(high, b, abs_tol=1e-6)
        for a, b in normal
    ):
        raise Hint(
            "that is the normal approximation (mean +- 1.96 standard deviations); the "
            "bootstrap reads the quantiles off the means of resamples instead."
        )
    if low > high:
        raise Hint("the interval is (low, high): the smaller quantile comes first.")
    if math.isclose(low, mean, abs_tol=1e-9) and math.isclose(high, mean, abs_tol=1e-9):
        raise Hint(
            "every resample has the same mean: draw with replacement (replace=True), so a "
            "resample can hold a value twice and leave another out."
        )
    if not low <= mean <= high:
        raise Hint("the interval must contain the mean of the values.")
    if low < min(values) - 1e-9 or high > max(values) + 1e-9:
        raise Hint(
            "a mean of resampled values can never leave [min, max]; resample the "
            "values with replacement and take the mean of each resample."
        )
    raw = [
        np.quantile(values, [0.025, 0.975], method=m)
        for m in ("linear", "inverted_cdf", "nearest", "lower", "higher", "midpoint")
    ]
    if any(np.allclose((low, high), q, atol=1e-4) for q in raw) or (low, high) == (
        min(values),
        max(values),
    ):
        raise Hint(
            "those are quantiles of the values themselves; take the mean of each resample "
            "first, then the quantiles of those means."
        )
    bands = [_quantile_band(means, level, draws) for level in (0.025, 0.975)]
    inside = [a <= v <= b for v, (a, b) in zip((low, high), bands, strict=True)]
    if not all(inside):
        for level, name in ((0.05, "90 %"), (0.1, "80 %"), (0.16, "68 %"), (0.005, "99 %")):
            a, b = _quantile_band(means, level, draws), _quantile_band(means, 1 - level, draws)
            if a[0] <= low <= a[1] and b[0] <= high <= b[1]:
                raise Hint(
                    f"that is a {name} interval; a 95 % interval takes the 2.5 % and 97.5 % "
                    "quantiles of the means."
                )
        raise Hint(
            f"({low:.3f}, {high:.3f}) is not the 2.5 % and 97.5 % quantiles of the means of "
            f"{draws} resamples (each as long as the values) of {len(values)} values."
        )
    # a few draws make the interval vary from seed to seed, so an ignored seed shows
    pairs = [
        [_numbers(student(list(values), 200, seed), "(low, high)") for _ in "ab"]
        for seed in (1, 2, 3)
    ]
    if any(first != second for first, second in pairs):
        raise Hint(
            "two calls with the same seed gave different intervals: make the generator "
            "from it, numpy.random.default_rng(seed)."
        )
    return (
        f"({low:.3f}, {high:.3f}) for six values; with three seeds the same interval spans "
        "almost min..max."
    )


def _box_masks(empty: bool = False) -> torch.Tensor:
    """Masks 4 x 1 x 24 x 24: a rectangle with a stray pixel far off, an L whose first pixel
    (in reading order) is not its leftmost, a thin line, a small diagonal; ``empty``: one more
    that is all zero."""
    masks = _masks(4, 24)
    masks[0, 0, 20, 3] = 1  # a stray pixel stretches the box
    masks[1] = 0
    masks[1, 0, 3:14, 12:15] = 1
    masks[1, 0, 11:14, 2:15] = 1  # the L's foot reaches further left than its top
    masks[2] = 0
    masks[2, 0, 6, 1:22] = 1
    masks[3] = 0
    for k in range(5):
        masks[3, 0, 15 + k, 9 + k] = 1
    if empty:
        masks = torch.cat([masks[:2], torch.zeros(1, 1, 24, 24), masks[2:]])
    return masks


def _box_from_mask_hint(value: torch.Tensor, masks: torch.Tensor, expected: torch.Tensor) -> str:
    if torch.equal(value, masks):
        return "that is the mask itself; fill its whole bounding box."
    if torch.equal(value, expected.transpose(2, 3)):
        return (
            "rows and columns are swapped: the first index of a mask is its row (y), the "
            "second its column (x)."
        )
    union = bounding_boxes(masks.amax(dim=0, keepdim=True)).expand_as(masks)
    if torch.equal(value, union):
        return "each mask gets its own box, not one box around all of them."
    by_reading_order = torch.zeros_like(masks)
    for k in range(len(masks)):
        rows, cols = torch.nonzero(masks[k, 0], as_tuple=True)
        if len(rows):
            c0, c1 = sorted((int(cols[0]), int(cols[-1])))
            by_reading_order[k, 0, rows[0] : rows[-1] + 1, c0 : c1 + 1] = 1
    if torch.equal(value, by_reading_order):
        return (
            "the columns of the first and the last mask pixel (in reading order) are not "
            "the leftmost and the rightmost: take the smallest and the largest column."
        )
    for k in range(len(masks)):
        found, right = _extent(value[k, 0]), _extent(expected[k, 0])
        if found == right:
            continue
        # only an empty mask has no box, and check_box_from_mask saw that box stay empty
        assert right is not None
        if value[k, 0].sum() == 0:
            found = (R0 := right[0], R0, right[2], right[2])  # an empty box: too small
        if found is None:
            return "each box must be one filled rectangle."
        (r0, r1, c0, c1), (R0, R1, C0, C1) = found, right
        if r0 >= R0 and c0 >= C0 and r1 <= R1 and c1 <= C1:
            return (
                "the box is too small: it runs from the first to the last row and column "
                "that hold any mask pixel, both included."
            )
        return (
            "the box is too big: it runs from the first to the last row and column that "
            "hold any mask pixel, both included."
        )
    return "the boxes differ from the reference."


@_check("mask to box", uses=((mask_quality, "bounding_boxes"),))
def check_box_from_mask(student) -> str:
    """fn(masks n x 1 x H x W 0/1) -> n x 1 x H x W, each mask's bounding box filled."""
    for empty in (False, True):
        masks = _box_masks(empty)
        expected = bounding_boxes(masks)
        value = student(
            masks.clone(),
            when="given a batch with an empty mask" if empty else None,
            advice="An empty mask has no first or last row: leave its box empty" if empty else None,
        )
        value = _tensor(value, tuple(masks.shape), "one box mask per image", numpy_ok=True).float()
        if torch.equal(value, expected):
            continue
        if empty and value[2].sum() > 0:
            raise Hint("an empty mask must stay empty.")
        raise Hint(_box_from_mask_hint(value, masks, expected))
    return "your boxes are exact, a stray pixel and an L-shape included, and empty stays empty."
