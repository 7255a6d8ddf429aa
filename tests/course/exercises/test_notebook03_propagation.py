"""The check of notebook 03's propagation step (agkit.course.exercises.notebook03_propagation)."""

import pytest
import torch.nn.functional as F
from exercise_testing import fails_with, passes

from agkit.course import exercises

# --------------------------------------------------------------- one propagation step


def propose(probs, size, threshold=">=", upsample="nearest", confidence="decided"):
    cells = (probs >= 0.5) if threshold == ">=" else (probs > 0.5)
    masks = F.interpolate(cells.float(), size=(size, size), mode=upsample)
    if confidence == "decided":
        sure = (2 * probs - 1).abs().flatten(1).mean(dim=1)
    elif confidence == "mean":
        sure = probs.flatten(1).mean(dim=1)
    else:
        sure = (probs - 0.5).abs().flatten(1).mean(dim=1)
    return masks, sure


@pytest.mark.parametrize(
    "fn",
    [
        propose,
        lambda p, s: (
            p.repeat_interleave(s // 4, -1).repeat_interleave(s // 4, -2) >= 0.5,
            (p - 0.5).abs().mean(dim=(1, 2, 3)) * 2,
        ),
    ],
)
def test_propagation_step_check_accepts_other_right_answers(fn):
    passes(exercises.check_propagation_step, fn)


@pytest.mark.parametrize(
    "fn, words",
    [
        (lambda p, s: propose(p, s, threshold=">"), ">= 0.5, not > 0.5"),
        (lambda p, s: propose(p, s, upsample="bilinear"), "only 0 and 1"),
        (lambda p, s: propose(p, s, confidence="mean"), "mean of |2p - 1|"),
        (lambda p, s: propose(p, s, confidence="half"), "that is half of it"),
        (lambda p, s: propose(p, s)[0], "return the pair (masks, confidence)"),
        (lambda p, s: (propose(p, s)[0][..., :8, :8], propose(p, s)[1]), "should have shape"),
        (lambda p, s: (propose(p.transpose(-1, -2), s)[0], propose(p, s)[1]), "transposed"),
    ],
)
def test_propagation_step_check_names_the_mistakes(fn, words):
    fails_with(exercises.check_propagation_step, fn, words)
