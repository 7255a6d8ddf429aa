"""The attention-guidance loss: pull each CAM's probability mass into the human's mask.

Turn every class map into a probability distribution over positions,
``A_c = softmax_ij(M_c)``, and take the mean of ``-log A_c`` over the annotated positions:

    L_att = - sum_{n,c,i,j} S_n(i,j) log A_{n,c}(i,j) / sum_{n,c,i,j} S_n(i,j)

The loss is smallest when the maps put all their mass inside the masks. Images whose mask
is all zero (no annotation) contribute neither to the sum nor to the count, so partially
annotated batches work unchanged. The training objective is ``CE + lam * L_att``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RESOLUTIONS = ("feature", "input")
CHANNELS = ("all", "target")


def check_masks(masks: torch.Tensor, batch_size: int) -> None:
    """Raise a ValueError that names the fix unless masks is B x 1 x H x W with values 0/1."""
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(
            f"masks must be shaped B x 1 x H x W, got {tuple(masks.shape)}; "
            "for a single H x W mask use mask[None, None]."
        )
    if masks.shape[0] != batch_size:
        raise ValueError(f"masks hold {masks.shape[0]} images but the CAMs hold {batch_size}; "
                         "pass one mask per image (all zeros for an image without one).")
    if ((masks != 0) & (masks != 1)).any():
        raise ValueError("mask values must be 0 or 1; binarise soft masks first, "
                         "e.g. (mask > 0.5).float().")


def attention_guidance_loss(
    cams: torch.Tensor,
    masks: torch.Tensor,
    resolution: str = "feature",
    channels: str = "all",
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of -log softmax(CAM) over every annotated position (see the module docstring).

    Args:
        cams: B x N x h x w raw class activation maps (``CAMNet(x).cams``).
        masks: B x 1 x H x W guidance masks at input resolution, values 0/1;
            an all-zero mask marks an image without annotation.
        resolution: "feature" shrinks the masks to h x w by nearest neighbour (the
            authors' code); "input" enlarges the CAMs to H x W bicubically before the
            softmax (the paper's Eq. 4).
        channels: "all" averages over every class map (the authors' choice);
            "target" uses only the map of each image's true class (needs ``targets``).
        targets: B int64 class indices, required for channels="target".

    Returns:
        A scalar tensor. It is exactly 0 (and still differentiable) when no image in the
        batch is annotated, never NaN.
    """
    if cams.ndim != 4:
        raise ValueError(f"cams must be shaped B x N x h x w, got {tuple(cams.shape)}.")
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}; choose 'feature' or 'input'.")
    if channels not in CHANNELS:
        raise ValueError(f"unknown channels {channels!r}; choose 'all' or 'target'.")
    batch, num_classes, h, w = cams.shape
    check_masks(masks, batch)
    if masks.shape[2] < h or masks.shape[3] < w:
        raise ValueError(
            f"masks must be at input resolution, at least the CAM size {h} x {w}; got "
            f"{masks.shape[2]} x {masks.shape[3]}. Pass the masks that came with the images."
        )
    if torch.isnan(cams).any():
        raise ValueError("the CAMs contain NaN: training has diverged; lower the learning "
                         "rate or lambda and restart from the last good checkpoint.")

    masks = masks.to(cams.dtype)
    if resolution == "feature":
        maps = cams
        masks = F.interpolate(masks, size=(h, w), mode="nearest")
    else:
        maps = F.interpolate(cams, size=masks.shape[-2:], mode="bicubic", align_corners=False)

    log_attention = F.log_softmax(maps.flatten(2), dim=2)  # B x N x P
    flat_masks = masks.flatten(2)  # B x 1 x P, broadcast over the N class maps

    if channels == "target":
        if targets is None:
            raise ValueError("channels='target' needs targets (the B class labels).")
        targets = torch.as_tensor(targets, device=cams.device).long()
        if targets.shape != (batch,):
            raise ValueError(f"targets must hold one label per image ({batch}), got shape "
                             f"{tuple(targets.shape)}.")
        if (targets < 0).any() or (targets >= num_classes).any():
            raise ValueError(f"targets must lie in [0, {num_classes}), got values "
                             f"{targets.min().item()}..{targets.max().item()}.")
        index = targets[:, None, None].expand(-1, 1, log_attention.shape[2])
        log_attention = log_attention.gather(1, index)  # B x 1 x P

    annotated = flat_masks.sum() * log_attention.shape[1]
    if annotated == 0:
        return cams.sum() * 0.0  # keeps the graph: backward() works and gives zero grads
    return -(flat_masks * log_attention).sum() / annotated
