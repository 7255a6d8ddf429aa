"""The attention-guidance loss: pull each CAM's probability mass into the human's mask.

Turn every class map into a probability distribution over positions,
``A_c = softmax_ij(M_c)``, and take the mean of ``-log A_c`` over the annotated positions:

    L_att = - sum_{n,c,i,j} S_n(i,j) log A_{n,c}(i,j) / sum_{n,c,i,j} S_n(i,j)

The loss is smallest when the maps put all their mass inside the masks. Images whose mask
is all zero (no annotation) contribute neither to the sum nor to the count, so partially
annotated batches work unchanged. The training objective is ``CE + lam * L_att``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

RESOLUTIONS = ("feature", "input")
CLASS_MAPS = ("all", "label")


def check_masks(
    masks: torch.Tensor,
    batch_size: int,
    min_size: Sequence[int] | None = None,
    name: str = "masks",
) -> None:
    """Raise an error that names the fix unless ``masks`` are usable guidance masks.

    Usable: a torch tensor of bools, integers or floats, shaped B x 1 x H x W with
    B = ``batch_size``, H x W at least ``min_size`` (the CAM grid h x w; the terms resample
    a mask to the grid or to the image, which needs no fewer mask pixels than cells), every
    value finite and 0 or 1. ``name`` is the argument named in the messages ("masks",
    "forbidden"). Every guidance term checks its masks here (one rule for all of them).
    """
    if not isinstance(masks, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch tensor, got {type(masks).__name__}; "
            "convert it with torch.as_tensor(...)."
        )
    if masks.is_complex():
        raise ValueError(f"{name} must hold real 0/1 values, got dtype {masks.dtype}.")
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(
            f"{name} must be shaped B x 1 x H x W, got {tuple(masks.shape)}; for "
            f"B x H x W masks use {name}[:, None], for a single H x W mask {name}[None, None]."
        )
    if masks.shape[0] != batch_size:
        raise ValueError(
            f"{name} holds {masks.shape[0]} masks but the CAMs hold {batch_size} images; "
            "pass one mask per image (all zeros for an image without one)."
        )
    if min_size is not None and (masks.shape[2] < min_size[0] or masks.shape[3] < min_size[1]):
        raise ValueError(
            f"{name} must be at input resolution, at least the CAM size {min_size[0]} x "
            f"{min_size[1]}; got {masks.shape[2]} x {masks.shape[3]}. Pass the masks that came "
            "with the images."
        )
    if masks.is_floating_point() and not bool(torch.isfinite(masks).all()):
        bad = (~torch.isfinite(masks)).flatten(1).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(
            f"{name} holds NaN or inf values (image(s) {', '.join(map(str, bad[:5]))} of the "
            "batch); a mask must be 0 or 1 everywhere: check how the masks are read and "
            "resized, e.g. torch.nan_to_num(mask) > 0.5."
        )
    if ((masks != 0) & (masks != 1)).any():
        raise ValueError(
            f"the values of {name} must be 0 or 1, got values from {masks.min().item():g} to "
            f"{masks.max().item():g}; binarise soft or 0/255 masks first, "
            "e.g. (mask > 0.5).float()."
        )


def shrink_masks(masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Masks B x 1 x H x W (0/1) on the CAM grid B x 1 x h x w: a cell the mask touches is 1.

    Every grid cell covers a block of input pixels; the cell is marked when any pixel of
    its block is marked (adaptive max pooling). On a mask made of whole blocks this is the
    nearest-neighbour resize of the authors' code; unlike it, a mask smaller than a block
    (a 5 x 5 box on a 64 px image at stride 8) never vanishes from the grid.
    """
    return F.adaptive_max_pool2d(masks, (int(size[0]), int(size[1])))


def attention_guidance_loss(
    cams: torch.Tensor,
    masks: torch.Tensor,
    resolution: str = "feature",
    class_maps: str = "all",
    labels: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean of -log softmax(CAM) over every annotated position (see the module docstring).

    Args:
        cams: B x N x h x w raw class activation maps (``CAMNet(x).cams``), any float
            dtype; the loss is computed in float32 (or float64 for float64 CAMs).
        masks: B x 1 x H x W guidance masks at input resolution, values 0/1;
            an all-zero mask marks an image without annotation.
        resolution: "feature" shrinks the masks to the h x w grid (``shrink_masks``: a
            cell counts when the mask touches it); "input" enlarges the CAMs to H x W
            bicubically before the softmax (the paper's Eq. 4).
        class_maps: "all" averages over every class map (the authors' choice);
            "label" uses only the map of each image's true class (needs ``labels``).
        labels: B int64 class indices, required for class_maps="label".
        reduction: "mean", the loss of the batch; "none", the loss of each image alone
            (B values, NaN where the mask is empty), to monitor a model.

    Returns:
        A scalar float32 (float64) tensor. It is exactly 0 (and still differentiable) when
        no image in the batch is annotated, never NaN. Its smallest possible value is not
        0 but ``attention_loss_floor(masks, grid)``.

    Raises:
        ValueError for malformed masks or labels and for CAMs holding NaN or inf.
    """
    if cams.ndim != 4:
        raise ValueError(f"cams must be shaped B x N x h x w, got {tuple(cams.shape)}.")
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}; choose 'feature' or 'input'.")
    if class_maps not in CLASS_MAPS:
        raise ValueError(f"unknown class_maps {class_maps!r}; choose 'all' or 'label'.")
    if reduction not in ("mean", "none"):
        raise ValueError(f"unknown reduction {reduction!r}; choose 'mean' or 'none'.")
    batch, num_classes, h, w = cams.shape
    check_masks(masks, batch, (h, w))
    if not torch.isfinite(cams).all():
        raise ValueError(
            "the CAMs contain NaN or inf: training has diverged; lower the "
            "learning rate or lambda and restart from the last good checkpoint."
        )

    # Half precision overflows in the bicubic upsampling and the softmax over H x W
    # positions (NaN with zero gradient), so the loss always runs in at least float32.
    dtype = torch.promote_types(cams.dtype, torch.float32)
    cams, masks = cams.to(dtype), masks.to(dtype)
    if resolution == "feature":
        maps = cams
        masks = shrink_masks(masks, (h, w))
    else:
        maps = F.interpolate(cams, size=masks.shape[-2:], mode="bicubic", align_corners=False)

    log_attention = F.log_softmax(maps.flatten(2), dim=2)  # B x N x P
    flat_masks = masks.flatten(2)  # B x 1 x P, broadcast over the N class maps

    if class_maps == "label":
        if labels is None:
            raise ValueError("class_maps='label' needs labels (the B class indices).")
        labels = torch.as_tensor(labels, device=cams.device).long()
        if labels.shape != (batch,):
            raise ValueError(
                f"labels must hold one class index per image ({batch}), got "
                f"shape {tuple(labels.shape)}."
            )
        if (labels < 0).any() or (labels >= num_classes).any():
            raise ValueError(
                f"labels must lie in [0, {num_classes}), got values "
                f"{labels.min().item()}..{labels.max().item()}."
            )
        index = labels[:, None, None].expand(-1, 1, log_attention.shape[2])
        log_attention = log_attention.gather(1, index)  # B x 1 x P

    if reduction == "none":
        cells = flat_masks.sum(dim=(1, 2)) * log_attention.shape[1]  # B
        total = -(flat_masks * log_attention).sum(dim=(1, 2))
        return torch.where(cells > 0, total / cells.clamp_min(1), float("nan"))
    annotated = flat_masks.sum() * log_attention.shape[1]
    if annotated == 0:
        return cams.sum() * 0.0  # keeps the graph: backward() works and gives zero grads
    return -(flat_masks * log_attention).sum() / annotated


def attention_loss_floor(masks: torch.Tensor, cam_size: Sequence[int]) -> float:
    """The smallest value ``attention_guidance_loss`` can take on these masks.

    The loss never reaches 0. For one map and a mask covering |S| grid cells, the mean of
    -log A over the mask is smallest when A spreads evenly over the mask (A = 1/|S| there,
    0 elsewhere), where it equals log |S|. Over a batch the loss weighs each image by its
    mask area, so the floor is ``sum_n |S_n| log |S_n| / sum_n |S_n|`` (the same for
    class_maps "all" and "label").

    Args:
        masks: B x 1 x H x W, values 0/1, at input resolution.
        cam_size: (h, w) of the grid the softmax runs over: the CAM size for resolution
            "feature"; (H, W) for "input" (there the bicubic upsampling of a coarse map
            keeps the loss above this bound).

    Returns:
        The floor as a float; 0.0 when no image is annotated.
    """
    check_masks(masks, masks.shape[0])
    grid = shrink_masks(masks.to(torch.float64), cam_size)
    areas = grid.flatten(1).sum(dim=1)
    areas = areas[areas > 0]
    if len(areas) == 0:
        return 0.0
    return float((areas * areas.log()).sum() / areas.sum())


def chance_attention_loss(cam_size: Sequence[int]) -> float:
    """The loss of a flat CAM (uniform attention) on any mask: log(h * w)."""
    return math.log(cam_size[0] * cam_size[1])
