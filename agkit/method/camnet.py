"""CAMNet: a CNN whose logits are pooled from its own class activation maps.

A usual classifier computes ``fc(GAP(features))``. CAMNet computes the class activation
map first, ``M_c = sum_k W[c, k] F_k + b[c]`` (a 1x1 convolution that reuses the
classifier's weight and bias), and then pools the maps into logits:

* ``pooling="avg"``: global average pooling of the maps. Because averaging and a linear
  map commute, this is exactly ``fc(GAP(F))``: the ordinary baseline network.
* ``pooling="softmax"``: the guided network's softmax-weighted pooling,
  ``A_c = softmax_ij(M_c)`` and ``z_c = sum_ij A_c M_c``.

Either way the CAMs come out of ``forward`` for free: no hooks, no extra backward pass,
differentiable, batched. That is what lets a loss act on them (see ``agkit.method.loss``).
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from agkit.method.backbones import build_backbone

POOLINGS = ("avg", "softmax")


class CAMOutput(NamedTuple):
    """What ``CAMNet.forward`` returns.

    logits: B x N class scores.
    cams:   B x N x h x w class activation maps (raw, before any softmax).
    """

    logits: torch.Tensor
    cams: torch.Tensor


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


def pool_cams(cams: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool CAMs B x N x h x w into logits B x N ("avg" or "softmax", see module doc)."""
    flat = cams.flatten(2)  # B x N x (h*w)
    if pooling == "avg":
        return flat.mean(dim=2)
    if pooling == "softmax":
        attention = flat.softmax(dim=2)
        return (attention * flat).sum(dim=2)
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}.")


class CAMNet(nn.Module):
    """A backbone, a linear classifier, and CAM-pooled logits.

    Args:
        backbone: a name from ``agkit.list_backbones()``: "tiny" (CPU, 64 px grayscale,
            8 x 8 CAMs), a torchvision model ("resnet18", "resnet50", "densenet121",
            "efficientnet_b0", "convnext_tiny", ...) or a timm model ("timm:resnet10t").
        num_classes: N, the number of classes.
        in_channels: C of the input images (1 for radiographs).
        pooling: "avg" (the baseline, equal to fc(GAP(features))) or "softmax" (guided).
        pretrained: start the backbone from published weights (needs a download once).

    ``forward(x)`` takes x: B x C x H x W and returns
    ``CAMOutput(logits B x N, cams B x N x h x w)``.
    """

    def __init__(
        self,
        backbone: str = "tiny",
        num_classes: int = 2,
        in_channels: int = 1,
        pooling: str = "avg",
        pretrained: bool = False,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}.")
        try:
            num_classes = operator.index(num_classes)  # ints and NumPy ints, not 2.5
        except TypeError:
            raise ValueError(f"num_classes must be a whole number, got {num_classes!r}.") from None
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
        self.backbone_name = backbone
        self.pooling = pooling
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.backbone = build_backbone(backbone, in_channels, pretrained)
        out_channels = self.backbone.out_channels
        assert isinstance(out_channels, int)
        self.classifier = nn.Linear(out_channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features B x K x h x w of images x: B x C x H x W."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            found = x.shape[-3] if x.ndim >= 3 else "?"
            raise ValueError(
                f"expected images shaped B x {self.in_channels} x H x W, got "
                f"{tuple(x.shape)}; add a batch dimension with x[None] or build the model "
                f"with in_channels={found}."
            )
        features: torch.Tensor = self.backbone(x)
        return features

    def cams_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """The CAMs B x N x h x w: a 1x1 convolution with the classifier's weight and bias."""
        weight = self.classifier.weight[:, :, None, None]  # N x K x 1 x 1
        return F.conv2d(features, weight, self.classifier.bias)

    def forward(self, x: torch.Tensor) -> CAMOutput:
        cams = self.cams_from_features(self.features(x))
        return CAMOutput(logits=pool_cams(cams, self.pooling), cams=cams)

    def describe(self) -> dict[str, object]:
        """The architecture as plain values (stored in checkpoints to check on resume)."""
        return {
            "backbone": self.backbone_name,
            "pooling": self.pooling,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
        }
