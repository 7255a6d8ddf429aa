"""Guards of a training step: bad data and divergence stop a run with a message that helps.

``check_batch`` refuses labels outside the model's classes and images that hold NaN or inf
(``NonFiniteImages``: a data problem, not a training one). ``check_loss`` raises
``TrainingDiverged`` when the loss is NaN or inf, or while it stays finite but has grown past
``DIVERGENCE_FACTOR`` times its value at chance: cross-entropy above 100 log N (N classes;
log N is the loss of a uniform guess) or a guidance term above its own bound (the paper's
attention loss: 100 log P for P positions, a flat CAM's loss).
"""

from __future__ import annotations

import math

import torch

DIVERGENCE_FACTOR = 100.0


class TrainingDiverged(FloatingPointError):
    """Raised when the loss stops being a finite number or grows past any sane value."""


class NonFiniteImages(ValueError):
    """Raised when input images hold NaN or inf; ``indices`` lists the bad images' positions
    in their batch."""

    def __init__(self, message: str, indices: list[int]):
        super().__init__(message)
        self.indices = indices


def check_batch(images: torch.Tensor, labels: torch.Tensor, num_classes: int | None) -> None:
    """images B x C x H x W finite; labels B in [0, num_classes) (unchecked when None)."""
    if num_classes is not None and ((labels < 0).any() or (labels >= num_classes).any()):
        low, high = int(labels.min().item()), int(labels.max().item())
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got {low}..{high}; build the model "
            f"with num_classes={high + 1} or fix the labels."
        )
    finite = torch.isfinite(images).flatten(1).all(dim=1)
    if bool(finite.all()):
        return
    bad = (~finite).nonzero().flatten().tolist()
    counts = ", ".join(
        f"image {i} ({int(torch.isnan(images[i]).sum())} NaN, "
        f"{int(torch.isinf(images[i]).sum())} inf values)"
        for i in bad[:5]
    )
    raise NonFiniteImages(
        f"a data problem, not a training one: {counts} of this batch of {len(images)}; "
        "check how these images are read and normalised (a corrupt file, a division by "
        "a zero range) before training.",
        bad,
    )


def diverged(ce: torch.Tensor, att: torch.Tensor, what: str) -> TrainingDiverged:
    """The error for a diverged step, with both losses in the message."""
    return TrainingDiverged(
        f"{what} (cross-entropy {ce.item():.4g}, attention {att.item():.4g}); training has "
        "diverged: lower the learning rate or lambda and train again."
    )


def check_outputs(ce: torch.Tensor, cams: torch.Tensor) -> None:
    """Raise TrainingDiverged when the cross-entropy or any CAM value is NaN or inf."""
    if not torch.isfinite(ce) or not torch.isfinite(cams).all():
        nan = torch.full((), float("nan"))
        raise diverged(ce, nan, "the logits or CAMs became NaN or inf")


def check_loss(
    loss: torch.Tensor,
    ce: torch.Tensor,
    att: torch.Tensor,
    *,
    num_classes: int,
    att_bound: float = math.inf,
) -> None:
    """Raise TrainingDiverged for a loss that is not finite or past its bounds (see above).

    att_bound: the largest sane value of the guidance term (inf: unbounded, or not trained).
    """
    if not torch.isfinite(loss):
        raise diverged(ce, att, f"the loss became {loss.item()}")
    if ce.item() > DIVERGENCE_FACTOR * math.log(num_classes) or att.item() > att_bound:
        raise diverged(
            ce,
            att,
            f"the loss grew to {loss.item():.4g}, over "
            f"{DIVERGENCE_FACTOR:g} times its value at chance",
        )
