"""The data of a run: its SynthFrac splits, the datasets with the masks it trains with
(built-in, degraded, drawn, a few kept or propagated), and its training batches."""

from __future__ import annotations

import collections
import dataclasses

import torch

from agkit.data import GuidedDataset, MaskStore, make_synthfrac
from agkit.data.mask_quality import degrade
from agkit.experiments.configs import RunConfig
from agkit.experiments.few_masks import few_mask_loader, with_masks
from agkit.experiments.mask_checks import check_mask_store
from agkit.experiments.models import cam_grid
from agkit.propagation import Propagated, grid_iou, marker_share, propagate, with_propagated

TEST_SEED = 10_000  # the test splits are the same for every run, whatever its seed


def make_splits(config: RunConfig) -> dict:
    """The SynthFrac splits of a run: train, val, test_id, test_shifted, and val_shifted:
    ``n_val`` images drawn like the shifted test split but from the run's own seed (never
    the test images), on which settings are chosen where the shortcut does not pay
    (group DRO's convention: tune on a validation split that has every group)."""
    seed = config.seed if config.data_seed is None else config.data_seed
    return {
        "train": _split(config.n_train, config.size, seed, "train", config.data),
        "val": _split(config.n_val, config.size, seed, "val", config.data),
        "test_id": _split(config.n_test, config.size, TEST_SEED, "test_id", config.data),
        "test_shifted": _split(config.n_test, config.size, TEST_SEED, "test_shifted", config.data),
        "val_shifted": _split(config.n_val, config.size, seed, "test_shifted", config.data),
    }


# Drawn splits kept in this process, oldest first, up to SPLIT_MEMO_BYTES of tensors: runs of
# one seed share their images and every run scores on the same test images, so a worker
# that trains many runs draws each split once (drawing 1,000 images takes about a second).
# Nothing changes a SynthFrac in place, so the runs can share one.
SPLIT_MEMO_BYTES = 512 * 2**20
_split_memo: collections.OrderedDict = collections.OrderedDict()


def _split(n: int, size: int, seed: int, split: str, data: tuple):
    key = (n, size, seed, split, data)
    if key not in _split_memo:
        _split_memo[key] = make_synthfrac(n, size=size, seed=seed, split=split, **dict(data))
        while len(_split_memo) > 1 and _memo_bytes() > SPLIT_MEMO_BYTES:
            _split_memo.popitem(last=False)
    _split_memo.move_to_end(key)
    return _split_memo[key]


def _memo_bytes() -> int:
    tensors = ("images", "labels", "masks", "bone_masks", "fracture_masks")
    return sum(getattr(s, t).nbytes for s in _split_memo.values() for t in tensors)


def training_masks(config: RunConfig, train) -> torch.Tensor | MaskStore:
    """The masks that guide a run: built-in ones (maybe degraded) or a user's MaskStore.

    Raises NoMasksError when ``masks_from`` holds no mask for any training image.
    """
    if config.masks_from is not None:
        check_mask_store(config.masks_from, train.image_ids)
        return MaskStore(config.masks_from)
    return degrade(train.masks, config.mask_quality, seed=config.seed)


def make_datasets(config: RunConfig, splits: dict | None = None) -> dict:
    """GuidedDatasets for every split; only the training split has degraded/partial masks."""
    splits = splits or make_splits(config)
    train = splits["train"]
    datasets = {
        "train": GuidedDataset(
            train.images,
            train.labels,
            training_masks(config, train),
            image_ids=train.image_ids,
            meta=train.meta,
            annotated_fraction=config.annotated_fraction,
            seed=config.seed,
        )
    }
    if config.annotated_ids:
        datasets["train"] = with_masks(
            datasets["train"], image_positions(datasets["train"], config.annotated_ids)
        )
    if config.propagation:
        propagated = propagated_masks(config, datasets["train"])
        datasets["train"] = with_propagated(datasets["train"], propagated, config.min_confidence)
    for name in ("val", "test_id", "test_shifted", "val_shifted"):
        datasets[name] = GuidedDataset.from_synthfrac(splits[name])
    return datasets


_propagation_memo: dict[str, Propagated] = {}


def propagated_masks(config: RunConfig, train: GuidedDataset | None = None) -> Propagated:
    """The masks ``config.propagation`` draws from the training masks of ``config``
    (``train``: that training set before propagation; None: made here). Memoised on the
    run's key, which hashes the drawn masks too, so a run and its figures share one."""
    key = config.key()
    if key not in _propagation_memo:
        if train is None:
            unspread = dataclasses.replace(config, propagation=None)
            train = make_datasets(unspread)["train"]
        settings = {}
        if config.propagation == "self_training":  # the teacher trains like the run
            settings = {
                "backbone": config.backbone,
                "epochs": config.epochs,
                "lr": config.lr,
                "batch_size": config.batch_size,
            }
        _propagation_memo.clear()  # one at a time: a notebook looks at one run's masks
        assert config.propagation is not None, "the run propagates no masks"
        _propagation_memo[key] = propagate(
            config.propagation, train, cam_grid(config), seed=config.seed, **settings
        )
    return _propagation_memo[key]


def propagation_scores(config: RunConfig, splits: dict) -> dict:
    """How good a run's propagated masks are, against SynthFrac's built-in masks of the
    same training images: propagated_images (proposals kept), propagated_iou (their mean
    IoU on the CAM grid) and propagated_marker_share (the share of their cells on the
    laterality marker: the shortcut copied into the masks)."""
    from agkit.analysis.diagnostics import synthfrac_marker_masks

    propagated = propagated_masks(config)
    grid = cam_grid(config)
    chosen = propagated.kept(config.min_confidence) & ~propagated.drawn
    train = splits["train"]
    masks = propagated.masks[chosen]
    return {
        "propagated_images": int(chosen.sum()),
        "propagated_iou": float(grid_iou(masks, train.masks[chosen], grid).nanmean()),
        "propagated_marker_share": marker_share(masks, synthfrac_marker_masks(train)[chosen], grid),
    }


def image_positions(dataset, image_ids) -> list[int]:
    """The dataset indices of ``image_ids``; ValueError naming the first id it lacks."""
    position = {image_id: i for i, image_id in enumerate(dataset.image_ids)}
    missing = [i for i in image_ids if i not in position]
    if missing:
        raise ValueError(
            f"annotated_ids names {len(missing)} image(s) that are not training images of "
            f"this run, e.g. {missing[0]!r}."
        )
    return [position[i] for i in image_ids]


def training_loader(config: RunConfig, train: GuidedDataset):
    """The training batches of a run: (images B x C x S x S, labels B, masks B x 1 x S x S,
    has_mask B), shuffled, or with ``config.annotated_share`` of the draws going to the
    images that have a mask (``few_masks.few_mask_loader``, with replacement)."""
    return few_mask_loader(train, config.batch_size, config.annotated_share, config.seed)
