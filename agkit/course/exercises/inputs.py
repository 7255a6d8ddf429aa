"""The small fixed inputs the checks run on: a seeded CAMNet, images, rectangle masks, and
fresh leaves that require gradients.
"""

from __future__ import annotations

import torch

from agkit.method.camnet import CAMNet


def _model(seed: int = 0, pooling: str = "avg") -> CAMNet:
    torch.manual_seed(seed)
    model = CAMNet("tiny", num_classes=3, pooling=pooling).eval()
    with torch.no_grad():  # a non-zero bias, so a forgotten bias shows
        model.classifier.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    return model


def _images(seed: int = 0, n: int = 4, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _masks(n: int = 4, size: int = 32, empty: tuple = ()) -> torch.Tensor:
    """n different rectangles (image k's is shifted by k), some left empty."""
    masks = torch.zeros(n, 1, size, size)
    for k in range(n):
        if k not in empty:
            masks[k, 0, 4 + 2 * k : 20 + k, 8 : 24 - k] = 1
    return masks


def _leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Fresh copies that require gradients (the student's function gets its own)."""
    return [t.detach().clone().requires_grad_(True) for t in tensors]
