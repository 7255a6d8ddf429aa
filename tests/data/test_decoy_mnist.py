"""Decoy-MNIST: Ross et al.'s swatch rule, pixel for pixel, from tiny IDX files on disk."""

import struct

import numpy as np
import pytest
import torch

from agkit.data.decoy_mnist import add_decoys, decoy_mnist_splits, make_decoy_mnist


def write_idx(path, array):
    """An IDX file as MNIST stores it: magic (0, 0, dtype 0x08, ndim), big-endian sizes, bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + array.tobytes())


def fake_digits(n, seed):
    rng = np.random.default_rng(seed)
    digits = np.zeros((n, 28, 28), np.uint8)
    digits[:, 8:20, 10:18] = rng.integers(0, 256, (n, 12, 8))  # a "stroke" away from the corners
    return digits, rng.integers(0, 10, n).astype(np.uint8)


@pytest.fixture
def mnist_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, seed in (("train", 12, 0), ("t10k", 6, 1)):
        digits, labels = fake_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", digits)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return tmp_path


def swatch_of(data, i):
    corner = ["tl", "tr", "bl", "br"][int(data.corners[i])]
    rows = slice(0, 4) if corner[0] == "t" else slice(24, 28)
    cols = slice(0, 4) if corner[1] == "l" else slice(24, 28)
    return rows, cols


def test_training_swatch_shade_gives_the_label_away(mnist_root):
    data = make_decoy_mnist(mnist_root, "train", download=False)
    digits, labels = fake_digits(12, 0)
    assert data.images.shape == (12, 1, 28, 28)
    assert torch.equal(data.labels, torch.tensor(labels).long())
    for i in range(12):
        rows, cols = swatch_of(data, i)
        assert torch.all(data.images[i, 0, rows, cols] == (255 - 25 * int(labels[i])) / 255)
        assert data.forbidden[i, 0, rows, cols].sum() == 16 and data.forbidden[i].sum() == 16
        # everywhere else the digit is untouched
        outside = data.forbidden[i, 0] == 0
        original = torch.tensor(digits[i] / 255, dtype=torch.float32)
        assert torch.equal(data.images[i, 0][outside], original[outside])
    assert torch.equal(data.shade_digits, data.labels)


def test_test_swatch_shade_is_a_random_digits(mnist_root):
    data = make_decoy_mnist(mnist_root, "test", download=False)
    assert len(data) == 6
    for i in range(6):
        rows, cols = swatch_of(data, i)
        shade = (255 - 25 * int(data.shade_digits[i])) / 255
        assert torch.all(data.images[i, 0, rows, cols] == shade)
    big = add_decoys(np.zeros((2000, 28, 28), np.uint8), np.zeros(2000, int), split="test", seed=0)
    assert (big.shade_digits == big.labels).float().mean() == pytest.approx(0.1, abs=0.03)
    assert torch.bincount(big.corners, minlength=4).min() > 400  # all four corners occur


def test_positive_mask_is_the_digit_above_the_threshold(mnist_root):
    data = make_decoy_mnist(mnist_root, "train", threshold=0.5)
    digits, _ = fake_digits(12, 0)
    expected = torch.tensor(digits > 127.5)[:, None].float()
    assert torch.equal(data.masks, expected)
    assert data.has_mask.all() and (data.masks * data.forbidden).sum() == 0


def test_same_seed_same_data_and_n_keeps_a_prefix(mnist_root):
    a = make_decoy_mnist(mnist_root, "train", seed=4)
    b = make_decoy_mnist(mnist_root, "train", seed=4, n=5)
    assert torch.equal(a.images[:5], b.images) and len(b) == 5
    assert not torch.equal(a.corners, make_decoy_mnist(mnist_root, "train", seed=5).corners)


def test_missing_files_give_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        make_decoy_mnist(tmp_path, "train", download=False)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="split"):
        add_decoys(np.zeros((1, 28, 28), np.uint8), [0], split="val")
    with pytest.raises(ValueError, match="uint8"):
        add_decoys(np.zeros((1, 28, 28)), [0], split="train")
    with pytest.raises(ValueError, match="0..9"):
        add_decoys(np.zeros((1, 28, 28), np.uint8), [10], split="train")


def test_splits_hold_out_validation_digits_that_carry_the_test_rule(mnist_root):
    splits = decoy_mnist_splits(mnist_root, n_val=4, seed=2)
    digits, labels = fake_digits(12, 0)
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert (len(train), len(val), len(test)) == (8, 4, 6)
    # train: the first 8 digits, shade = label; val: the last 4, shade of a random digit
    assert torch.equal(train.labels, torch.tensor(labels[:8]).long())
    assert torch.equal(val.labels, torch.tensor(labels[8:]).long())
    assert torch.equal(train.shade_digits, train.labels)
    for i in range(4):
        rows, cols = swatch_of(val, i)
        assert torch.all(
            val.images[i, 0, rows, cols] == (255 - 25 * int(val.shade_digits[i])) / 255
        )
        outside = val.forbidden[i, 0] == 0
        original = torch.tensor(digits[8 + i] / 255, dtype=torch.float32)
        assert torch.equal(val.images[i, 0][outside], original[outside])
    assert decoy_mnist_splits(mnist_root, n_val=4, n_train=3)["train"].labels.tolist() == list(
        labels[:3]
    )


def test_splits_refuse_sizes_that_do_not_fit(mnist_root):
    with pytest.raises(ValueError, match="n_val must lie between 1 and 11"):
        decoy_mnist_splits(mnist_root, n_val=12)
    with pytest.raises(
        ValueError, match=r"n_train must lie between 1 and 8 \(the training digits less n_val\)"
    ):
        decoy_mnist_splits(mnist_root, n_val=4, n_train=9)
