"""Runs on a few masks chosen by someone: the student's own (notebook 02), the kit's proposal
of which images to annotate, and its random control."""

from __future__ import annotations

import numbers

from agkit.experiments.configs import (
    FEW_MASKS,
    RunConfig,
    baseline_config,
    masks_config,
)
from agkit.experiments.errors import NoMasksError
from agkit.experiments.mask_checks import annotation_folder, check_mask_store, mask_changes
from agkit.experiments.profiles import Profile
from agkit.experiments.splits import make_datasets, make_splits
from agkit.experiments.store import load_model


def _check_count(n) -> None:
    """Refuse a number of masks below 1: an empty ``annotated_ids`` means *every* mask."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(
            f"n must be a whole number of masks, at least 1, got {n!r}; for a run without "
            "masks use baseline_config(profile, seed), the run guidance is compared with."
        )


def random_control_config(
    profile: Profile,
    lam: float | None = None,
    seed: int = 0,
    n: int = FEW_MASKS,
    *,
    propagation: str | None = None,
) -> RunConfig:
    """The control of a few-mask run: the built-in masks of n training images chosen at
    random (the first n of the "random" proposal), trained like ``few_mask_config``
    (lam default FEW_MASK_LAM) or, with a ``propagation``, spread to every training image
    and trained like ``propagated_config`` (lam default PROPAGATED_LAM).

    n must lie between 1 and the number of training images. n = 0 is refused, not read as
    "no masks": a guided run without masks trains the baseline (its control is
    ``baseline_config``), and an empty ``annotated_ids`` means *every* mask.
    """
    _check_count(n)
    proposal = annotation_proposal(profile, "random", seed)
    if n > len(proposal):
        raise ValueError(
            f"n={n} asks for more masks than the {len(proposal)} training images of profile "
            f"{profile.name!r}; pass n <= {len(proposal)}."
        )
    return masks_config(profile, seed, lam, propagation, annotated_ids=proposal[:n])


def your_masks_config(
    profile: Profile,
    lam: float | None = None,
    seed: int = 0,
    runs_dir="runs",
    *,
    propagation: str | None = None,
    strategy: str | None = None,
    n: int = FEW_MASKS,
    device=None,
) -> tuple[RunConfig, int, str]:
    """The run on the masks a student drew in notebook 02 for ``seed``'s images.

    propagation: None trains on the drawn masks alone, the annotated images oversampled
    (``few_mask_config``, lam default FEW_MASK_LAM); a propagator's name spreads them to
    every training image first (``propagated_config``, lam default PROPAGATED_LAM).

    Returns (config, number of masks, fallback). With masks in ``annotation_folder`` the
    run trains on them and fallback is "". Without any (notebook 02 was not run), it
    trains on the built-in masks of the first ``n`` images the kit proposes with
    ``strategy`` (None: the measured best, ``agkit.analysis.selection.DEFAULT_STRATEGY``) instead,
    and fallback says so, after NoMasksError's message on what was missing.
    """

    def config(**masks) -> RunConfig:
        return masks_config(profile, seed, lam, propagation, **masks)

    _check_count(n)  # n = 0 or -3 would slice the proposal into every mask or most of them
    folder = annotation_folder(profile, runs_dir, seed)
    try:
        train_ids = make_splits(baseline_config(profile, seed))["train"].image_ids
        count = check_mask_store(folder, train_ids)
    except NoMasksError as error:
        if strategy is None:
            from agkit.analysis.selection import DEFAULT_STRATEGY

            strategy = DEFAULT_STRATEGY
        proposed = annotation_proposal(profile, strategy, seed, runs_dir, device=device)[:n]
        fallback = (
            f"{error}\nSo this run trains on the built-in masks of the {len(proposed)} images "
            f"the kit proposes first (strategy {strategy!r}) instead of masks you drew."
        )
        return config(annotated_ids=proposed), len(proposed), fallback
    return config(**mask_changes("annotations", profile, runs_dir, seed)), count, ""


def annotation_proposal(
    profile: Profile,
    strategy: str,
    seed: int = 0,
    runs_dir="runs",
    *,
    device=None,
) -> list[str]:
    """The training image ids of ``seed`` in the order the kit proposes to annotate them.

    The course's baseline of that seed (trained first if it is not stored) ranks the
    images with ``agkit.analysis.selection.rank_for_annotation`` and ``strategy`` ("random": the
    control, which needs no baseline).
    """
    from agkit.analysis.selection import (  # scikit-learn
        MODEL_FREE_STRATEGIES,
        check_strategy,
        rank_for_annotation,
    )

    check_strategy(strategy)  # before the baseline it ranks with is trained
    config = baseline_config(profile, seed)
    train = make_datasets(config)["train"]
    model = (
        None if strategy in MODEL_FREE_STRATEGIES else load_model(config, runs_dir, device=device)
    )
    order = rank_for_annotation(model, train, strategy, seed=seed)
    return [train.image_ids[i] for i in order]
