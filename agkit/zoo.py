"""The guidance zoo: train with any guidance term and score the result, on SynthFrac and
Decoy-MNIST. Used by notebook 06 and ``benchmarks/guidance_zoo.py``.

Batches here have five parts, ``(images, labels, masks, has_mask, forbidden)``: the
four of ``agkit.train`` plus the "don't look here" mask (SynthFrac's marker box,
Decoy-MNIST's swatch). Each run trains with ``CE + lam * term(...)`` (``agkit.guidance``)
and keeps the time of every step, so that terms can be compared by cost as well.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from agkit import course, diagnostics
from agkit.guidance import get_term
from agkit.models import CAMNet
from agkit.train import recalibrate_batchnorm, set_seed

# lam per term ("baseline" is plain cross-entropy with average pooling). Not tuned on a
# validation split: SynthFrac's "cam" is the course's choice, the others are first guesses;
# Decoy-MNIST's come from a one-seed sweep scored on its test split (so slightly optimistic).
# Pass lam= to the run functions to try others.
LAMBDAS = {
    "synthfrac": {"cam": 3.0, "forbidden": 1.0, "rrr": 10.0, "gradcam": 3.0, "gain": 1.0},
    "decoy_mnist": {"cam": 1.0, "forbidden": 10.0, "rrr": 10.0, "gradcam": 1.0, "gain": 1.0},
}
METHODS = ("baseline", "cam", "forbidden", "rrr", "gradcam", "gain")


@dataclass
class Run:
    """One trained model with its method, lam, seed and per-step seconds."""

    method: str
    lam: float
    seed: int
    model: nn.Module
    step_seconds: list


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


def guided_step(model, batch, optimizer, term, lam: float) -> float:
    """One step of ``CE + lam * term``; returns its seconds. ``term`` None is the baseline."""
    device = next(model.parameters()).device
    images, labels, masks, has_mask, forbidden = (t.to(device) for t in batch)
    started = time.perf_counter()
    if term is not None and getattr(term, "needs_input_grad", False):
        images.requires_grad_(True)
    out = model(images)
    loss = F.cross_entropy(out.logits, labels)
    if term is not None and lam > 0:
        loss = loss + lam * term(model, images, labels, masks, has_mask.bool(), out, forbidden)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def train(
    model,
    train_loader,
    method: str,
    lam: float,
    *,
    epochs: int,
    lr: float,
    seed: int,
    progress: bool = False,
) -> Run:
    """Train ``model`` with the named method ("baseline" or a term of agkit.guidance)."""
    set_seed(seed)
    term = None if method == "baseline" else get_term(method)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    seconds = []
    for _ in tqdm(range(epochs), desc=method, leave=False, disable=not progress):
        for batch in train_loader:
            seconds.append(guided_step(model, batch, optimizer, term, lam))
            if not np.isfinite(seconds[-1]):
                break
    recalibrate_batchnorm(model, train_loader)
    return Run(method, lam, seed, model.eval(), seconds)


@torch.no_grad()
def predictions(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The predicted class of every image: n x C x H x W -> n."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat(
        [
            model(images[i : i + batch_size].to(device)).logits.argmax(1).cpu()
            for i in range(0, len(images), batch_size)
        ]
    )


def pooling_of(method: str) -> str:
    """The pooling each method was designed with (the baseline's is average pooling)."""
    return "avg" if method == "baseline" else get_term(method).pooling


# ---------------------------------------------------------------------------------------
# SynthFrac
# ---------------------------------------------------------------------------------------


def synthfrac_data(profile: course.Profile, seed: int) -> dict:
    """SynthFrac splits of a course profile, each with its marker box as forbidden mask."""
    splits = course.make_splits(course.baseline_config(profile, seed))
    return {name: (s, diagnostics.synthfrac_marker_masks(s)) for name, s in splits.items()}


def synthfrac_run(
    profile: course.Profile,
    method: str,
    seed: int,
    data: dict | None = None,
    *,
    lam: float | None = None,
    epochs: int | None = None,
    ig_images: int = 128,
    ig_steps: int = 32,
    device=None,
    keep_model: bool = False,
) -> dict:
    """Train one method on SynthFrac and score it on the shifted test split.

    Returns a dict: method, lam, seed, accuracy_shifted, worst_group_shifted,
    wrong_reason_cam, wrong_reason_ig (on the first ``ig_images`` shifted test images with
    a marker; Integrated Gradients with ``ig_steps`` steps), step_seconds (median), steps;
    with ``keep_model`` also model (on the CPU).
    """
    data = data or synthfrac_data(profile, seed)
    lam = LAMBDAS["synthfrac"].get(method, 0.0) if lam is None else lam
    train_set, forbidden = data["train"]
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
    run = train(
        model, batches, method, lam, epochs=epochs or profile.epochs, lr=profile.lr, seed=seed
    )
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
        "seed": seed,
        "accuracy_shifted": float((predicted == test.labels).float().mean()),
        "worst_group_shifted": diagnostics.worst_group_accuracy(
            predicted, test.labels, test.meta["marker"]
        ),
        "wrong_reason_cam": reasons["cam"],
        "wrong_reason_ig": reasons["ig"],
        "step_seconds": float(np.median(run.step_seconds)),
        "steps": len(run.step_seconds),
    }
    if keep_model:
        result["model"] = run.model.cpu()
    return result


# ---------------------------------------------------------------------------------------
# Decoy-MNIST
# ---------------------------------------------------------------------------------------


class SmallConvNet(nn.Module):
    """Three 3x3 convolutions for 28 x 28 digits: B x 1 x 28 x 28 -> B x 64 x 7 x 7."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        layers, previous = [], in_channels
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(previous, width, 3, 1 if i == 0 else 2, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            previous = width
        self.body = nn.Sequential(*layers)
        self.out_channels = previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def digit_model(pooling: str = "avg", seed: int = 0) -> CAMNet:
    """A CAMNet for 28 x 28 digits on the SmallConvNet backbone (7 x 7 CAMs)."""
    torch.manual_seed(seed)
    model = CAMNet("tiny", num_classes=10, in_channels=1, pooling=pooling)
    model.backbone = SmallConvNet()
    model.classifier = nn.Linear(model.backbone.out_channels, 10)
    return model


def decoy_run(
    train_set,
    test_set,
    method: str,
    seed: int,
    *,
    lam: float | None = None,
    epochs: int = 2,
    batch_size: int = 64,
    lr: float = 3e-3,
    device=None,
) -> dict:
    """Train one method on Decoy-MNIST training data; score on its test data.

    train_set, test_set: ``agkit.data.decoy_mnist.DecoyMNIST``. Returns a dict: method,
    lam, seed, accuracy_test, step_seconds (median), steps.
    """
    lam = LAMBDAS["decoy_mnist"].get(method, 0.0) if lam is None else lam
    batches = loader(*train_set.tensors(), batch_size=batch_size, shuffle=True, seed=seed)
    model = digit_model(pooling_of(method), seed).to(device or "cpu")
    run = train(model, batches, method, lam, epochs=epochs, lr=lr, seed=seed)
    predicted = predictions(run.model, test_set.images)
    return {
        "dataset": "decoy_mnist",
        "method": method,
        "lam": lam,
        "seed": seed,
        "accuracy_test": float((predicted == test_set.labels).float().mean()),
        "step_seconds": float(np.median(run.step_seconds)),
        "steps": len(run.step_seconds),
    }


def interleaved_step_ratios(
    make_model,
    batch,
    methods=METHODS,
    *,
    lams: dict | None = None,
    repeats: int = 20,
    warmup: int = 2,
) -> pd.Series:
    """Median training-step time of each method divided by the baseline's.

    The methods take turns, one step each, ``repeats`` times on the same five-part batch,
    so a machine whose load drifts slows them all alike (timings taken run after run on a
    shared machine are not comparable). ``make_model(pooling)`` builds a fresh model;
    ``lams`` gives each term's weight (default 1). Returns a Series indexed by method.
    """
    lams = lams or {}
    state = {}
    for method in methods:
        model = make_model(pooling_of(method)).train()
        term = None if method == "baseline" else get_term(method)
        state[method] = (model, term, torch.optim.AdamW(model.parameters(), lr=1e-4))
    seconds = {method: [] for method in methods}
    for repeat in range(warmup + repeats):
        for method, (model, term, optimizer) in state.items():
            elapsed = guided_step(model, batch, optimizer, term, lams.get(method, 1.0))
            if repeat >= warmup:
                seconds[method].append(elapsed)
    medians = pd.Series({method: float(np.median(v)) for method, v in seconds.items()})
    return medians / medians["baseline"]


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per method, and each method's median step
    time as a multiple of the baseline's (``step_ratio``)."""
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
    step = table.groupby("method", sort=False)["step_seconds"].median()
    summary["step_ratio"] = step / step["baseline"] if "baseline" in step else np.nan
    return summary
