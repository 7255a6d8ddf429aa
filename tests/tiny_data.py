"""A GuidedDataset of a dozen random images, every one with the same square mask."""

import torch

from agkit.data import GuidedDataset


def tiny_dataset(n=12, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g)
    labels = torch.arange(n) % 2
    masks = torch.zeros(n, 1, size, size)
    masks[:, :, 4:12, 4:12] = 1
    return GuidedDataset(images, labels, masks, image_ids=[f"im{i}" for i in range(n)])
