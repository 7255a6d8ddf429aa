"""Batching: ``make_loader`` and the ``SeededSampler`` that makes batches reproducible.

`make_loader` gives reproducible batches: the sampler draws both the order and a seed for each
item's augmentation from a torch.Generator seeded with `seed`, so the same seed gives the same
batches whatever the number of workers.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from agkit.data.dataset import GuidedDataset

__all__ = ["make_loader", "SeededSampler"]


class SeededSampler(Sampler):
    """Yields (index, augmentation seed) pairs; order and seeds come from one seeded generator.

    Each pass (epoch) continues the generator, so epochs differ, but two samplers built with
    the same seed give the same sequence.
    """

    def __init__(self, n: int, *, shuffle: bool = False, seed: int = 0):
        self.n, self.shuffle = n, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = (
            torch.randperm(self.n, generator=self.generator)
            if self.shuffle
            else torch.arange(self.n)
        )
        seeds = torch.randint(0, 2**62, (self.n,), generator=self.generator)
        return iter(zip(order.tolist(), seeds.tolist(), strict=True))


def _seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch in each worker; give numpy and random matching seeds too
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    ds,
    batch_size: int = 64,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """DataLoader yielding (image, label, mask, has_mask) batches, reproducible for a given seed.

    For a GuidedDataset the batches (order and augmentation) depend only on `seed` and the
    epoch number, not on num_workers.  Other datasets get a seeded shuffle.
    """
    generator = torch.Generator().manual_seed(seed)
    common: dict[str, Any] = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        drop_last=drop_last,
        worker_init_fn=_seed_worker,
        generator=generator,
    )
    if isinstance(ds, GuidedDataset):
        return DataLoader(ds, sampler=SeededSampler(len(ds), shuffle=shuffle, seed=seed), **common)
    return DataLoader(ds, shuffle=shuffle, **common)
