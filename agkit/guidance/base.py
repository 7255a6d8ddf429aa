"""What every guidance term shares: its interface, and the helpers the terms are built from.

A term is called as

    term(model, images, labels, masks, has_mask, out, forbidden) -> scalar tensor

    images     B x C x H x W float
    labels     B long
    masks      B x 1 x H x W 0/1 (float, int or bool), "look here" (the evidence), or None
    has_mask   B bool, True where the image has a positive mask
    out        the model's CAMOutput(logits B x N, cams B x N x h x w) for ``images``,
               computed with the graph
    forbidden  B x 1 x H x W float 0/1, "don't look here" (a known confounder), or None

and training minimises ``CE + lam * term(...)``. ``GuidanceTerm`` says what else the training
step asks of a term: the pooling it is designed for, whether it differentiates with respect
to the pixels (``needs_input_grad``: the step makes the images a leaf that requires
gradients), whether it needs any annotation (``needs_annotation``: ``fit`` warns when such a
term never saw one), the smallest value it can take on a batch (``floor``, shown beside the
loss) and the largest sane one (``bound``, past which the step calls the run diverged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from agkit.method.camnet import CAMOutput
from agkit.method.loss import check_masks, shrink_masks


class GuidanceTerm:
    """The base of every guidance term; a subclass implements ``__call__``.

    Any callable with the signature above works as a term too: the training step reads these
    attributes with their defaults here.
    """

    name = "term"
    pooling = "softmax"
    needs_input_grad = False
    needs_annotation = True

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden=None):
        raise NotImplementedError

    def floor(self, masks: torch.Tensor | None, out: CAMOutput) -> float:
        """The smallest value the term can take on this batch (NaN: not known)."""
        return math.nan

    def bound(self, masks: torch.Tensor | None, out: CAMOutput) -> float:
        """A value past which training has diverged (inf: no bound)."""
        return math.inf

    def __repr__(self) -> str:
        # A term's settings, e.g. CAMGuidance(resolution='feature', class_maps='all'): what a
        # checkpoint stores to refuse resuming with another term.
        settings = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({settings})"


def zero(out: CAMOutput) -> torch.Tensor:
    """A zero that stays connected to the graph, so backward() works and adds nothing."""
    return out.logits.sum() * 0.0


def check_regions(
    out: CAMOutput, masks: torch.Tensor | None, forbidden: torch.Tensor | None
) -> None:
    """Refuse malformed masks or forbidden regions with the CAM loss's messages."""
    cams = getattr(out, "cams", None)
    grid = None if cams is None else cams.shape[-2:]
    for name, region in (("masks", masks), ("forbidden", forbidden)):
        if region is not None:
            check_masks(region, out.logits.shape[0], grid, name)


def masks_at(masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """0/1 masks B x 1 x H' x W' (float) at the image size (H, W): B x 1 x H x W.

    A pixel is marked when the mask marks any part of it (adaptive max pooling, as
    ``shrink_masks``); a mask at 1/k of the image's size becomes k x k blocks.
    """
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return shrink_masks(masks, size)


def images_with(region: torch.Tensor | None) -> torch.Tensor | None:
    """B bools: which images have a non-empty region (None when there is no region)."""
    if region is None:
        return None
    return region.flatten(1).amax(dim=1) > 0
