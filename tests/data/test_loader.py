"""Tests for agkit.data.loader: make_loader gives the same batches for the same seed."""

import torch

from agkit.data.dataset import GuidedDataset
from agkit.data.loader import make_loader

torch.set_num_threads(1)


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


# --------------------------------------------------------------- determinism
def test_seeded_loader_is_deterministic():
    images, labels, masks = toy(n=10, size=16)
    ds = GuidedDataset(images, labels, masks, augment=True, size=12)

    def epochs(seed, workers=0):
        loader = make_loader(ds, batch_size=4, shuffle=True, seed=seed, num_workers=workers)
        return [[t.clone() for t in batch] for _ in range(2) for batch in loader]

    state = torch.get_rng_state()
    a, b = epochs(0), epochs(0)
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is left alone
    assert all(
        torch.equal(x, y) for ba, bb in zip(a, b, strict=True) for x, y in zip(ba, bb, strict=True)
    )
    assert not torch.equal(a[0][0], a[3][0])  # epoch 2 differs from epoch 1
    assert not torch.equal(a[0][0], epochs(1)[0][0])  # another seed differs
    c = epochs(0, workers=2)  # the same batches with worker processes
    assert all(
        torch.equal(x, y) for ba, bc in zip(a, c, strict=True) for x, y in zip(ba, bc, strict=True)
    )
