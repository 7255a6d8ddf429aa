"""Class activation maps as pictures: pick a class, upsample, normalise, overlay.

All functions take the raw maps that ``CAMNet`` returns (B x N x h x w) and never need a
backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike


def select_class(cams: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The map of one class per image: cams B x N x h x w, labels B -> B x 1 x h x w."""
    labels = torch.as_tensor(labels, device=cams.device).long()
    return cams[torch.arange(cams.shape[0], device=cams.device), labels][:, None]


def upsample(cams: torch.Tensor, size: Sequence[int] | int) -> torch.Tensor:
    """Bicubic upsampling of B x N x h x w maps to B x N x H x W (input resolution)."""
    if isinstance(size, int):
        size = (size, size)
    return F.interpolate(
        cams, size=(int(size[0]), int(size[1])), mode="bicubic", align_corners=False
    )


def attention(cams: torch.Tensor) -> torch.Tensor:
    """A = softmax over positions of each map: B x N x h x w, each map sums to 1."""
    return cams.flatten(2).softmax(dim=2).view_as(cams)


def normalize(cams: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Min-max normalise each map of B x N x h x w to [0, 1] (a flat map becomes 0)."""
    flat = cams.flatten(2)
    low = flat.min(dim=2, keepdim=True).values
    high = flat.max(dim=2, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(eps)).view_as(cams)


def cam_at_input(
    cams: torch.Tensor, labels: torch.Tensor, size: Sequence[int] | int
) -> torch.Tensor:
    """The normalised map of one class per image at input resolution: B x 1 x H x W in [0, 1].

    cams B x N x h x w, labels B (the class to show for each image).
    """
    return normalize(upsample(select_class(cams, labels), size))


def overlay(image: ArrayLike, cam: ArrayLike, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Colour a CAM over a grayscale radiograph.

    Args:
        image: H x W or 1 x H x W (tensor or array), values in [0, 1]. An RGB image
            (3 x H x W or H x W x 3) is accepted too and shown as it is.
        cam: h x w or 1 x h x w map in any range; it is resized to H x W and min-max
            normalised here.
        alpha: opacity of the heat map.

    Returns:
        H x W x 3 float array in [0, 1], ready for ``plt.imshow``.
    """
    image = torch.as_tensor(np.asarray(image, dtype=np.float32))
    if image.ndim == 3 and image.shape[0] in (1, 3):
        image = image.permute(1, 2, 0)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"image must be H x W, 1 x H x W or RGB, got shape {tuple(image.shape)}.")
    rgb = image.expand(-1, -1, 3).clamp(0, 1).numpy()

    cam = torch.as_tensor(np.asarray(cam, dtype=np.float32))
    while cam.ndim > 2:
        cam = cam[0]
    heat = normalize(upsample(cam[None, None], rgb.shape[:2]))[0, 0].numpy()
    colours = matplotlib.colormaps[cmap](heat)[..., :3]
    return np.clip((1 - alpha) * rgb + alpha * colours, 0, 1)
