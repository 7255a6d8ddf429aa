"""Worse masks on purpose: how good must a human's annotation be?

The ablation notebook trains with masks degraded in the ways real annotations go wrong:
a loose box instead of an outline, a generous margin, or a mark placed a little off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

QUALITIES = ("exact", "box", "dilated", "shifted")


def bounding_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Fill each mask's bounding box: masks n x 1 x H x W 0/1 -> n x 1 x H x W 0/1."""
    rows = masks.amax(dim=3, keepdim=True)  # n x 1 x H x 1
    cols = masks.amax(dim=2, keepdim=True)  # n x 1 x 1 x W

    def span(line: torch.Tensor) -> torch.Tensor:
        # Between the first and the last 1: cumulative max from both ends.
        forward = line.cummax(dim=-1).values
        backward = line.flip(-1).cummax(dim=-1).values.flip(-1)
        return forward * backward

    return span(rows.transpose(2, 3)).transpose(2, 3) * span(cols)


def dilate(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow every mask by ``pixels`` in each direction (a square structuring element)."""
    if pixels <= 0:
        return masks.clone()
    return F.max_pool2d(masks, 2 * pixels + 1, stride=1, padding=pixels)


def shift(masks: torch.Tensor, pixels: int, seed: int = 0) -> torch.Tensor:
    """Move each mask by ``pixels`` in a random direction (what falls off the edge is lost)."""
    generator = torch.Generator().manual_seed(seed)
    angles = torch.rand(len(masks), generator=generator) * 2 * torch.pi
    moved = torch.zeros_like(masks)
    height, width = masks.shape[-2:]
    for i, angle in enumerate(angles.tolist()):
        dy = round(pixels * torch.sin(torch.tensor(angle)).item())
        dx = round(pixels * torch.cos(torch.tensor(angle)).item())
        src = masks[i, :, max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
        moved[
            i, :, max(0, dy) : max(0, dy) + src.shape[1], max(0, dx) : max(0, dx) + src.shape[2]
        ] = src
    return moved


def degrade(
    masks: torch.Tensor, quality: str, pixels: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Apply one of QUALITIES to masks n x 1 x H x W; ``pixels`` defaults to H // 8."""
    if quality not in QUALITIES:
        raise ValueError(f"unknown mask quality {quality!r}; choose one of {', '.join(QUALITIES)}.")
    pixels = masks.shape[-1] // 8 if pixels is None else pixels
    if quality == "exact":
        return masks.clone()
    if quality == "box":
        return bounding_boxes(masks)
    if quality == "dilated":
        return dilate(masks, pixels)
    return shift(masks, pixels, seed)
