""" "Look here": the paper's CAM loss as a guidance term (Liao et al., IEEE JBHI 2022, Eq. 4)."""

from __future__ import annotations

import torch

from agkit.engine.guards import DIVERGENCE_FACTOR
from agkit.guidance.base import GuidanceTerm, check_regions
from agkit.method.camnet import CAMOutput
from agkit.method.loss import attention_guidance_loss, attention_loss_floor, chance_attention_loss


class CAMGuidance(GuidanceTerm):
    """Mean of ``-log softmax(CAM)`` over every annotated position of every class map: it
    pulls each CAM's probability mass into the positive mask.

    The term is ``agkit.method.loss.attention_guidance_loss`` (see there for ``resolution``
    and ``class_maps``) on the masks of the images that have one (has_mask). Uses
    ``out.cams`` (B x N x h x w) and ``masks`` (B x 1 x H x W). Designed for softmax pooling.
    """

    name = "cam"
    pooling = "softmax"

    def __init__(self, resolution: str = "feature", class_maps: str = "all"):
        self.resolution, self.class_maps = resolution, class_maps

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden=None):
        check_regions(out, masks, forbidden)
        if masks is None:
            raise ValueError(
                "the CAM guidance term needs masks in every batch (all zeros for images "
                "without annotation); build the loader from a GuidedDataset with its masks."
            )
        kept = masks * has_mask.to(masks.dtype).view(-1, 1, 1, 1)
        return attention_guidance_loss(
            out.cams, kept, self.resolution, self.class_maps, labels=labels
        )

    def _grid(self, masks: torch.Tensor, out: CAMOutput) -> tuple[int, int]:
        grid = out.cams.shape[-2:] if self.resolution == "feature" else masks.shape[-2:]
        return int(grid[0]), int(grid[1])

    def floor(self, masks: torch.Tensor | None, out: CAMOutput) -> float:
        """The loss of a CAM spread evenly over the masks (0 on a batch without masks)."""
        if masks is None or not bool(masks.any()):
            return 0.0
        return attention_loss_floor(masks, self._grid(masks, out))

    def bound(self, masks: torch.Tensor | None, out: CAMOutput) -> float:
        """100 times a flat CAM's loss, log P for P positions."""
        if masks is None or not bool(masks.any()):
            return float("inf")
        return DIVERGENCE_FACTOR * chance_attention_loss(self._grid(masks, out))
