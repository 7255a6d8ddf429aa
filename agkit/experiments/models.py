"""The network of a run, seeded by its config, and the grid of its CAMs."""

from __future__ import annotations

import torch

from agkit.experiments.configs import RunConfig
from agkit.method.camnet import CAMNet


def build_model(config: RunConfig) -> CAMNet:
    torch.manual_seed(config.seed)
    return CAMNet(config.backbone, num_classes=2, in_channels=1, pooling=config.pooling)


def cam_grid(config: RunConfig) -> tuple[int, int]:
    """(h, w) of the CAMs of a run's network on its images."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # leaves the global seed alone
        cams = build_model(config).eval()(torch.zeros(1, 1, config.size, config.size)).cams
    return int(cams.shape[-2]), int(cams.shape[-1])
