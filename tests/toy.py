"""A toy task that trains in a second: positives carry a bright square, the mask marks it."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from agkit.method.camnet import CAMNet
from agkit.method.train import fit


def toy_loader(n=96, seed=0, shuffle=True):
    """96 images 1 x 32 x 32 in batches of 16: positives carry a bright 8 x 8 square at a
    random place; every mask marks the square's place."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 32, 32, generator=g) * 0.3
    labels = torch.arange(n) % 2
    masks = torch.zeros(n, 1, 32, 32)
    for i in range(n):
        y, x = torch.randint(0, 24, (2,), generator=g).tolist()
        masks[i, 0, y : y + 8, x : x + 8] = 1
        if labels[i]:
            images[i, 0, y : y + 8, x : x + 8] += 0.6
    data = TensorDataset(images, labels, masks, torch.ones(n, dtype=torch.bool))
    return DataLoader(
        data, batch_size=16, shuffle=shuffle, generator=torch.Generator().manual_seed(seed)
    )


def train(lam=0.1, epochs=3, seed=0, callbacks=(), **kwargs):
    """A softmax-pooled tiny CAMNet trained on the toy task: (model, history)."""
    torch.manual_seed(seed)
    model = CAMNet("tiny", 2, pooling="softmax")
    history = fit(
        model,
        toy_loader(),
        toy_loader(seed=1, shuffle=False),
        lam=lam,
        epochs=epochs,
        lr=3e-3,
        seed=seed,
        device="cpu",
        callbacks=list(callbacks),
        **kwargs,
    )
    return model, history


def same_state(a, b):
    """Whether two models hold exactly the same weights and buffers."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
