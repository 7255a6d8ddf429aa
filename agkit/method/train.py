"""Training: one step of the method, and ``fit``, the loop of epochs around it.

Every loader yields batches ``(image, label, mask, has_mask)`` or, for guidance terms that
also use a "don't look here" region, ``(image, label, mask, has_mask, forbidden)``:
image B x C x H x W float in [0, 1], label B int64, mask B x 1 x H x W float 0/1 (all
zeros for an image without annotation), has_mask B bool, forbidden B x 1 x H x W 0/1.

One step minimises ``CE(logits, label) + lam * term(...)``. The term is the paper's CAM loss
(``agkit.guidance.CAMGuidance``, i.e. ``attention_guidance_loss(cams, mask)``) unless
``guidance`` names another one in ``agkit.guidance`` or is a callable
``term(model, images, labels, masks, has_mask, out, forbidden) -> scalar tensor``.
lam = 0 trains the baseline: the term is not computed (its history column ``att`` is NaN;
``agkit.method.predict.evaluate`` measures a baseline's attention loss).

``fit`` is only the method's loop: seed, optimiser, epochs of ``training_step``, validation,
history, and BatchNorm statistics re-measured at the end (``agkit.engine.batchnorm``). Its
settings are the fields of ``TrainSettings``. What else a run can do is a callback from
``agkit.engine``: ``Checkpoint`` (save, and resume exactly), ``TimeLimit`` (stop between
epochs), ``Progress`` (bars, the default), ``TensorBoardLog``. Every divergence raises
``TrainingDiverged`` and bad images raise ``NonFiniteImages`` (``agkit.engine.guards``).

``fit(model, train_loader, val_loader=None, *, device, precision, callbacks, **settings)``:
a DistributedDataParallel model trains on the shard its loader gives this process; device
None picks a GPU when there is one; precision is ``training_step``'s; callbacks are
``agkit.engine``'s (default ``[Progress()]``, ``[]`` for a silent run). It returns the
history, one row per epoch: epoch, loss, ce, att, att_floor (means over the epoch's
batches), lr, seconds, and with a validation loader val_accuracy, val_auc, val_mass_in_mask
and val_attention_loss (measured before the BatchNorm recalibration). Its ``attrs`` hold
epochs_run, epochs, stopped_by_time_limit and config: the settings that determine the
result, which a ``Checkpoint`` compares when a run resumes. A guided run whose batches held
no annotation at all warns ``NothingToGuideWarning``.
"""

from __future__ import annotations

import math
import numbers
import random
import time
import warnings
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from agkit.engine import distributed, guards
from agkit.engine.batchnorm import recalibrate_batchnorm
from agkit.engine.callbacks import Callback, TrainingState
from agkit.engine.device import resolve_device
from agkit.engine.memory import keep_freed_memory
from agkit.engine.precision import Precision
from agkit.engine.progress import Progress
from agkit.guidance import GuidanceTerm, get_term
from agkit.method.predict import evaluate

Batch = Sequence[Any]


class NothingToGuideWarning(UserWarning):
    """Guided training (lam > 0) saw no mask or forbidden region in any epoch, so the
    guidance term did nothing and the run trained the baseline. Terms whose
    ``needs_annotation`` is False (GAIN's attention mining) are exempt."""


def check_lam(lam: float) -> None:
    """Raise a ValueError unless lam is a finite number >= 0 (0: the baseline)."""
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not 0 <= lam < math.inf:
        raise ValueError(
            f"lam must be a finite number >= 0 (0 trains the baseline, lam > 0 weighs the "
            f"guidance term), got {lam!r}; a negative weight would push attention out of the "
            "masks and NaN or inf would silently train the baseline."
        )


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so that a CPU run repeats bit for bit."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class TrainSettings:
    """What ``fit`` trains with. Every field but ``epochs`` is part of the run's config, which
    a resumed run must match (``epochs`` may grow: a resumed run can train longer).

    lam: weight of the guidance term; 0 trains the baseline.
    epochs: passes over the training loader.
    lr, weight_decay: the optimiser's learning rate and weight decay.
    optimizer: "adam" (AdamW, the course default) or "sgd" (with ``momentum``; the authors').
    lr_step, lr_gamma: multiply the learning rate by lr_gamma every lr_step epochs (None:
        constant; ``decay_step`` turns "after 75 % of the epochs" into a step).
    guidance: a term of ``agkit.guidance`` or its name ("cam": the paper's loss).
    seed: seeds torch, NumPy, Python and the loader's shuffling each epoch, so CPU runs
        repeat exactly.
    recalibrate_bn: re-measure BatchNorm statistics with the final weights.
    """

    lam: float = 0.0
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adam"
    momentum: float = 0.9
    lr_step: int | None = None
    lr_gamma: float = 0.1
    guidance: str | Callable[..., Any] = "cam"
    seed: int = 0
    recalibrate_bn: bool = True

    def __post_init__(self) -> None:
        check_lam(self.lam)
        if (
            isinstance(self.epochs, bool)
            or not isinstance(self.epochs, numbers.Integral)
            or self.epochs < 1
        ):
            raise ValueError(
                f"epochs must be a whole number >= 1, got {self.epochs!r}; a run of no epochs "
                "would store an untrained network as a result."
            )
        for name in ("lr", "weight_decay", "momentum", "lr_gamma"):
            value = getattr(self, name)
            positive = name == "lr_gamma"  # a factor of 0 would stop learning at its first step
            number = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value < 0 or (positive and value == 0):
                bound = "above 0" if positive else ">= 0"
                raise ValueError(f"{name} must be a finite number {bound}, got {value!r}.")
        if self.momentum > 1:  # each step would add more than all of the last one: divergence
            raise ValueError(f"momentum must be a number from 0 to 1, got {self.momentum!r}.")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose 'adam' or 'sgd'.")

    @classmethod
    def of(cls, settings: dict[str, Any]) -> TrainSettings:
        """``TrainSettings(**settings)``, with an error that names the fields it knows."""
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(
                f"fit got unknown setting(s) {', '.join(unknown)}; the settings are "
                f"{', '.join(f.name for f in fields(cls))} (and device, precision, callbacks)."
            )
        return cls(**settings)


def make_optimizer(model: nn.Module, s: TrainSettings) -> tuple[torch.optim.Optimizer, Any]:
    """The optimiser of ``s`` over all the model's parameters ("adam": AdamW, "sgd": with
    momentum) and its learning-rate schedule (None for a constant rate)."""
    parameters, decay = model.parameters(), s.weight_decay
    if s.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.AdamW(parameters, lr=s.lr, weight_decay=decay)
    else:
        opt = torch.optim.SGD(parameters, lr=s.lr, momentum=s.momentum, weight_decay=decay)
    step = torch.optim.lr_scheduler.StepLR(opt, s.lr_step, s.lr_gamma) if s.lr_step else None
    return opt, step


def decay_step(epochs: int, decay_at: float | None) -> int | None:
    """``fit``'s ``lr_step`` for a decay after ``decay_at`` (a share, e.g. 0.75) of
    ``epochs``: the learning rate is divided by 10 after that many epochs (and again after
    each further as many, so once for a share above 0.5); None (a constant rate) when
    decay_at is None or 0."""
    return max(1, round(decay_at * epochs)) if decay_at else None


def term_name(term: Callable[..., Any]) -> str:
    """A stable description of a guidance term with its settings (checked on resume)."""
    if isinstance(term, GuidanceTerm):
        return repr(term)
    name = getattr(term, "name", None)
    if isinstance(name, str):
        return name
    kind = term if hasattr(term, "__qualname__") else type(term)
    return f"{kind.__module__}.{kind.__qualname__}"


def training_step(
    model: nn.Module,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    *,
    lam: float,
    guidance: str | Callable[..., Any] = "cam",
    device: torch.device | str | None = None,
    precision: Precision | None = None,
) -> dict[str, float]:
    """One optimisation step of ``CE + lam * term`` on one batch.

    Args:
        model: a CAMNet (or any model returning CAMOutput(logits B x N, cams B x N x h x w)).
        batch: (images, labels, masks, has_mask[, forbidden]), see the module docstring.
        lam: weight of the guidance term; 0 trains the baseline (the term is not computed).
        guidance: a term of ``agkit.guidance`` or its name ("cam": the paper's loss).
        precision: mixed precision and memory format (``agkit.engine.precision``); None:
            float32.

    Returns:
        Floats {loss, ce, att, att_floor}: att is the term's value (NaN at lam = 0),
        att_floor the smallest value it could take on these masks (NaN when the term
        does not know it).

    Raises:
        TrainingDiverged when the loss is NaN/inf or far past its value at chance;
        NonFiniteImages when an image holds NaN or inf.
    """
    check_lam(lam)
    term = get_term(guidance)
    precision = precision or Precision()
    device = device or next(model.parameters()).device
    images, labels, masks, has_mask, *rest = (
        t.to(device) if isinstance(t, torch.Tensor) else t for t in batch
    )
    forbidden = rest[0] if rest else None
    net = distributed.unwrap(model)  # the CAMNet inside a DDP or compile wrapper
    guards.check_batch(images, labels, getattr(net, "num_classes", None))
    images = precision.images(images)
    if lam > 0 and getattr(term, "needs_input_grad", False):
        # a new leaf: the caller's tensor must not start to require (and collect) gradients
        images = images.detach().requires_grad_(True)

    with precision.autocast():  # the forward pass only: the losses stay in float32
        out = model(images)
    ce = F.cross_entropy(out.logits.float(), labels)
    guards.check_outputs(ce, out.cams)
    nan = torch.full((), math.nan, device=ce.device)
    att = term(net, images, labels, masks, has_mask, out, forbidden) if lam > 0 else nan
    loss = ce + lam * att if lam > 0 else ce
    floor = getattr(term, "floor", None)
    bound = getattr(term, "bound", None)
    guards.check_loss(
        loss,
        ce,
        att,
        num_classes=out.logits.shape[1],
        att_bound=bound(masks, out) if lam > 0 and bound is not None else math.inf,
    )
    optimizer.zero_grad(set_to_none=True)
    precision.step(loss, optimizer)
    return {
        "loss": loss.item(),
        "ce": ce.item(),
        "att": att.item(),
        "att_floor": floor(masks, out) if floor is not None else math.nan,
    }


def _annotated(batch: Batch) -> bool:
    """Whether any image of a batch has a non-empty mask or forbidden region."""
    return any(isinstance(t, torch.Tensor) and bool(t.any()) for t in batch[2:5:2])


def reseed_loader(loader: Any, seed: int, epoch: int | None = None) -> None:
    """Seed the loader's shuffling with ``seed`` (and tell a DistributedSampler ``epoch``), so
    an epoch's batches depend on (seed, epoch) only: a resumed run sees the same batches."""
    sampler = getattr(loader, "sampler", None)
    for generator in (getattr(loader, "generator", None), getattr(sampler, "generator", None)):
        if isinstance(generator, torch.Generator):
            generator.manual_seed(seed)
    set_epoch = getattr(sampler, "set_epoch", None)
    if epoch is not None and callable(set_epoch):  # torch's DistributedSampler uses it
        set_epoch(epoch)


def train_epoch(
    model: nn.Module, loader: Iterable[Batch], step: Callable[[Batch], dict[str, float]]
) -> tuple[dict[str, float], bool]:
    """``step`` on every batch of ``loader``: the mean losses over every process, and
    whether any batch held an annotation. Raises a ValueError for a loader without batches."""
    model.train()
    sums = {"loss": 0.0, "ce": 0.0, "att": 0.0, "att_floor": 0.0}
    steps, annotated = 0, False
    for batch in loader:
        try:
            losses = step(batch)
        except guards.NonFiniteImages as error:
            raise guards.NonFiniteImages(f"batch {steps + 1}: {error}", error.indices) from None
        sums = {key: total + losses[key] for key, total in sums.items()}
        steps, annotated = steps + 1, annotated or _annotated(batch)
    if steps == 0:
        raise ValueError(
            f"the training loader yields no batches (dataset of "
            f"{len(getattr(loader, 'dataset', ()))} images, batch_size "
            f"{getattr(loader, 'batch_size', None)}); check that the dataset is not empty "
            "and, with drop_last=True, that it holds one full batch. Nothing was trained."
        )
    sums, all_steps = distributed.reduce_sums(sums, steps)  # over every process
    return {key: total / all_steps for key, total in sums.items()}, annotated


def fit(
    model: nn.Module,
    train_loader: Iterable[Batch],
    val_loader: Iterable[Batch] | None = None,
    *,
    device: torch.device | str | None = None,
    precision: Precision | None = None,
    callbacks: Sequence[Callback] | None = None,
    **settings: Any,
) -> pd.DataFrame:
    """Train a CAMNet (or a DDP-wrapped one) with ``TrainSettings(**settings)``; lam = 0 is the
    baseline. Returns the history; the module docstring says the rest."""
    s = TrainSettings.of(settings)
    set_seed(s.seed)
    device = resolve_device(device)
    if device.type == "cpu":
        keep_freed_memory()  # a quarter faster on a CPU, the same numbers (engine.memory)
    precision = precision or Precision(device=device)
    term, net = get_term(s.guidance), distributed.unwrap(model.to(device))
    opt, scheduler = make_optimizer(model, s)
    config = run_config(net, train_loader, precision, s, term)
    state = TrainingState(net, opt, scheduler, config, s.epochs, _length(train_loader), precision)
    hooks = Hooks([Progress()] if callbacks is None else callbacks, state)
    hooks("on_fit_start")
    annotated = s.lam == 0 or not getattr(term, "needs_annotation", True)

    def step(batch: Batch) -> dict[str, float]:
        losses = training_step(model, batch, opt, lam=s.lam, guidance=term, device=device,
                               precision=precision)  # fmt: skip
        hooks("on_batch_end", losses)
        return losses

    while not state.finished and state.epoch < s.epochs and not hooks("on_epoch_start"):
        started, epoch = time.perf_counter(), state.epoch + 1
        reseed_loader(train_loader, s.seed * 1000 + epoch, epoch)
        losses, seen = train_epoch(model, train_loader, step)
        row = {"epoch": epoch, **losses, "lr": opt.param_groups[0]["lr"]}
        row["seconds"], annotated = time.perf_counter() - started, annotated or seen
        if scheduler is not None:
            scheduler.step()
        if val_loader is not None:
            scores = evaluate(net, val_loader, device)
            row.update({f"val_{k}": scores[k] for k in VALIDATION_SCORES})
        state.epoch = epoch
        state.history.append(row)
        hooks("on_epoch_end", row)
    if state.history and not state.finished and not annotated:
        warnings.warn(NothingToGuideWarning(nothing_to_guide(s.lam)), stacklevel=2)
    if not state.finished and s.recalibrate_bn and state.history:
        state.recalibrated = recalibrate(net, train_loader, s.seed * 1000, device)
    hooks("on_fit_end")
    return state.frame()


VALIDATION_SCORES = ("accuracy", "auc", "mass_in_mask", "attention_loss")


class Hooks:
    """Calls one hook of every callback with the run's state; True when one asked to stop."""

    def __init__(self, callbacks: Sequence[Callback], state: TrainingState):
        self.callbacks, self.state = list(callbacks), state

    def __call__(self, hook: str, *args: Any) -> bool:
        for callback in self.callbacks:
            getattr(callback, hook)(self.state, *args)
        return self.state.stop is not None


def run_config(
    net: nn.Module, loader: Any, precision: Precision | None, s: TrainSettings, term: Any
) -> dict[str, Any]:
    """What determines a run's result: the model, the settings ``s`` but its epochs (the
    term described by ``term_name``), the loader's batch size and dataset size, and a 16-bit
    precision (its steps give other weights)."""
    describe = getattr(net, "describe", None)
    dataset = getattr(loader, "dataset", None)
    config = {
        "model": describe() if callable(describe) else type(net).__name__,
        **{f.name: getattr(s, f.name) for f in fields(s) if f.name != "epochs"},
        "guidance": term_name(term),
        "batch_size": getattr(loader, "batch_size", None),
        "train_size": len(dataset) if isinstance(dataset, Sized) else None,
    }
    if precision is not None and precision.amp != "fp32":
        config["amp"] = precision.amp
    return config


def recalibrate(net: nn.Module, loader: Any, seed: int, device: torch.device) -> bool:
    """BatchNorm statistics re-measured on the batches of ``loader`` shuffled with ``seed``
    (the same batches every time), the same in every process; returns True."""
    reseed_loader(loader, seed)
    recalibrate_batchnorm(net, loader, device)
    distributed.broadcast_buffers(net)  # every process keeps the model process 0 saves
    return True


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def nothing_to_guide(lam: float) -> str:
    return (
        f"lam={lam:g} but no image in the training loader had a mask (nor a forbidden "
        "region) in any of these epochs, so the guidance term did nothing and this run "
        "trained the baseline. Check that the masks were loaded (has_mask) or that the "
        "annotated images are in the training split."
    )
