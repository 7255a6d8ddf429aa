"""A label-conditioned segmenter: learn from the drawn masks to draw the others.

The network sees an image and its label (as a second input channel, 0 or 1 everywhere),
because the evidence differs by class: the break on a fractured radiograph, the whole bone
on a normal one. It predicts one logit per cell of the CAM grid, the resolution at which
the attention loss reads a mask (``losses.shrink_masks``), so it learns nothing the loss
would throw away. Trained with binary cross-entropy on the drawn masks, augmented the ways
a radiograph allows (a horizontal flip, a shift of a few pixels); with 20 masks it
overfits quickly, so it trains for a fixed, small number of steps with weight decay.

A proposal's confidence is how decided the segmenter is on the image: the mean over the
grid cells of |2p - 1| (1 when every cell is surely in or out, 0 when every cell is a coin
toss). Teacher networks trained on a few human maps label the rest in Crum et al.
(BMVC 2023); this is the smallest such teacher.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from agkit.method.loss import shrink_masks

STEPS = 600  # AdamW steps on the drawn masks: the first setting tried, not tuned (docs/results.md)
LR = 3e-3
WEIGHT_DECAY = 1e-4
MAX_SHIFT = 4  # pixels of random shift in the augmentation
WIDTH = 16  # channels of the first convolution (then twice as many)
THRESHOLD = 0.5  # a cell is in the proposed mask when its probability reaches this


class MaskSegmenter(nn.Module):
    """Image + label -> mask logits on the CAM grid.

    forward(images B x C x S x S, labels B) -> logits B x 1 x h x w (h, w = ``grid``).
    """

    def __init__(self, in_channels: int, grid: tuple[int, int], width: int = 16):
        super().__init__()
        self.grid = cast(tuple[int, int], tuple(grid))
        self.body = nn.Sequential(
            # the grid is coarse (8 x 8 on a 64 px image): half the resolution loses nothing
            nn.AvgPool2d(2),
            nn.Conv2d(in_channels + 1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 1, 1),
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        label_plane = labels.float()[:, None, None, None].expand(-1, 1, *images.shape[-2:])
        logits = self.body(torch.cat([images, label_plane], dim=1))
        return F.adaptive_avg_pool2d(logits, self.grid)


def augment(
    images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random horizontal flip of each image and its mask (B x C x S x S, B x 1 x S x S),
    then one random shift of up to MAX_SHIFT pixels (the edges filled with zeros)."""
    flip = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    targets = torch.where(flip[:, None, None, None], targets.flip(-1), targets)
    dy, dx = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (2,), generator=generator).tolist()
    return _shift(images, dy, dx), _shift(targets, dy, dx)


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    padded = F.pad(x, (MAX_SHIFT, MAX_SHIFT, MAX_SHIFT, MAX_SHIFT))
    h, w = x.shape[-2:]
    top, left = MAX_SHIFT - dy, MAX_SHIFT - dx
    return padded[..., top : top + h, left : left + w]


def train_segmenter(
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    grid: tuple[int, int],
    seed: int = 0,
    steps: int = STEPS,
    width: int = WIDTH,
) -> MaskSegmenter:
    """A MaskSegmenter trained on the masks of ``images`` (k x C x S x S, labels k,
    masks k x 1 x S x S of 0/1), every image in every step."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = MaskSegmenter(images.shape[1], grid, width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    model.train()
    for _ in range(steps):
        batch, targets = augment(images, masks.float(), generator)
        loss = F.binary_cross_entropy_with_logits(model(batch, labels), shrink_masks(targets, grid))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def proposals(
    model: MaskSegmenter, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masks n x 1 x S x S of 0/1, confidence n): each image's proposed mask, the grid
    cells of probability >= THRESHOLD enlarged to the image, and the segmenter's
    decidedness (module docstring)."""
    probs = torch.cat(
        [
            model(images[i : i + batch_size], labels[i : i + batch_size]).sigmoid()
            for i in range(0, len(images), batch_size)
        ]
    )
    return masks_from_probabilities(probs, images.shape[-1])


def masks_from_probabilities(probs: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The step from the segmenter's output to proposals (an exercise of notebook 3).

    probs: B x 1 x h x w, each grid cell's probability of being in the mask.
    Returns (masks B x 1 x size x size of 0/1: the cells of probability >= THRESHOLD, each
    enlarged to the pixels it covers; confidence B: the mean over the cells of |2p - 1|).
    """
    confidence = (2 * probs - 1).abs().flatten(1).mean(dim=1)
    cells = (probs >= THRESHOLD).float()
    masks = F.interpolate(cells, size=(size, size), mode="nearest")
    return masks, confidence


def propagate_with_segmenter(
    images, labels, masks, drawn, grid, seed, steps: int = STEPS, width: int = WIDTH
):
    """The "segmenter" propagator (see agkit.propagation.propagate)."""
    model = train_segmenter(images[drawn], labels[drawn], masks[drawn], grid, seed, steps, width)
    return proposals(model, images, labels)
