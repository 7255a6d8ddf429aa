"""The guidance zoo: train with any guidance term and score the result, on SynthFrac and
Decoy-MNIST. Used by notebook 06 and ``benchmarks/guidance_zoo.py``.

Batches here have five parts, ``(images, labels, masks, has_mask, forbidden)``: the
four of ``agkit.method.train`` plus the "don't look here" mask (SynthFrac's marker box,
Decoy-MNIST's swatch). Each run trains with ``CE + lam * term(...)`` (``agkit.guidance``)
through the course's ``agkit.method.train.fit``, and keeps its step times, so that terms can be
compared by cost as well.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from agkit import experiments
from agkit.analysis import diagnostics
from agkit.guidance import get_term
from agkit.method.camnet import CAMNet
from agkit.method.train import decay_step, fit, training_step

# lam per term ("baseline" is plain cross-entropy with average pooling), as chosen by
# ``benchmarks/guidance_zoo.py --tune`` on the workshop profile: the value of LAMBDA_GRIDS
# with the best validation score on seed 0 (SynthFrac: worst-group accuracy on
# "val_shifted"; Decoy-MNIST: accuracy on its held-out "val" digits, which carry the test
# rule; 4 epochs, constant lr). The test splits played no part.
LAMBDAS = {
    "synthfrac": {"cam": 10.0, "forbidden": 10.0, "rrr": 1000.0, "gradcam": 10.0, "gain": 3.0},
    "decoy_mnist": {"cam": 0.3, "forbidden": 1.0, "rrr": 100.0, "gradcam": 10.0, "gain": 1.0},
}
LAMBDA_GRIDS = {
    "synthfrac": {
        "cam": (1.0, 3.0, 10.0),
        "forbidden": (1.0, 10.0, 100.0),
        "rrr": (10.0, 100.0, 1000.0),
        "gradcam": (1.0, 3.0, 10.0),
        "gain": (0.3, 1.0, 3.0),
    },
    "decoy_mnist": {
        "cam": (0.3, 1.0, 3.0),
        "forbidden": (1.0, 10.0, 100.0),
        "rrr": (100.0, 1000.0, 10000.0),
        "gradcam": (1.0, 3.0, 10.0),
        "gain": (0.3, 1.0, 3.0),
    },
}
#: SynthFrac's "don't look here" regions (``diagnostics.synthfrac_marker_masks``): "marker",
#: the marker's box on the images that have one; "corners", the four boxes where a marker
#: can sit, on every image (an empty corner gives the label away too).
REGIONS = ("marker", "corners")
#: the region each SynthFrac term that uses one trains with, chosen with its lam by
#: ``--tune`` on seed 0's validation split (best worst-group accuracy of the lam grid):
#: the forbidden CAM term needs every corner (0.63, against 0.09 on the marker's box),
#: RRR does better on the marker's box (0.38, against 0.20 on every corner).
REGION = {"forbidden": "corners", "rrr": "marker"}
#: the validation score each dataset's lam is chosen by (higher is better)
VALIDATION_SCORE = {"synthfrac": "worst_group_val_shifted", "decoy_mnist": "accuracy_val"}
METHODS = ("baseline", "cam", "forbidden", "rrr", "gradcam", "gain")


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
        progress=progress,
    )
    per_epoch = len(train_loader)
    seconds = list(history["seconds"] / per_epoch)
    return Run(method, lam, seed, model.eval(), seconds, per_epoch * len(history))


def step_settings(method: str, lam: float) -> tuple[float, object]:
    """(lam, guidance) for ``fit``/``training_step``: the method's term and lam, or for the
    baseline lam 0 with a term that is never called. Given a term, a step with lam 0 is
    plain cross-entropy; with none it also measures the paper's attention loss on the
    masks (for the course's plots), which would make the baseline's step look dearer."""
    if method == "baseline":
        return 0.0, get_term("cam")
    return lam, get_term(method)


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


class SmallConvNet(nn.Module):
    """Five 3x3 convolutions for 28 x 28 digits: B x 1 x 28 x 28 -> B x 64 x 7 x 7.

    The second and third have stride 2 (28 -> 14 -> 7); the last two keep the 7 x 7 grid
    and widen what each cell sees to 25 x 25 pixels, nearly the whole digit. That matters
    for the paper's CAM loss, which spreads each class map evenly over the digit's cells:
    every cell must then recognise the digit by itself. With three convolutions a cell saw
    9 x 9 pixels, a piece of a stroke, and the CAM-guided network underfit (0.90 training
    accuracy after 4 epochs at lam 3, seed 0); with five it reached 0.99, and 0.98 on the
    test digits.

    With ``coordinates`` (the default) two channels holding each pixel's row and column
    (-1 .. 1) are added to the input, as in CoordConv (Liu et al., NeurIPS 2018). A CAMNet
    scores every position with the same weights and pools over positions, so on its own it
    learns only with difficulty (from the zero padding) that a corner never holds evidence;
    an MLP such as Ross et al.'s has a weight per pixel and can. On the three-convolution
    network they raised test accuracy in short runs (12,000 digits, 3 epochs, seed 0) from
    0.66 to 0.81 for RRR (lam 1000); on this one, after 4 epochs (seed 0), from 0.978 to
    0.983 for RRR (lam 100) and from 0.982 to 0.985 for the CAM loss (lam 3).
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: tuple[int, ...] = (16, 32, 64, 64, 64),
        strides: tuple[int, ...] = (1, 2, 2, 1, 1),
        coordinates=True,
    ):
        super().__init__()
        if len(widths) != len(strides):
            raise ValueError(
                f"one stride per width: got {len(widths)} widths, {len(strides)} strides."
            )
        self.coordinates = coordinates
        layers, previous = [], in_channels + (2 if coordinates else 0)
        for width, stride in zip(widths, strides, strict=True):
            layers += [
                nn.Conv2d(previous, width, 3, stride, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            previous = width
        self.body = nn.Sequential(*layers)
        self.out_channels = previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.coordinates:
            b, _, h, w = x.shape
            rows = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1)
            cols = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w)
            x = torch.cat([x, rows.expand(b, 1, h, w), cols.expand(b, 1, h, w)], dim=1)
        return self.body(x)


def digit_model(pooling: str = "avg", seed: int = 0, coordinates: bool = True) -> CAMNet:
    """A CAMNet for 28 x 28 digits on the SmallConvNet backbone (7 x 7 CAMs)."""
    torch.manual_seed(seed)
    model = CAMNet("tiny", num_classes=10, in_channels=1, pooling=pooling)
    model.backbone = SmallConvNet(coordinates=coordinates)
    model.classifier = nn.Linear(model.backbone.out_channels, 10)
    return model


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
    batches = loader(*train_set.tensors(), batch_size=batch_size, shuffle=True, seed=seed)
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
        lam, term = step_settings(method, lams.get(method, 1.0))
        state[method] = (model, lam, term, torch.optim.AdamW(model.parameters(), lr=1e-4))
    seconds = {method: [] for method in methods}
    for repeat in range(warmup + repeats):
        for method, (model, lam, term, optimizer) in state.items():
            started = time.perf_counter()
            training_step(model, batch, optimizer, lam=lam, guidance=term)
            if repeat >= warmup:
                seconds[method].append(time.perf_counter() - started)
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
