"""Decoy-MNIST: handwritten digits with a shortcut in the corner.

The benchmark of Ross, Hughes and Doshi-Velez ("Right for the Right Reasons", IJCAI 2017),
reported by most explanation-guided learning methods since. Every MNIST digit gets a 4 x 4
gray swatch in a random corner. In the training split its shade gives the label away,
``255 - 25 * label``; in the test split the shade is that of a random digit, so a network
that read the swatch instead of the digit fails there. The swatch is the natural
"don't look here" mask (``forbidden``); the digit's own pixels are the "look here" mask
(``masks``).

MNIST is read with ``torchvision.datasets.MNIST`` from ``root/MNIST/raw`` (the four IDX
files); ``download=True`` fetches them first when a network is available.

Example::

    train = make_decoy_mnist("data", split="train", download=True)
    train.images.shape, train.forbidden.shape   # n x 1 x 28 x 28 each
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

SPLITS = ("train", "test")
SWATCH = 4  # side of the swatch in pixels
SHADE_STEP = 25  # shade = 255 - SHADE_STEP * digit
CORNERS = ("tl", "tr", "bl", "br")


@dataclass
class DecoyMNIST:
    """Decoy-MNIST images with labels and both kinds of mask.

    Attributes:
        images: n x 1 x 28 x 28 float32 in [0, 1], the digit with its swatch.
        labels: n int64, the digit.
        masks: n x 1 x 28 x 28 float32 0/1, the digit's pixels ("look here").
        forbidden: n x 1 x 28 x 28 float32 0/1, the swatch ("don't look here").
        has_mask: n bool, True where the digit mask is not empty.
        shade_digits: n int64, the digit whose shade the swatch has (= labels in training).
        corners: n int64 index into CORNERS of the swatch's corner.
        params: the arguments that made the data.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    forbidden: torch.Tensor
    has_mask: torch.Tensor
    shade_digits: torch.Tensor
    corners: torch.Tensor
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """(images, labels, masks, has_mask, forbidden): the five parts of a guided batch,
        ready for ``torch.utils.data.TensorDataset``."""
        return self.images, self.labels, self.masks, self.has_mask, self.forbidden


def read_mnist(root, split: str = "train", download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits n x 28 x 28 uint8 and labels n int64 from ``root/MNIST/raw``."""
    from torchvision.datasets import MNIST

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'.")
    try:
        data = MNIST(str(root), train=split == "train", download=download)
    except (RuntimeError, OSError) as error:  # missing files, or a download without a network
        raise FileNotFoundError(
            f"MNIST is not under {root}/MNIST/raw ({type(error).__name__}: {error}); pass "
            "download=True on a machine with a network, or copy the four raw IDX files "
            "(train-images-idx3-ubyte, ...) there."
        ) from None
    return data.data.numpy(), data.targets.numpy().astype(np.int64)


def add_decoys(
    digits: np.ndarray, labels: np.ndarray, *, split: str, seed: int = 0, threshold: float = 0.5
) -> DecoyMNIST:
    """Put a swatch on every digit, following Ross et al.'s rule.

    Args:
        digits: n x H x W uint8 digits (H, W >= 4). labels: n ints 0..9.
        split: "train" (shade = 255 - 25 * label) or "test" (shade of a random digit).
        seed: the corners (and test shades) are drawn from it.
        threshold: digit pixels brighter than this (in [0, 1]) form the positive mask.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'.")
    digits = np.asarray(digits)
    labels = np.asarray(labels, dtype=np.int64)
    if digits.ndim != 3 or digits.dtype != np.uint8 or min(digits.shape[1:]) < SWATCH:
        raise ValueError(
            f"digits must be n x H x W uint8 with H, W >= {SWATCH}, got "
            f"{digits.dtype} {digits.shape}."
        )
    if len(labels) != len(digits) or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError("labels must hold one digit 0..9 per image.")
    n, height, width = digits.shape
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split)]))
    corners = rng.integers(0, 4, n)
    shade_digits = labels.copy() if split == "train" else rng.integers(0, 10, n)

    images = digits.astype(np.float32) / 255.0
    masks = images > threshold
    forbidden = np.zeros_like(masks)
    rows = np.where(corners < 2, 0, height - SWATCH)  # tl, tr at the top
    cols = np.where(corners % 2 == 0, 0, width - SWATCH)  # tl, bl on the left
    for i in range(n):
        forbidden[i, rows[i] : rows[i] + SWATCH, cols[i] : cols[i] + SWATCH] = True
    shades = (255 - SHADE_STEP * shade_digits).astype(np.float32) / 255.0
    images = np.where(forbidden, shades[:, None, None], images)
    masks &= ~forbidden

    def as_tensor(a):  # n x H x W -> n x 1 x H x W float32, with the usual strides
        # (numpy gives a new axis stride 0, which autograd warns about in input gradients)
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).unsqueeze(1)

    return DecoyMNIST(
        images=as_tensor(images),
        labels=torch.from_numpy(labels.copy()),
        masks=as_tensor(masks),
        forbidden=as_tensor(forbidden),
        has_mask=torch.from_numpy(masks.reshape(n, -1).any(axis=1)),
        shade_digits=torch.from_numpy(shade_digits.astype(np.int64)),
        corners=torch.from_numpy(corners.astype(np.int64)),
        params=dict(split=split, seed=seed, threshold=threshold, n=n),
    )


def make_decoy_mnist(
    root,
    split: str = "train",
    *,
    n: int | None = None,
    seed: int = 0,
    threshold: float = 0.5,
    download: bool = False,
) -> DecoyMNIST:
    """Decoy-MNIST from the MNIST files under ``root`` (see the module docstring).

    Args:
        root: folder holding ``MNIST/raw`` (torchvision's layout).
        split: "train" (60,000 digits) or "test" (10,000).
        n: keep only the first n digits (None: all).
        seed: draws the swatches' corners and, for "test", their shades.
        threshold: digit pixels above it (in [0, 1]) form the positive mask.
        download: fetch MNIST with torchvision first if it is missing.
    """
    digits, labels = read_mnist(root, split, download)
    if n is not None:
        if n < 0:
            raise ValueError(f"n must be a whole number >= 0 or None, got {n!r}.")
        digits, labels = digits[:n], labels[:n]
    return add_decoys(digits, labels, split=split, seed=seed, threshold=threshold)


def decoy_mnist_splits(
    root,
    *,
    n_val: int = 10_000,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    download: bool = False,
) -> dict[str, DecoyMNIST]:
    """Train, validation and test splits of Decoy-MNIST.

    "val" is the last ``n_val`` MNIST training digits with the *test* rule (a random
    digit's shade), held out from "train": a split on which a model that reads the swatch
    fails, to choose lam and epochs without looking at the test split. "train" is the
    first ``n_train`` of the remaining digits (None: all 60,000 - n_val), "test" the
    first ``n_test`` MNIST test digits (None: all 10,000).
    """
    digits, labels = read_mnist(root, "train", download)
    if not 0 < n_val < len(digits):
        raise ValueError(f"n_val must lie between 1 and {len(digits) - 1}, got {n_val}.")
    kept = len(digits) - n_val
    if n_train is not None and not 0 < n_train <= kept:
        raise ValueError(
            f"n_train must lie between 1 and {kept} (the training digits less n_val), "
            f"got {n_train}."
        )
    train_end = kept if n_train is None else n_train
    return {
        "train": add_decoys(digits[:train_end], labels[:train_end], split="train", seed=seed),
        "val": add_decoys(digits[kept:], labels[kept:], split="test", seed=seed),
        "test": make_decoy_mnist(root, "test", n=n_test, seed=seed, download=download),
    }
