"""The guidance zoo: train with any guidance term and score the result, on SynthFrac and
Decoy-MNIST. Used by notebook 06 and ``benchmarks/guidance_zoo.py``.

Batches here have five parts, ``(images, labels, masks, has_mask, forbidden)``: the
four of ``agkit.method.train`` plus the "don't look here" mask (SynthFrac's marker box,
Decoy-MNIST's swatch). Each run trains with ``CE + lam * term(...)`` (``agkit.guidance``)
through the course's ``agkit.method.train.fit``, and keeps its step times, so that terms can be
compared by cost as well.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from agkit import experiments
from agkit.analysis import diagnostics
from agkit.engine.callback_list import run_callbacks
from agkit.engine.timing import step_times

# the settings the zoo trains with
from agkit.experiments.zoo_settings import (
    LAMBDAS,
    METHODS,
    REGION,
    REGIONS,
)
from agkit.guidance import get_term
from agkit.method.camnet import CAMNet
from agkit.method.predict import classify
from agkit.method.train import decay_step, fit, training_step


def fingerprint() -> str:
    """A short hash of the code behind a zoo result: the course's training source
    (``experiments.source_files()``), this module and ``agkit.analysis.diagnostics``, which hold the
    lams, the regions and the metrics, and whatever they import. Name a stored result with
    it and no edit can leave an old table looking current."""
    return experiments.source_fingerprint(
        roots=(*experiments.TRAINING_ROOTS, "experiments/zoo.py", "analysis/diagnostics.py")
    )


@dataclass
class Run:
    """One trained model with its method, lam, seed and mean step seconds of each epoch."""

    method: str
    lam: float
    seed: int
    model: nn.Module
    step_seconds: list
    steps: int


def loader(
    images,
    labels,
    masks,
    has_mask,
    forbidden,
    batch_size: int = 64,
    shuffle: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader of five-part batches from tensors (see the module docstring)."""
    dataset = TensorDataset(images, labels, masks, has_mask, forbidden)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
    )


def train(
    model,
    train_loader,
    method: str,
    lam: float,
    *,
    epochs: int,
    lr: float,
    seed: int,
    lr_step: int | None = None,
    device=None,
    progress: bool = False,
) -> Run:
    """Train ``model`` with the named method ("baseline" or a term of agkit.guidance).

    The course's own ``agkit.method.train.fit`` does the work (AdamW, BatchNorm recalibrated at
    the end); the baseline is ``lam = 0``. ``lr_step``: divide the learning rate by 10
    every ``lr_step`` epochs (None: constant). ``step_seconds`` holds each epoch's mean step
    time. Raises ``TrainingDiverged`` as fit does.
    """
    lam, term = step_settings(method, lam)
    history = fit(
        model,
        train_loader,
        lam=lam,
        guidance=term,
        epochs=epochs,
        lr=lr,
        lr_step=lr_step,
        seed=seed,
        device=device,
        callbacks=run_callbacks(progress=progress),
    )
    per_epoch = len(train_loader)
    seconds = list(history["seconds"] / per_epoch)
    return Run(method, lam, seed, model.eval(), seconds, per_epoch * len(history))


def step_settings(method: str, lam: float) -> tuple[float, Callable[..., Any]]:
    """(lam, guidance) for ``fit``/``training_step``: the method's term and lam, or for the
    baseline lam 0 (a step of plain cross-entropy: the term is not computed)."""
    if method == "baseline":
        return 0.0, get_term("cam")
    return lam, get_term(method)


def predictions(model, images: torch.Tensor) -> torch.Tensor:
    """The predicted class of every image: n x C x H x W -> n."""
    return classify(model, images).predicted


def pooling_of(method: str) -> str:
    """The pooling each method was designed with (the baseline's is average pooling)."""
    return "avg" if method == "baseline" else get_term(method).pooling


# ---------------------------------------------------------------------------------------
# SynthFrac
# ---------------------------------------------------------------------------------------


def synthfrac_data(profile: experiments.Profile, seed: int) -> dict:
    """SynthFrac splits of a course profile (``experiments.make_splits``; lam is chosen on
    "val_shifted"), each as (split, its marker boxes n x 1 x S x S)."""
    config = experiments.baseline_config(profile, seed)
    splits = experiments.make_splits(config)
    return {name: (s, diagnostics.synthfrac_marker_masks(s)) for name, s in splits.items()}


def synthfrac_run(
    profile: experiments.Profile,
    method: str,
    seed: int,
    data: dict | None = None,
    *,
    lam: float | None = None,
    region: str | None = None,
    epochs: int | None = None,
    ig_images: int = 128,
    ig_steps: int = 32,
    device=None,
    keep_model: bool = False,
) -> dict:
    """Train one method on SynthFrac and score it on the shifted test split.

    ``region``: the "don't look here" region the term trains with, one of ``REGIONS``
    (default ``REGION[method]``; None, recorded as such, for a method that uses none).

    Returns a dict: method, lam, region, seed, worst_group_val_shifted (for choosing lam),
    accuracy_shifted, worst_group_shifted,
    wrong_reason_cam, wrong_reason_ig (on the first ``ig_images`` shifted test images with
    a marker; Integrated Gradients with ``ig_steps`` steps), step_seconds (median over the
    epochs of the mean step time), steps; with ``keep_model`` also model (on the CPU).
    """
    data = data or synthfrac_data(profile, seed)
    lam = LAMBDAS["synthfrac"].get(method, 0.0) if lam is None else lam
    if region is not None and method not in REGION:
        raise ValueError(
            f"{method!r} uses no forbidden region; region= applies to {', '.join(REGION)}."
        )
    region = region or REGION.get(method)
    if region not in (None, *REGIONS):
        raise ValueError(f"unknown region {region!r}; choose one of {', '.join(REGIONS)}.")
    train_set, forbidden = data["train"]  # the marker's boxes
    if region == "corners":
        forbidden = diagnostics.synthfrac_marker_masks(train_set, every_corner=True)
    has_mask = train_set.masks.flatten(1).amax(1) > 0
    batches = loader(
        train_set.images,
        train_set.labels,
        train_set.masks,
        has_mask,
        forbidden,
        profile.batch_size,
        shuffle=True,
        seed=seed,
    )
    torch.manual_seed(seed)
    model = CAMNet(profile.backbone, num_classes=2, in_channels=1, pooling=pooling_of(method))
    model.to(device or "cpu")
    epochs = epochs or profile.epochs
    lr_step = decay_step(epochs, profile.lr_decay_at)  # the course's schedule
    run = train(
        model,
        batches,
        method,
        lam,
        epochs=epochs,
        lr=profile.lr,
        seed=seed,
        lr_step=lr_step,
        device=device,
    )
    validation = data["val_shifted"][0]
    predicted_val = predictions(run.model, validation.images)
    test, markers = data["test_shifted"]
    predicted = predictions(run.model, test.images)
    with_marker = np.flatnonzero(test.meta["marker"].to_numpy())[:ig_images]
    reasons = diagnostics.wrong_reason(
        run.model, test.images[with_marker], markers[with_marker], steps=ig_steps
    )
    result = {
        "dataset": "synthfrac",
        "method": method,
        "lam": lam,
        "region": region,
        "seed": seed,
        "worst_group_val_shifted": diagnostics.worst_group_accuracy(
            predicted_val, validation.labels, validation.meta["marker"]
        ),
        "accuracy_shifted": float((predicted == test.labels).float().mean()),
        "worst_group_shifted": diagnostics.worst_group_accuracy(
            predicted, test.labels, test.meta["marker"]
        ),
        "wrong_reason_cam": reasons["cam"],
        "wrong_reason_ig": reasons["ig"],
        "step_seconds": float(np.median(run.step_seconds)),
        "steps": run.steps,
    }
    if keep_model:
        result["model"] = run.model.cpu()
    return result


# ---------------------------------------------------------------------------------------
# Decoy-MNIST
# ---------------------------------------------------------------------------------------


def digit_model(pooling: str = "avg", seed: int = 0) -> CAMNet:
    """A CAMNet for 28 x 28 digits on the "digits" backbone (``DigitNet``, 7 x 7 CAMs)."""
    torch.manual_seed(seed)
    return CAMNet("digits", num_classes=10, in_channels=1, pooling=pooling)


def decoy_run(
    train_set,
    test_set,
    method: str,
    seed: int,
    *,
    val_set=None,
    lam: float | None = None,
    epochs: int = 12,
    batch_size: int = 64,
    lr: float = 3e-3,
    lr_decay_at: float | None = 0.75,
    device=None,
) -> dict:
    """Train one method on Decoy-MNIST training data; score on its test data.

    ``lr_decay_at``: divide the learning rate by 10 after this share of the epochs (as the
    course's profiles do); None keeps it constant. The defaults are the benchmark's recipe,
    chosen by validation accuracy on the earlier three-convolution network: RRR's mean
    validation accuracy over seeds 0-2 was 0.935 with 4 epochs and no decay, 0.958 with 8
    and 0.964 with 12 (the decay after 75 %).

    train_set, test_set, val_set: ``agkit.data.decoy_mnist.DecoyMNIST`` (see
    ``decoy_mnist_splits``). Returns a dict: method, lam, seed, accuracy_val (NaN without a
    val_set; for choosing lam), accuracy_test, step_seconds (median over epochs of the mean
    step time), steps.
    """
    lam = LAMBDAS["decoy_mnist"].get(method, 0.0) if lam is None else lam
    images, labels, masks, has_mask, forbidden = train_set.tensors()
    batches = loader(
        images, labels, masks, has_mask, forbidden, batch_size=batch_size, shuffle=True, seed=seed
    )
    model = digit_model(pooling_of(method), seed).to(device or "cpu")
    lr_step = decay_step(epochs, lr_decay_at)
    run = train(
        model, batches, method, lam, epochs=epochs, lr=lr, seed=seed, lr_step=lr_step, device=device
    )
    predicted = predictions(run.model, test_set.images)
    accuracy_val = float("nan")
    if val_set is not None:
        accuracy_val = float(
            (predictions(run.model, val_set.images) == val_set.labels).float().mean()
        )
    return {
        "dataset": "decoy_mnist",
        "method": method,
        "lam": lam,
        "seed": seed,
        "accuracy_val": accuracy_val,
        "accuracy_test": float((predicted == test_set.labels).float().mean()),
        "step_seconds": float(np.median(run.step_seconds)),
        "steps": run.steps,
    }


def step_ratios(
    make_model,
    batch,
    methods=METHODS,
    *,
    lams: dict | None = None,
    repeats: int = 20,
    warmup: int = 2,
) -> pd.Series:
    """Training-step time of each method over the baseline's (``agkit.engine.timing``: the
    methods take turns on the same five-part batch; the median of the per-round ratios).

    ``make_model(pooling)`` builds a fresh model; ``lams`` gives each term's weight (default
    1). Returns a Series indexed by method, the baseline's 1.
    """
    lams = lams or {}
    steps: dict[str, Callable[[], object]] = {}
    for method in ("baseline", *(m for m in methods if m != "baseline")):
        model = make_model(pooling_of(method)).train()
        lam, term = step_settings(method, lams.get(method, 1.0))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        steps[method] = functools.partial(
            training_step, model, batch, optimizer, lam=lam, guidance=term
        )
    return step_times(steps, repeats=repeats, warmup=warmup).ratios()[list(methods)]


def summarize(table: pd.DataFrame, ratios: pd.Series | None = None) -> pd.DataFrame:
    """Mean and standard deviation over seeds per method; with ``ratios`` (``step_ratios``)
    each method's step time over the baseline's as ``step_ratio``."""
    metrics = [
        c
        for c in (
            "accuracy_test",
            "accuracy_shifted",
            "worst_group_shifted",
            "wrong_reason_cam",
            "wrong_reason_ig",
        )
        if c in table
    ]
    summary = table.groupby("method", sort=False)[metrics].agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    if ratios is not None:
        summary["step_ratio"] = ratios.reindex(summary.index)
    return summary


def verdict(summary: pd.DataFrame) -> list[str]:
    """Sentences that say what a SynthFrac ``summarize`` table shows, one per term.

    For each term: whether its mean worst-group accuracy (shifted) beats the baseline's,
    by how much, at what step cost; and a warning when its CAM moved off the marker while
    Integrated Gradients still finds the model reading it (the CAM share fell below half
    the baseline's but the IG share did not fall): an explanation that was trained to
    look right, over a model that was not.
    """
    base = summary.loc["baseline"]
    lines = []
    for method, row in summary.drop(index="baseline").iterrows():
        gain = row["worst_group_shifted_mean"] - base["worst_group_shifted_mean"]
        cost = f", {row['step_ratio']:.1f}x the baseline's step time" if "step_ratio" in row else ""
        line = (
            f"{method}: worst-group accuracy {row['worst_group_shifted_mean']:.2f} against the "
            f"baseline's {base['worst_group_shifted_mean']:.2f} "
            f"({'better' if gain > 0 else 'not better'}, {gain:+.2f}){cost}."
        )
        cam_moved = row["wrong_reason_cam_mean"] < 0.5 * base["wrong_reason_cam_mean"]
        if cam_moved and row["wrong_reason_ig_mean"] >= base["wrong_reason_ig_mean"]:
            line += (
                f" Its CAM left the marker ({row['wrong_reason_cam_mean']:.2f} of the attention "
                f"there, baseline {base['wrong_reason_cam_mean']:.2f}), but Integrated "
                f"Gradients still puts {row['wrong_reason_ig_mean']:.2f} of the attribution "
                f"there (baseline {base['wrong_reason_ig_mean']:.2f}): the CAM changed, not "
                "the reasoning."
            )
        lines.append(line)
    return lines
