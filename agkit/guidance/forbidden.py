""" "Don't look here": push CAM mass out of a forbidden region."""

from __future__ import annotations

import torch

from agkit.guidance.base import GuidanceTerm, check_regions, images_with, zero
from agkit.guidance.cam import CAMGuidance
from agkit.method.metrics import attention_mass


class ForbiddenGuidance(GuidanceTerm):
    """Push each CAM's softmax mass out of a forbidden region: ``-log(1 - mass inside)``.

    The "don't look here" counterpart of the paper's loss, in the spirit of Ross et al.'s
    annotation matrices (IJCAI 2017) and Teso and Kersting's explanatory interactive learning
    (AIES 2019), which let a user mark what must *not* matter. ``mass`` is the share of a
    class map's softmax attention on the forbidden pixels (``attention_mass`` with
    ``cells="area"``); the term is the mean of ``-log(1 - mass)`` over every class map of
    every image with a non-empty forbidden region: 0 when no attention is there, growing
    without bound as all of it is.

    Uses ``out.cams`` (B x N x h x w) and ``forbidden`` (B x 1 x H x W). With
    ``with_positive=True`` the paper's CAM loss on ``masks`` is added (both kinds of
    annotation at once).
    """

    name = "forbidden"

    def __init__(self, with_positive: bool = False, resolution: str = "feature"):
        self.with_positive = with_positive
        self.positive = CAMGuidance(resolution=resolution)

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden=None):
        check_regions(out, masks, forbidden)
        total = zero(out)
        present = images_with(forbidden)
        if forbidden is not None and present is not None and present.any():
            mass = attention_mass(out.cams[present], forbidden[present], cells="area")  # b x N
            # clamp: a region covering every cell would give log(0); keep the loss finite
            total = total - torch.log1p(-mass.clamp(max=1 - 1e-6)).mean()
        if self.with_positive and masks is not None:
            total = total + self.positive(model, images, labels, masks, has_mask, out)
        return total
