"""Making a few masks go far: guided training when only some training images have masks.

With 20 masks among 500 images most batches hold one annotated image or none. Three
changes to the course's guided recipe, each optional, so each can be measured alone:

* ``annotated_share``: sample the annotated images more often, so that they make up
  this share of the images drawn in every epoch (a WeightedRandomSampler). Of the three,
  this is the one that carries few masks far (``benchmarks/few_masks.py``).
* ``baseline=``: "switch guidance on". Start from the trained baseline, change its pooling
  to softmax and train on with the attention loss, instead of training from scratch.
  It is cheaper, but the baseline has already settled on the shortcut, and a few masks
  move it less than they steer a network that starts fresh.
* ``lam`` and the annotated share: the attention loss is a *mean over the annotated
  positions of a batch*, so its size does not shrink with fewer masks; what shrinks is
  the share of batches that hold any mask, and the number of images the term averages
  over. ``lam / share`` (the naive correction) would multiply the pull on one or two
  images per batch by 25 at 20 masks of 500; ``batch_coverage`` gives the factor that
  really changes, and ``balanced_lam`` divides lam by it. With oversampling nearly
  every batch holds a mask anyway, so the two overlap.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import cast

import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from agkit.data import GuidedDataset, make_loader
from agkit.method.train import fit

# The course's few-mask recipe: the share of the draws that go to annotated images
# (RunConfig.annotated_share) and the weight of the attention loss. Chosen on the
# validation split with benchmarks/few_masks.py (workshop profile, 20 masks, 3 seeds):
# share 0.25 against 0.5 at weights 3 and 10, then weights 0.3, 1, 3 and 10 at share 0.25.
# Weights above 1 cost validation accuracy; 0.3 kept less attention inside the masks.
ANNOTATED_SHARE = 0.25
FEW_MASK_LAM = 1.0


def with_masks(dataset: GuidedDataset, indices: Iterable[int]) -> GuidedDataset:
    """A copy of ``dataset`` in which only the images at ``indices`` keep their masks."""
    chosen = torch.zeros(len(dataset), dtype=torch.bool)
    indices = list(indices)
    if indices and (min(indices) < 0 or max(indices) >= len(dataset)):
        raise ValueError(
            f"mask indices must lie in [0, {len(dataset)}); got {min(indices)}..{max(indices)}."
        )
    chosen[indices] = True
    result = copy.copy(dataset)
    result.mask_kept = dataset.mask_kept & chosen
    return result


def annotated_images(dataset: GuidedDataset) -> torch.Tensor:
    """n bools: which images of ``dataset`` train with a mask (kept and not empty).

    ``dataset.mask_kept`` alone is not enough: with masks from a MaskStore it is True for
    every image, also for those nobody has annotated yet.
    """
    return torch.tensor([bool(dataset[i][3]) for i in range(len(dataset))], dtype=torch.bool)


def batch_coverage(n_annotated: int, n_images: int, batch_size: int) -> float:
    """Probability that a batch drawn without replacement holds at least one annotated image."""
    if n_annotated <= 0:
        return 0.0
    none = 1.0
    for k in range(min(batch_size, n_images)):
        none *= max(n_images - n_annotated - k, 0) / (n_images - k)
    return 1.0 - none


def balanced_lam(lam: float, n_annotated: int, n_images: int, batch_size: int) -> float:
    """lam divided by batch_coverage: the attention term's mean strength per step is then
    that of full annotation (1.0 for lam when every batch holds a mask)."""
    coverage = batch_coverage(n_annotated, n_images, batch_size)
    return lam / coverage if coverage > 0 else lam


def oversampling_loader(
    dataset: GuidedDataset, batch_size: int, annotated_share: float, seed: int = 0
) -> DataLoader:
    """Batches of (image, label, mask, has_mask) in which annotated images make up about
    ``annotated_share`` of the draws (with replacement; len(dataset) draws an epoch).

    Annotated images are those with a kept, non-empty mask (``annotated_images``); with
    none, or with none unannotated, it is a plain shuffled loader.
    """
    if not 0 < annotated_share < 1:
        raise ValueError(
            f"annotated_share must lie strictly between 0 and 1, got {annotated_share}."
        )
    kept = annotated_images(dataset)
    n_kept = int(kept.sum())
    if n_kept in (0, len(dataset)):
        return make_loader(dataset, batch_size, shuffle=True, seed=seed)
    weights = torch.where(
        kept, annotated_share / n_kept, (1 - annotated_share) / (len(dataset) - n_kept)
    ).double()
    sampler = WeightedRandomSampler(
        cast(Sequence[float], weights),  # the stub asks for a sequence; a tensor works
        len(dataset),
        replacement=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler)


def few_mask_loader(
    dataset: GuidedDataset, batch_size: int, annotated_share: float | None, seed: int = 0
) -> DataLoader:
    """Training batches of (image, label, mask, has_mask): plainly shuffled when
    ``annotated_share`` is None, else with annotated images oversampled to that share of the
    draws (``oversampling_loader``)."""
    if annotated_share is None:
        return make_loader(dataset, batch_size, shuffle=True, seed=seed)
    return oversampling_loader(dataset, batch_size, annotated_share, seed)


def switch_guidance_on(baseline) -> torch.nn.Module:
    """A copy of a trained CAMNet with softmax pooling, ready for guided fine-tuning."""
    model = copy.deepcopy(baseline)
    model.pooling = "softmax"
    return model


def train_with_few_masks(
    dataset: GuidedDataset,
    *,
    lam: float,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    baseline=None,
    model=None,
    annotated_share: float | None = None,
    balance_lam: bool = False,
    device=None,
    **fit_options,
):
    """Guided training on ``dataset``, some of whose images have masks.

    Args:
        dataset: the training GuidedDataset, e.g. ``with_masks(train, chosen)``.
        lam: weight of the attention loss (before ``balance_lam``).
        baseline: a trained CAMNet to fine-tune ("switch guidance on"); or
        model: a fresh CAMNet (pooling "softmax") to train from scratch. Give exactly one.
        annotated_share: oversample annotated images to this share of the draws (None: no).
        balance_lam: divide lam by ``batch_coverage`` (see the module docstring).
        fit_options: passed on to ``fit``.

    Returns:
        (model, history): the trained model and fit's history table.

    Raises:
        ValueError when no image of ``dataset`` has a mask while lam > 0: the run would
        train the baseline under the name of guidance.
    """
    if (baseline is None) == (model is None):
        raise ValueError("pass either baseline= (to fine-tune) or model= (to train from scratch).")
    n_annotated = int(annotated_images(dataset).sum())
    if n_annotated == 0 and lam > 0:
        raise ValueError(
            f"none of the {len(dataset)} images of the dataset has a mask, so guided training "
            "would train the baseline. Keep some masks (with_masks(dataset, indices) with "
            "indices of annotated images, or load the drawn masks), or train the baseline "
            "with fit(model, loader, lam=0)."
        )
    model = switch_guidance_on(baseline) if baseline is not None else model
    loader = few_mask_loader(dataset, batch_size, annotated_share, seed)
    if balance_lam:
        lam = balanced_lam(lam, n_annotated, len(dataset), batch_size)
    history = fit(
        model,
        loader,
        lam=lam,
        epochs=epochs,
        lr=lr,
        seed=seed,
        device=device,
        callbacks=fit_options.pop("callbacks", []),
        **fit_options,
    )
    return model, history
