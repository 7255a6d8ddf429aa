"""Toy images and masks for the data tests: a bright square exactly where the mask is."""

import numpy as np
import torch

MURA_ID = "MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png"  # a nested id


def square(shape, r0, r1, c0, c1):
    """A uint8 mask of ``shape`` holding 1 on rows r0:r1 and columns c0:c1."""
    m = np.zeros(shape, np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def toy(n=12, size=16, seed=0, noise=0.2):
    """n images with a bright square exactly where the mask is; labels alternate 0/1."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g) * noise
    masks = torch.zeros(n, 1, size, size)
    side = 6 if size >= 16 else 3
    for i in range(n):
        r, c = torch.randint(1, size - side, (2,), generator=g).tolist()
        masks[i, 0, r : r + side, c : c + side] = 1
    images[masks.bool()] = 1.0
    return images, torch.arange(n) % 2, masks
