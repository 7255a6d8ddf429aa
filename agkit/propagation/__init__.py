"""Mask propagation: from the few masks a person drew, masks for every training image.

A student draws about 20 masks; the training set holds 500 images. Guided training on the
20 alone pulls the network's attention on a handful of images per epoch and recovers a
third of what masks on every image give. Propagation fills in the other 480: a
*propagator* learns from the drawn masks what a mask looks like for each class, proposes
one for every image without a mask, and says how sure it is (a confidence in [0, 1] per
image). Guided training then uses the drawn masks and the confident proposals alike.

The idea is old in weak supervision: a teacher trained on a few human maps labels the
rest (Crum et al., BMVC 2023, for saliency maps; Qiao et al. 2018 for human attention),
and SAL (Boyd et al. 2024) reports most of the benefit of human saliency with a fifth of
the annotation. Propagators here (one module each):

* ``"segmenter"`` (``agkit.propagation.segmenter``): a small convolutional network that
  takes an image and its label and predicts the mask on the CAM grid, trained on the drawn
  masks with flips and shifts.
* ``"self_training"`` (``agkit.propagation.self_training``): a guided network trained on the
  drawn masks alone labels the other images with its own CAMs. It can copy a shortcut
  into the masks; ``marker_mass`` measures how much of a mask lands on it.

``propagate(name, dataset, grid)`` gives a ``Propagated``; ``with_propagated(dataset,
propagated, min_confidence)`` the training set that guided training uses.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from agkit.data import GuidedDataset


@dataclass(frozen=True)
class Propagated:
    """Masks for every image of a training set.

    masks: n x 1 x H x W of 0/1 at the images' resolution: the drawn mask where there is
        one, the proposal elsewhere (all zero where the propagator proposes nothing).
    confidence: n floats in [0, 1]; 1 for a drawn mask.
    drawn: n bools, True where a person drew the mask.
    """

    masks: torch.Tensor
    confidence: torch.Tensor
    drawn: torch.Tensor

    def kept(self, min_confidence: float) -> torch.Tensor:
        """n bools: the images that train with a mask (drawn, or proposed with at least
        ``min_confidence`` and not empty)."""
        check_min_confidence(min_confidence)
        proposed = (self.confidence >= min_confidence) & self.masks.flatten(1).any(dim=1)
        return self.drawn | proposed


def check_min_confidence(min_confidence: float) -> None:
    """Raise a ValueError unless ``min_confidence`` lies in [0, 1], the range of a
    confidence: above 1 (or NaN) it would keep no proposal, and the run would train on the
    drawn masks alone under a propagated label."""
    if isinstance(min_confidence, bool) or not 0 <= min_confidence <= 1:
        raise ValueError(
            f"min_confidence must be a number from 0 to 1 (0 keeps every proposal), "
            f"got {min_confidence!r}."
        )


def training_tensors(dataset: GuidedDataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images n x C x S x S, labels n, masks n x 1 x S x S) of ``dataset``, unaugmented;
    a mask is all zero where the image has none (not annotated, or not kept)."""
    if dataset.augment or dataset._augment_tf is not None:
        raise ValueError(
            "propagation reads the training images as they are; pass the dataset without "
            "augment= or transform= (the segmenter augments on its own)."
        )
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([item[0] for item in items])
    labels = torch.stack([torch.as_tensor(item[1]) for item in items]).long()
    masks = torch.stack([item[2] * bool(item[3]) for item in items]).float()
    return images, labels, masks


def propagate(
    name: str, dataset: GuidedDataset, grid: tuple[int, int], *, seed: int = 0, **settings
) -> Propagated:
    """Masks for every image of ``dataset`` from those it holds, with propagator ``name``.

    Args:
        name: a key of PROPAGATORS ("segmenter", "self_training").
        dataset: the training set; the images with a mask are the drawn ones.
        grid: (h, w) of the CAM grid the masks guide.
        seed: seeds the propagator's training.
        settings: the propagator's own settings (e.g. the segmenter's ``steps``, the
            teacher's ``backbone`` and ``epochs`` for self-training).

    Raises:
        ValueError for an unknown name or a dataset without any mask. A class without
        any drawn mask gets no proposals (empty, confidence 0), with a warning.
    """
    if name not in PROPAGATORS:
        raise ValueError(f"unknown propagator {name!r}; choose one of {', '.join(PROPAGATORS)}.")
    images, labels, masks = training_tensors(dataset)
    drawn = masks.flatten(1).any(dim=1)
    if not drawn.any():
        raise ValueError(
            "none of the training images has a mask, so there is nothing to propagate: draw "
            "some masks (notebook 02) or keep some (few_masks.with_masks)."
        )
    unlearnt = [c for c in labels.unique().tolist() if not drawn[labels == c].any()]
    if unlearnt:
        warnings.warn(
            f"no image of class {', '.join(map(str, unlearnt))} has a mask, so the propagator "
            "cannot learn what a mask of that class looks like and proposes none for it: "
            "draw at least one mask for every class.",
            stacklevel=2,
        )
    proposed, confidence = PROPAGATORS[name](images, labels, masks, drawn, grid, seed, **settings)
    learnt = ~torch.isin(labels, torch.tensor(unlearnt, dtype=labels.dtype))
    proposed = proposed * learnt[:, None, None, None]
    confidence = confidence * learnt
    return Propagated(
        masks=torch.where(drawn[:, None, None, None], masks, proposed),
        confidence=torch.where(drawn, torch.ones_like(confidence), confidence),
        drawn=drawn,
    )


def with_propagated(
    dataset: GuidedDataset, propagated: Propagated, min_confidence: float
) -> GuidedDataset:
    """A copy of ``dataset`` whose masks are the drawn ones plus the proposals of at least
    ``min_confidence`` (the others train without a mask, on cross-entropy alone)."""
    images, labels, _ = training_tensors(dataset)
    kept = propagated.kept(min_confidence)
    masks = propagated.masks * kept[:, None, None, None]
    return GuidedDataset(
        images, labels, masks, image_ids=dataset.image_ids, meta=dataset.meta, seed=dataset.seed
    )


def grid_iou(masks: torch.Tensor, reference: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """n IoUs of two sets of masks (n x 1 x H x W, 0/1) on the CAM grid, where the
    loss sees them (a cell counts when a mask touches it); NaN where both are empty."""
    from agkit.method.loss import shrink_masks

    a = shrink_masks(masks.float(), grid).flatten(1) > 0
    b = shrink_masks(reference.float(), grid).flatten(1) > 0
    union = (a | b).sum(dim=1).float()
    return torch.where(union > 0, (a & b).sum(dim=1) / union.clamp(min=1), float("nan"))


# name -> propagator(images, labels, masks, drawn, grid, seed, **settings) -> (masks
# n x 1 x H x W, confidence n); each imports its module only when asked.
def _segmenter(*args, **settings):
    from agkit.propagation.segmenter import propagate_with_segmenter

    return propagate_with_segmenter(*args, **settings)


def _self_training(*args, **settings):
    from agkit.propagation.self_training import propagate_with_cams

    return propagate_with_cams(*args, **settings)


PROPAGATORS: dict[str, Callable] = {"segmenter": _segmenter, "self_training": _self_training}


def marker_share(masks: torch.Tensor, markers: torch.Tensor, grid: tuple[int, int]) -> float:
    """The share of the masks' grid cells that touch a shortcut (masks and markers
    n x 1 x H x W of 0/1, e.g. ``synthetic.marker_masks``): 0 when no mask marks it."""
    from agkit.method.loss import shrink_masks

    cells = shrink_masks(masks.float(), grid).flatten(1) > 0
    on_marker = cells & (shrink_masks(markers.float(), grid).flatten(1) > 0)
    total = int(cells.sum())
    return int(on_marker.sum()) / total if total else 0.0
