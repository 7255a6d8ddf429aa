"""Tests for agkit.data.loader: make_loader gives the same batches for the same seed."""

import torch
from toy_images import toy

from agkit.data.dataset import GuidedDataset
from agkit.data.loader import make_loader

torch.set_num_threads(1)


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
