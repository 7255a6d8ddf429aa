"""CAMNet: a CNN whose logits are pooled from its own class activation maps.

A usual classifier computes ``fc(GAP(features))``. CAMNet computes the class activation
map first, ``M_c = sum_k W[c, k] F_k + b[c]`` (a 1x1 convolution that reuses the
classifier's weight and bias), and then pools the maps into logits:

* ``pooling="avg"``: global average pooling of the maps. Because averaging and a linear
  map commute, this is exactly ``fc(GAP(F))``: the ordinary baseline network.
* ``pooling="softmax"``: the guided network's softmax-weighted pooling,
  ``A_c = softmax_ij(M_c)`` and ``z_c = sum_ij A_c M_c``.

Either way the CAMs come out of ``forward`` for free: no hooks, no extra backward pass,
differentiable, batched. That is what lets a loss act on them (see ``agkit.losses``).
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.error import URLError

import torch
import torch.nn.functional as F
from torch import nn

BACKBONES = ("tiny", "resnet18", "resnet50")
POOLINGS = ("avg", "softmax")


class CAMOutput(NamedTuple):
    """What ``CAMNet.forward`` returns.

    logits: B x N class scores.
    cams:   B x N x h x w class activation maps (raw, before any softmax).
    """

    logits: torch.Tensor
    cams: torch.Tensor


# ---------------------------------------------------------------------------------------
# Backbones: image B x C x H x W  ->  features B x K x h x w
# ---------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection (He et al.'s basic block)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.skip = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.skip = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.skip(x))


class TinyResNet(nn.Module):
    """A small residual network for 64 x 64 grayscale images on a laptop CPU.

    Total stride 8, so a 64 x 64 image gives an 8 x 8 CAM grid.
    Input B x C x H x W, output B x 128 x H/8 x W/8.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks = [ResidualBlock(a, b, stride=2) for a, b in zip(widths[:-1], widths[1:])]
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


def _load_torchvision_resnet(name: str, pretrained: bool) -> nn.Module:
    import torchvision

    weights = None
    if pretrained:
        weights = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights"}[name]
        weights = getattr(torchvision.models, weights).IMAGENET1K_V1
    try:
        return getattr(torchvision.models, name)(weights=weights)
    except (URLError, OSError, ConnectionError) as error:
        # One sentence instead of a page of socket traceback (`from None` hides it).
        raise RuntimeError(
            f"Could not download the ImageNet weights for {name} ({type(error).__name__}: "
            f"{error}); without a network connection use pretrained=False, which needs no "
            "download."
        ) from None


def _adapt_first_conv(conv: nn.Conv2d, in_channels: int, pretrained: bool) -> nn.Conv2d:
    """Replace an RGB first convolution by one taking ``in_channels`` channels.

    For grayscale input the pretrained RGB filters are summed over colour: a gray image
    fed to the summed filter gives the same response as the gray image copied into R, G
    and B fed to the original one.
    """
    if in_channels == conv.in_channels:
        return conv
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, bias=conv.bias is not None)
    if pretrained:
        if in_channels != 1:
            raise ValueError(
                f"pretrained weights exist for 1 or 3 input channels, got in_channels={in_channels}; "
                "use pretrained=False or convert the images to 1 or 3 channels."
            )
        with torch.no_grad():
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
    return new


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TorchvisionResNetFeatures(nn.Module):
    """torchvision's resnet18/resnet50 up to the last residual stage (before pooling).

    Input B x C x H x W in [0, 1], output B x K x H/32 x W/32 (K = 512 for resnet18, 2048
    for resnet50). With pretrained weights the input is first normalised with ImageNet's
    statistics, which those weights expect (averaged over colour for grayscale input).
    """

    def __init__(self, name: str, in_channels: int, pretrained: bool):
        super().__init__()
        net = _load_torchvision_resnet(name, pretrained)
        net.conv1 = _adapt_first_conv(net.conv1, in_channels, pretrained)
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                  net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_channels = net.fc.in_features
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        if in_channels != 3:
            mean, std = mean.mean().repeat(in_channels), std.mean().repeat(in_channels)
        if not pretrained:  # trained from scratch: no statistics to match
            mean, std = torch.zeros(in_channels), torch.ones(in_channels)
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


def build_backbone(name: str, in_channels: int = 1, pretrained: bool = False) -> nn.Module:
    """Return a feature extractor with an ``out_channels`` attribute (K)."""
    if name == "tiny":
        if pretrained:
            raise ValueError("the 'tiny' backbone has no pretrained weights; use pretrained=False "
                             "or backbone='resnet18'/'resnet50'.")
        return TinyResNet(in_channels)
    if name in ("resnet18", "resnet50"):
        return TorchvisionResNetFeatures(name, in_channels, pretrained)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.")


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
        backbone: "tiny" (CPU, 64 px grayscale, 8 x 8 CAMs), "resnet18" or "resnet50".
        num_classes: N, the number of classes.
        in_channels: C of the input images (1 for radiographs).
        pooling: "avg" (the baseline, equal to fc(GAP(features))) or "softmax" (guided).
        pretrained: start torchvision backbones from ImageNet weights (needs a download).

    ``forward(x)`` takes x: B x C x H x W and returns ``CAMOutput(logits B x N, cams B x N x h x w)``.
    """

    def __init__(self, backbone: str = "tiny", num_classes: int = 2, in_channels: int = 1,
                 pooling: str = "avg", pretrained: bool = False):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}.")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
        self.backbone_name = backbone
        self.pooling = pooling
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.backbone = build_backbone(backbone, in_channels, pretrained)
        self.classifier = nn.Linear(self.backbone.out_channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features B x K x h x w of images x: B x C x H x W."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images shaped B x {self.in_channels} x H x W, got {tuple(x.shape)}; "
                f"add a batch dimension with x[None] or build the model with in_channels={x.shape[-3] if x.ndim >= 3 else '?'}."
            )
        return self.backbone(x)

    def cams_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """The CAMs B x N x h x w: a 1x1 convolution with the classifier's weight and bias."""
        weight = self.classifier.weight[:, :, None, None]  # N x K x 1 x 1
        return F.conv2d(features, weight, self.classifier.bias)

    def forward(self, x: torch.Tensor) -> CAMOutput:
        cams = self.cams_from_features(self.features(x))
        return CAMOutput(logits=pool_cams(cams, self.pooling), cams=cams)
