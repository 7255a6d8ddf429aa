"""Seeded train/val/test splits for datasets that do not publish their own.

Two rules keep an evaluation honest:

* stratify: each split gets the same share of every class (or of any other key, such as
  the body region), so a small test set is not accidentally all normals;
* group: all images of one patient land in the same split, otherwise the network can
  recognise the patient instead of the finding.

``split_stratified`` does the first with scikit-learn's ``train_test_split``;
``split_by_group`` does both by splitting *patients* (stratified by whether the patient
has any positive image) and giving each image its patient's split.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

REAL_SPLITS = ("train", "val", "test")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) shares: three non-negative numbers summing to 1."""
    fractions = tuple(float(f) for f in fractions)
    if (
        len(fractions) != 3
        or min(fractions) < 0
        or abs(sum(fractions) - 1) > 1e-6
        or fractions[0] == 0
    ):
        raise ValueError(
            f"fractions must be three shares (train, val, test) >= 0 that sum to 1 with a "
            f"non-zero train share, got {fractions}; e.g. fractions=(0.7, 0.15, 0.15)."
        )
    return fractions


def _cut(index: np.ndarray, strata, share: float, seed: int):
    """Split ``index`` into (rest, part) with ``share`` of it in part, stratified if possible."""
    if share <= 0 or len(index) == 0:
        return index, index[:0]
    n_part = int(round(share * len(index)))
    if n_part == 0 or n_part == len(index):
        return (index, index[:0]) if n_part == 0 else (index[:0], index)
    try:
        return train_test_split(index, test_size=n_part, random_state=seed, stratify=strata)
    except ValueError:
        # A class with a single member cannot be stratified; split at random instead.
        warnings.warn(
            "too few images per stratum to stratify the split; splitting at random.", stacklevel=4
        )
        return train_test_split(index, test_size=n_part, random_state=seed)


def split_stratified(strata: Sequence, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> np.ndarray:
    """Assign each item to "train", "val" or "test", stratified by ``strata``.

    strata: one hashable key per item (the label, or e.g. "label/body region").
    fractions: (train, val, test) shares. Returns an array of split names, one per item.
    The same strata, fractions and seed always give the same assignment.
    """
    _, val_share, test_share = check_fractions(fractions)
    keys = np.asarray([str(s) for s in strata])
    index = np.arange(len(keys))
    split = np.full(len(keys), "train", dtype=object)
    rest, test = _cut(index, keys, test_share, seed)
    remaining = 1.0 - test_share
    _, val = _cut(rest, keys[rest], val_share / remaining if remaining > 0 else 0.0, seed)
    split[test] = "test"
    split[val] = "val"
    return split


def split_by_group(
    groups: Sequence, labels: Sequence[int], fractions=(0.7, 0.15, 0.15), seed: int = 0
) -> np.ndarray:
    """Like split_stratified, but no group (patient) is in two splits.

    groups: one patient id per image; labels: one 0/1 (or class) label per image.
    Patients are stratified by their largest label (a patient with any fracture counts as
    positive). Returns one split name per image.
    """
    table = pd.DataFrame({"group": [str(g) for g in groups], "label": np.asarray(labels)})
    per_group = table.groupby("group", sort=True)["label"].max()
    group_split = pd.Series(
        split_stratified(per_group.values, fractions, seed), index=per_group.index
    )
    return table["group"].map(group_split).to_numpy(dtype=object)
