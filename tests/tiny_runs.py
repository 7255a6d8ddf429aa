"""What the tests of agkit.experiments share: a tiny profile, stand-ins for fit that count
or watch its calls, a drawn mask store, and a copy of the package to edit."""

import shutil
import time

import numpy as np
import pytest

from agkit import experiments
from agkit.data import MaskStore
from agkit.experiments import fingerprints, store

TINY = experiments.Profile(
    name="test",
    size=32,
    backbone="tiny",
    n_train=32,
    n_val=16,
    n_test=16,
    epochs=1,
    batch_size=16,
    lr=3e-3,
    seeds=(0,),
    lambdas=(1.0,),
    time_limit=None,
    ablation_n_train=32,
    ablation_seeds=(0,),
    ablation_lambdas=(0.0,),
    ablation_sizes=(32,),
    ablation_fractions=(1.0,),
    ablation_qualities=("exact",),
)


class FitCalls:
    """Stands in for experiments.store.fit: counts calls, then trains for real (or refuses)."""

    def __init__(self, allow: bool = True):
        self.calls, self.allow, self.real = [], allow, store.fit

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs)
        if not self.allow:
            pytest.fail("a stored run was trained again")
        return self.real(*args, **kwargs)


class LoaderSpy:
    """Stands in for experiments.store.fit: records the has_mask and image of every batch."""

    def __init__(self):
        self.has_mask, self.images, self.real = [], [], store.fit

    def __call__(self, model, loader, *args, **kwargs):
        for _, _, masks, has_mask in loader:
            self.has_mask.append(has_mask)
            self.images.append(masks.flatten(1).sum(1))
        return self.real(model, loader, *args, **kwargs)


def without_timing(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "train_seconds"}


def drawn_store(folder, config, n=8):
    """A MaskStore with a box drawn on the first n training images of ``config``."""
    train = experiments.make_splits(config)["train"]
    masks = MaskStore(folder)
    for i in range(n):
        mask = np.zeros((config.size, config.size), np.uint8)
        mask[8:20, 8:20] = 1
        masks.put(train.image_ids[i], mask)
    return masks, train


def copy_of_package(tmp_path):
    copy = tmp_path / "agkit"
    shutil.copytree(experiments.PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def imported_from(package, monkeypatch):
    """Make this process look as if it had imported agkit from ``package`` just now."""
    monkeypatch.setattr(fingerprints, "PACKAGE_ROOT", package)
    monkeypatch.setattr(fingerprints, "IMPORTED_AT", time.time())
    monkeypatch.setattr(fingerprints, "_loaded_source", {})
