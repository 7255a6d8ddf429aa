"""Per-item cost of GuidedDataset on the course's workload (1000 images, 64 x 64, one core).

Run: python benchmarks/bench_dataset.py
"""

import time

import torch

from agkit.data.dataset import GuidedDataset
from agkit.data.loader import make_loader

torch.set_num_threads(1)


def per_item_us(ds, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(len(ds)):
            ds[(i, i)]
        best = min(best, (time.perf_counter() - start) / len(ds))
    return best * 1e6


def main(n=1000, size=64):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, size, size, generator=g)
    masks = (torch.rand(n, 1, size, size, generator=g) > 0.9).float()
    labels = torch.arange(n) % 2
    for augment in (False, True):
        ds = GuidedDataset(images, labels, masks, augment=augment)
        loader = make_loader(ds, batch_size=64, shuffle=True)
        start = time.perf_counter()
        for _ in loader:
            pass
        epoch = time.perf_counter() - start
        print(
            f"augment={augment}: {per_item_us(ds):7.0f} us/item, "
            f"one epoch through make_loader {epoch:.2f} s"
        )


if __name__ == "__main__":
    main()
