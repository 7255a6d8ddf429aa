"""The check of notebook 03's propagation step: mask proposals from a segmenter's cell
probabilities, with their confidence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agkit.course.exercises.answers import (
    _tensor,
)
from agkit.course.exercises.feedback import Hint, _what
from agkit.course.exercises.runner import _check
from agkit.propagation import segmenter


def _grid_probabilities() -> torch.Tensor:
    """3 x 1 x 4 x 4 cell probabilities: random ones, one with cells at exactly 0.5, and
    one that is sure everywhere (0 or 1)."""
    g = torch.Generator().manual_seed(7)
    probs = torch.rand(3, 1, 4, 4, generator=g)
    probs[1, 0, :2] = 0.5  # on the threshold: in the mask
    probs[2] = (probs[2] > 0.5).float()
    return probs


@_check("propagation step", uses=((segmenter, "masks_from_probabilities"),))
def check_propagation_step(student) -> str:
    """fn(probs B x 1 x h x w, size) -> (masks B x 1 x size x size of 0/1, confidence B)."""
    probs, size = _grid_probabilities(), 16
    value = student(probs.clone(), size)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Hint(f"your function returned {_what(value)}; return the pair (masks, confidence).")
    masks = _tensor(value[0], (3, 1, size, size), "masks B x 1 x size x size").float()
    confidence = _tensor(value[1], (3,), "one confidence per image").float()
    expected_masks, expected_confidence = segmenter.masks_from_probabilities(probs, size)
    if ((masks != 0) & (masks != 1)).any():
        raise Hint(
            "a mask holds only 0 and 1: threshold the probabilities first, then enlarge "
            "the cells with mode='nearest' (bilinear blends them)."
        )
    if not torch.equal(masks, expected_masks):
        if torch.equal(masks, F.interpolate((probs > 0.5).float(), size=(size, size))):
            raise Hint("a cell at exactly 0.5 counts as in the mask: use >= 0.5, not > 0.5.")
        if torch.equal(masks[:, :, ::4, ::4], expected_masks[:, :, ::4, ::4].transpose(-1, -2)):
            raise Hint("the mask is transposed: keep rows as rows (h, then w).")
        raise Hint(
            "the masks differ from the proposals: a pixel is in the mask when the "
            "probability of the grid cell it lies in is >= 0.5."
        )
    if torch.allclose(confidence, probs.flatten(1).mean(dim=1), atol=1e-5):
        raise Hint(
            "that is the mean probability; the confidence is how *decided* the cells are, "
            "the mean of |2p - 1| (1 when every cell is 0 or 1, 0 when every cell is 0.5)."
        )
    if torch.allclose(confidence, (probs - 0.5).abs().flatten(1).mean(dim=1), atol=1e-5):
        raise Hint("that is half of it: |2p - 1| runs from 0 to 1, |p - 0.5| only to 0.5.")
    if not torch.allclose(confidence, expected_confidence, atol=1e-5):
        raise Hint(
            f"the confidences are {[round(float(c), 3) for c in confidence]}, they should be "
            f"{[round(float(c), 3) for c in expected_confidence]}: the mean over the cells "
            "of |2p - 1|."
        )
    return (
        "your proposals are the kit's, a cell on the threshold included; an image the "
        f"segmenter is sure of gets confidence {float(expected_confidence[2]):.0f}."
    )
