"""Training and evaluation loops for baseline (lam = 0) and guided (lam > 0) training.

Every loader yields batches ``(image, label, mask, has_mask)`` or, for guidance terms that
also use a "don't look here" region, ``(image, label, mask, has_mask, forbidden)``:
image B x C x H x W float in [0, 1], label B int64, mask B x 1 x H x W float 0/1 (all
zeros for an image without annotation), has_mask B bool, forbidden B x 1 x H x W 0/1.

One step minimises ``CE(logits, label) + lam * term``. The term is the paper's
``attention_guidance_loss(cams, mask)`` unless ``guidance`` names another one: a callable
``term(model, images, labels, masks, has_mask, out, forbidden) -> scalar tensor`` or the
name of one in ``agkit.guidance``.

What ``fit`` promises:

* the model it returns is the model in the checkpoint it leaves;
* a result never depends on the speed of the machine: ``time_limit`` only ever stops
  between whole epochs (a cut epoch is rolled back) and the stop is recorded in the
  history (``history.attrs["stopped_by_time_limit"]``) and warned about;
* a resumed run equals an uninterrupted one, and resuming with another configuration is
  refused with a message that names the difference;
* every divergence raises ``TrainingDiverged``; bad images raise ``NonFiniteImages``.
"""

from __future__ import annotations

import copy
import importlib
import math
import numbers
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from agkit.engine import distributed
from agkit.method import metrics
from agkit.method.loss import (
    attention_guidance_loss,
    attention_loss_floor,
    chance_attention_loss,
    old_names,
)

#: A guidance term: (model, images, labels, masks, has_mask, out, forbidden) -> scalar.
GuidanceTerm = Callable[..., torch.Tensor]

#: A loss this many times its value at chance is divergence, even while it stays finite:
#: cross-entropy above 100 log N (N classes; log N is the loss of a uniform guess) or the
#: paper's attention loss above 100 log P (P positions; log P is a flat CAM's loss).
DIVERGENCE_FACTOR = 100.0

CHECKPOINT_FORMAT = 2


class TrainingDiverged(FloatingPointError):
    """Raised when the loss stops being a finite number or grows past any sane value."""


class NonFiniteImages(ValueError):
    """Raised when input images hold NaN or inf: a data problem, not a training one.

    ``indices`` lists the positions of the bad images in their batch.
    """

    def __init__(self, message: str, indices: list[int]):
        super().__init__(message)
        self.indices = indices


class TimeLimitWarning(UserWarning):
    """Warned when ``fit`` stops at its time limit before the requested epochs.

    Turn it into an error with ``warnings.simplefilter("error", TimeLimitWarning)``.
    """


class NothingToGuideWarning(UserWarning):
    """Warned when ``fit`` trains with lam > 0 but no batch held a mask (nor a forbidden
    region): the guidance term had nothing to act on, so the run trained the baseline.
    Terms whose ``needs_annotation`` is False (GAIN's attention mining) are exempt."""


def check_lam(lam: float) -> None:
    """Raise a ValueError unless lam is a finite number >= 0 (0: the baseline)."""
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not 0 <= lam < math.inf:
        raise ValueError(
            f"lam must be a finite number >= 0 (0 trains the baseline, lam > 0 weighs the "
            f"guidance term), got {lam!r}; a negative weight would push attention out of the "
            "masks and NaN or inf would silently train the baseline."
        )


def _has_annotation(batch: Sequence[Any]) -> bool:
    """Whether any image of a batch has a non-empty mask or forbidden region."""
    regions = [t for t in batch[2:5:2] if isinstance(t, torch.Tensor)]
    return any(bool(region.any()) for region in regions)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so that a CPU run repeats bit for bit."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    """cuda when a GPU is present, else mps on Apple silicon, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_labels(labels: torch.Tensor, num_classes: int) -> None:
    if (labels < 0).any() or (labels >= num_classes).any():
        low, high = int(labels.min().item()), int(labels.max().item())
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got {low}..{high}; build the model "
            f"with num_classes={high + 1} or fix the labels."
        )


def _check_images(images: torch.Tensor) -> None:
    finite = torch.isfinite(images).flatten(1).all(dim=1)
    if bool(finite.all()):
        return
    bad = (~finite).nonzero().flatten().tolist()
    counts = ", ".join(
        f"image {i} ({int(torch.isnan(images[i]).sum())} NaN, "
        f"{int(torch.isinf(images[i]).sum())} inf values)"
        for i in bad[:5]
    )
    raise NonFiniteImages(
        f"a data problem, not a training one: {counts} of this batch of {len(images)}; "
        "check how these images are read and normalised (a corrupt file, a division by "
        "a zero range) before training.",
        bad,
    )


def resolve_guidance(guidance: str | GuidanceTerm | None) -> GuidanceTerm | None:
    """The guidance term: None (the paper's CAM loss), a callable, or a name in agkit.guidance."""
    if guidance is None or callable(guidance):
        return guidance
    if isinstance(guidance, str):
        get_term = importlib.import_module("agkit.guidance").get_term
        term: GuidanceTerm = get_term(guidance)
        return term
    raise TypeError(
        f"guidance must be None, a name or a callable term, got {type(guidance).__name__}."
    )


def guidance_name(guidance: str | GuidanceTerm | None) -> str | None:
    """A stable name for a guidance term (stored in checkpoints to check on resume)."""
    if guidance is None or isinstance(guidance, str):
        return guidance
    name = getattr(guidance, "name", None)
    if isinstance(name, str):
        return name
    kind = guidance if hasattr(guidance, "__qualname__") else type(guidance)
    described = f"{kind.__module__}.{kind.__qualname__}"
    if kind is type(guidance) and type(guidance).__repr__ is not object.__repr__:
        described = repr(guidance)  # an object that shows its settings
    return described


def _diverged(ce: torch.Tensor, att: torch.Tensor, what: str) -> TrainingDiverged:
    return TrainingDiverged(
        f"{what} (cross-entropy {ce.item():.4g}, attention {att.item():.4g}); training has "
        "diverged: lower the learning rate or lambda and train again."
    )


def training_step(
    model: nn.Module,
    batch: Sequence[Any],
    optimizer: torch.optim.Optimizer,
    *,
    lam: float,
    resolution: str = "feature",
    classes: str = "all",
    guidance: str | GuidanceTerm | None = None,
    device: torch.device | str | None = None,
    channels: str | None = None,
    precision: Any = None,
) -> dict[str, float]:
    """One optimisation step on one batch.

    Args:
        model: a CAMNet (or any model returning CAMOutput(logits, cams)).
        batch: (images, labels, masks, has_mask[, forbidden]), see the module docstring.
        lam: weight of the guidance term; 0 trains the baseline.
        resolution, classes: options of attention_guidance_loss (guidance=None only).
        guidance: None (the paper's CAM loss), a callable term or its name.
        channels: the old name of ``classes`` (deprecated).
        precision: an ``agkit.engine.precision.Precision`` (mixed precision, channels-last, fp16
            loss scaling); None: float32.

    Returns:
        Floats {loss, ce, att, att_floor}. With lam = 0 and masks in the batch, att is
        the paper's attention loss measured without gradients (a custom term is not
        evaluated: NaN); att_floor is the smallest value att could take on these masks
        (NaN for custom terms).

    Raises:
        TrainingDiverged when the loss is NaN/inf or far past its value at chance;
        NonFiniteImages when an image holds NaN or inf.
    """
    classes, _ = old_names("training_step", classes, channels)
    check_lam(lam)
    device = device or next(model.parameters()).device
    images, labels, masks, has_mask = (
        t.to(device) if isinstance(t, torch.Tensor) else t for t in batch[:4]
    )
    forbidden = batch[4] if len(batch) > 4 else None
    if isinstance(forbidden, torch.Tensor):
        forbidden = forbidden.to(device)
    net = distributed.unwrap(model)  # the CAMNet inside a DDP or compile wrapper
    num_classes = int(getattr(net, "num_classes", 0)) or None
    if num_classes is not None:
        _check_labels(labels, num_classes)
    _check_images(images)
    term = resolve_guidance(guidance)
    if precision is not None:
        images = precision.images(images)
    if term is not None and lam > 0 and getattr(term, "needs_input_grad", False):
        # a new leaf: the caller's tensor must not start to require (and collect) gradients
        images = images.detach().requires_grad_(True)

    if precision is not None:
        with precision.autocast():  # the forward pass only: the losses stay in float32
            out = model(images)
    else:
        out = model(images)
    ce = F.cross_entropy(out.logits.float(), labels)
    nan = torch.full((), float("nan"), device=ce.device)
    if not torch.isfinite(ce) or not torch.isfinite(out.cams).all():
        raise _diverged(ce, nan, "the logits or CAMs became NaN or inf")

    annotated = masks is not None and bool(masks.any())
    floor, bound = float("nan"), math.inf
    if term is not None:
        att = term(net, images, labels, masks, has_mask, out, forbidden) if lam > 0 else nan
    else:
        if lam > 0:
            if masks is None:
                raise ValueError(
                    "guided training (lam > 0) needs masks in every batch "
                    "(all zeros for images without annotation)."
                )
            att = attention_guidance_loss(out.cams, masks, resolution, classes, labels)
        elif annotated:
            with torch.no_grad():  # monitored only: the baseline is not trained on it
                att = attention_guidance_loss(out.cams.detach(), masks, resolution, classes, labels)
        else:
            att = torch.zeros((), device=ce.device)
        if annotated:
            grid = out.cams.shape[-2:] if resolution == "feature" else masks.shape[-2:]
            floor = attention_loss_floor(masks, (int(grid[0]), int(grid[1])))
            bound = DIVERGENCE_FACTOR * chance_attention_loss(grid)
        else:
            floor = 0.0

    loss = ce + lam * att if lam > 0 else ce
    if not torch.isfinite(loss):
        raise _diverged(ce, att, f"the loss became {loss.item()}")
    ce_bound = DIVERGENCE_FACTOR * math.log(out.logits.shape[1])
    if ce.item() > ce_bound or (lam > 0 and att.item() > bound):
        raise _diverged(
            ce,
            att,
            f"the loss grew to {loss.item():.4g}, over "
            f"{DIVERGENCE_FACTOR:g} times its value at chance",
        )
    optimizer.zero_grad(set_to_none=True)
    if precision is not None:
        precision.step(loss, optimizer)
    else:
        loss.backward()
        optimizer.step()
    return {"loss": loss.item(), "ce": ce.item(), "att": att.item(), "att_floor": floor}


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable[Sequence[Any]],
    device: torch.device | str | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Run the model over a loader.

    Returns a dict of CPU tensors: probs (n x N), labels (n), cams (n x N x h x w) and the
    per-image attention scores of the predicted class: mass_in_mask, pointing_game, iou
    (n each; NaN where the image has no mask) and has_mask (n bools).
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    keys = ("probs", "labels", "cams", "mass_in_mask", "pointing_game", "iou", "has_mask")
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for batch in tqdm(loader, desc="predict", leave=False, disable=not progress):
        images, labels, masks, has_mask = batch[:4]
        images, masks = images.to(device), masks.to(device)
        out = model(images)
        predicted = out.logits.argmax(dim=1)
        annotated = has_mask.to(device).bool()

        def scored(values: torch.Tensor, annotated: torch.Tensor = annotated) -> torch.Tensor:
            """Per-image scores B, NaN where the image has no mask."""
            return torch.where(annotated, values.float(), float("nan")).cpu()

        parts["probs"].append(out.logits.softmax(dim=1).cpu())
        parts["labels"].append(labels.cpu())
        parts["cams"].append(out.cams.cpu())
        parts["has_mask"].append(annotated.cpu())
        parts["mass_in_mask"].append(scored(metrics.mass_in_mask(out.cams, masks, predicted)))
        parts["pointing_game"].append(scored(metrics.pointing_game(out.cams, masks, predicted)))
        parts["iou"].append(scored(metrics.cam_iou(out.cams, masks, predicted)))
    model.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def evaluate(
    model: nn.Module, loader: Iterable[Sequence[Any]], device: torch.device | str | None = None
) -> dict[str, Any]:
    """Classification and attention scores of a model on a loader.

    Returns a dict with accuracy, balanced_accuracy, auc, sensitivity, specificity,
    confusion, and the mean mass_in_mask, pointing_game and iou over the annotated images
    (NaN when none is annotated), and n (the number of images).
    """
    out = predict(model, loader, device)
    scores = metrics.classification_metrics(out["labels"].numpy(), out["probs"].numpy())
    for key in ("mass_in_mask", "pointing_game", "iou"):
        values = out[key][out["has_mask"]]
        scores[key] = float(values.mean()) if len(values) else float("nan")
    scores["n"] = len(out["labels"])
    return scores


def _norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _norm_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the running statistics of every BatchNorm layer, by state_dict key."""
    names = {id(m): name for name, m in model.named_modules()}
    return {
        f"{names[id(m)]}.{key}": value.detach().clone()
        for m in _norms(model)
        for key, value in m.named_buffers(recurse=False)
    }


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    epoch: int = 0,
    history: pd.DataFrame | None = None,
    **extra: Any,
) -> Path:
    """Write model (+ optimiser, scheduler, epoch, history, RNG state) atomically.

    ``extra`` items (fit stores ``config``, ``train_buffers``, ``recalibrated`` and
    ``stopped_by_time_limit``) are saved alongside.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer else None,
        "scheduler": scheduler.state_dict() if scheduler else None,
        "epoch": epoch,
        "history": history.to_dict("records") if history is not None else [],
        "torch_rng": torch.get_rng_state(),
        **extra,
    }
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)  # a crash mid-save leaves the previous checkpoint intact
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> dict[str, Any]:
    """Restore what save_checkpoint wrote; returns the raw state (epoch, history, ...).

    The model receives the weights ``fit`` returned (after BatchNorm recalibration).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or pass the right path.")
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler"):
        scheduler.load_state_dict(state["scheduler"])
    return state


def make_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """ "adam" (AdamW) or "sgd" (with momentum) over all the model's parameters."""
    if name == "adam":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    raise ValueError(f"unknown optimizer {name!r}; choose 'adam' or 'sgd'.")


def decay_step(epochs: int, decay_at: float | None) -> int | None:
    """``fit``'s ``lr_step`` for a decay after ``decay_at`` (a share, e.g. 0.75) of
    ``epochs``: the learning rate is divided by 10 after that many epochs (and again after
    each further as many, so once for a share above 0.5); None (a constant rate) when
    decay_at is None or 0."""
    return max(1, round(decay_at * epochs)) if decay_at else None


def _loader_facts(loader: Any) -> dict[str, int | None]:
    dataset = getattr(loader, "dataset", None)
    try:
        size = len(dataset) if dataset is not None else None
    except TypeError:
        size = None
    return {"batch_size": getattr(loader, "batch_size", None), "train_size": size}


def _loader_length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _empty_loader_error(loader: Any) -> ValueError:
    facts = _loader_facts(loader)
    return ValueError(
        f"the training loader yields no batches (dataset of {facts['train_size']} images, "
        f"batch_size {facts['batch_size']}); check that the dataset is not empty and, "
        "with drop_last=True, that it holds at least one full batch. Nothing was changed."
    )


def check_resume_config(
    path: str | os.PathLike[str], stored: dict[str, Any] | None, asked: dict[str, Any]
) -> None:
    """Raise a ValueError naming every setting in which a checkpoint and a call differ."""
    if stored is None:
        raise ValueError(
            f"the checkpoint {path} stores no training configuration (it was "
            "written by an older agkit); delete it to train again."
        )
    differences = [
        f"{key}={stored.get(key)!r}, this call asks {key}={asked.get(key)!r}"
        for key in sorted(set(stored) | set(asked))
        if stored.get(key) != asked.get(key)
    ]
    if differences:
        raise ValueError(
            f"checkpoint {path} was trained with "
            + "; with ".join(differences)
            + f". Delete {path} to start again, or pass the same values to resume."
        )


def fit(
    model: nn.Module,
    train_loader: Iterable[Sequence[Any]],
    val_loader: Iterable[Sequence[Any]] | None = None,
    *,
    lam: float = 0.0,
    epochs: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    optimizer: str = "adam",
    momentum: float = 0.9,
    lr_step: int | None = None,
    lr_gamma: float = 0.1,
    resolution: str = "feature",
    classes: str = "all",
    guidance: str | GuidanceTerm | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    time_limit: float | None = None,
    recalibrate_bn: bool = True,
    channels: str | None = None,
    precision: Any = None,
    on_epoch: Callable[[int, dict[str, Any], nn.Module], None] | None = None,
) -> pd.DataFrame:
    """Train ``model`` for ``epochs`` epochs; lam = 0 is the baseline, lam > 0 guided.

    Args:
        model: a CAMNet (pooling "avg" for the baseline, "softmax" for guided training).
        train_loader, val_loader: loaders of (image, label, mask, has_mask[, forbidden]).
        lam: weight of the guidance term. resolution/classes: see attention_guidance_loss.
        guidance: None (the paper's CAM loss), a callable term or its name in
            agkit.guidance (see training_step).
        optimizer: "adam" (AdamW, the course default) or "sgd" (with momentum; the authors').
        lr_step: multiply the learning rate by lr_gamma every lr_step epochs (None: constant).
        seed: seeds torch/NumPy/Python and the loader's shuffling, so CPU runs repeat exactly.
        device: defaults to cuda when present.
        progress: show a tqdm bar over epochs (and, for epochs of 50 batches or more, one
            over the batches of each epoch).
        checkpoint: path; the model is saved there after every epoch, and at the end the
            returned model (after recalibration) is saved there too.
        resume: continue from ``checkpoint`` if it exists. The checkpoint's configuration
            (model, lam, lr, optimizer, schedule, guidance, seed, ...) must equal this
            call's, except ``epochs`` which may grow; a finished checkpoint is returned as
            it is.
        time_limit: a safety net in seconds. When it passes, training stops at the end of
            the last *complete* epoch (an epoch it cuts is rolled back), warns
            ``TimeLimitWarning`` and records the stop in the history's attrs. Runs whose
            results are kept should be sized by epochs, not time.
        recalibrate_bn: re-measure BatchNorm statistics at the end (see
            recalibrate_batchnorm); the history's val columns are from before it.
        channels: the old name of ``classes`` (deprecated).
        precision: an ``agkit.engine.precision.Precision`` for every step (None: float32).
        on_epoch: called as ``on_epoch(epoch, row, model)`` after each epoch with its
            history row and the plain model (a logger, e.g. agkit.engine.tensorboard).

    Several processes (torchrun, ``agkit.engine.distributed``): pass the model wrapped in
    DistributedDataParallel and a loader of this process's shard. The history's means are
    over every process; only process 0 writes the checkpoint. Leave ``time_limit`` None
    there: each process would measure its own clock and they could stop at different epochs.

    Returns:
        pandas DataFrame, one row per complete epoch: epoch, loss, ce, att, att_floor
        (training means; att_floor is the smallest att possible on those masks), lr,
        seconds, and with a val_loader val_accuracy, val_auc, val_mass_in_mask.
        ``history.attrs`` holds ``epochs_run`` (= len(history)), ``epochs`` (requested),
        ``stopped_by_time_limit`` (bool) and ``config`` (as stored in the checkpoint).

    Raises:
        TrainingDiverged when the loss becomes NaN/inf or grows past DIVERGENCE_FACTOR
        times its chance value; NonFiniteImages for NaN/inf images (naming them);
        ValueError for an empty loader, a lam that is negative, NaN or inf, or a checkpoint
        made with another configuration; TimeoutError when time_limit passes before the
        first epoch is complete.

    Warns:
        NothingToGuideWarning (once) when lam > 0 but no training batch held a mask or a
        forbidden region (a batch without any is normal and silent).
    """
    classes, _ = old_names("fit", classes, channels)
    check_lam(lam)
    set_seed(seed)
    device = torch.device(device) if device is not None else default_device()
    if _loader_length(train_loader) == 0:
        raise _empty_loader_error(train_loader)
    model.to(device)
    # net: the plain model (checkpoints, evaluation); model may be its DDP/compile wrapper
    net = distributed.unwrap(model)
    writes = distributed.is_main()  # only process 0 writes the checkpoint
    opt = make_optimizer(model, optimizer, lr, weight_decay, momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, lr_step, lr_gamma) if lr_step else None
    describe = getattr(net, "describe", None)
    config: dict[str, Any] = {
        "model": describe() if callable(describe) else type(model).__name__,
        "lam": lam,
        "lr": lr,
        "weight_decay": weight_decay,
        "optimizer": optimizer,
        "momentum": momentum,
        "lr_step": lr_step,
        "lr_gamma": lr_gamma,
        "resolution": resolution,
        "classes": classes,
        "guidance": guidance_name(guidance),
        "seed": seed,
        "recalibrate_bn": recalibrate_bn,
        **_loader_facts(train_loader),
    }
    if precision is not None and precision.amp != "fp32":
        config["amp"] = precision.amp  # 16-bit steps give other weights: part of the config

    rows: list[dict[str, Any]] = []
    start_epoch = 1
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        check_resume_config(checkpoint, state.get("config"), config)
        if state["epoch"] > epochs:
            raise ValueError(
                f"checkpoint {checkpoint} holds {state['epoch']} epochs, this call "
                f"asks for {epochs}; pass epochs>={state['epoch']} or delete it."
            )
        load_checkpoint(checkpoint, net, opt, scheduler)
        if precision is not None:
            precision.load_state_dict(state.get("scaler"))
        rows, start_epoch = list(state["history"]), state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        if state["epoch"] == epochs and (state.get("recalibrated") or not recalibrate_bn):
            return _history(rows, epochs, False, config)  # finished: the stored model
        if state.get("train_buffers"):  # continue from the statistics training left
            net.load_state_dict(state["train_buffers"], strict=False)

    term = resolve_guidance(guidance)
    # Reseeding the loader's generators each epoch makes the order depend on (seed, epoch)
    # only, so a resumed run sees the same batches as an uninterrupted one.
    generators = [
        g
        for g in (
            getattr(train_loader, "generator", None),
            getattr(getattr(train_loader, "sampler", None), "generator", None),
        )
        if isinstance(g, torch.Generator)
    ]
    started = time.perf_counter()
    stopped_by_time_limit = False
    # a term that needs no annotation (GAIN's attention mining) guides without masks
    annotated = lam == 0 or not getattr(term, "needs_annotation", True)
    epoch_bar = tqdm(
        range(start_epoch, epochs + 1),
        desc=f"lam={lam:g}",
        disable=not progress,
        initial=start_epoch - 1,
        total=epochs,
    )
    for epoch in epoch_bar:
        if time_limit is not None and time.perf_counter() - started > time_limit:
            stopped_by_time_limit = True
            break
        for generator in generators:
            generator.manual_seed(seed * 1000 + epoch)
        set_epoch = getattr(getattr(train_loader, "sampler", None), "set_epoch", None)
        if callable(set_epoch):  # torch's DistributedSampler draws its order from it
            set_epoch(epoch)
        # With a time limit, keep the state at the epoch's start to roll a cut epoch back.
        snapshot = None
        if time_limit is not None:
            snapshot = copy.deepcopy(
                (
                    model.state_dict(),
                    opt.state_dict(),
                    scheduler.state_dict() if scheduler else None,
                    torch.get_rng_state(),
                )
            )
        model.train()
        sums = {"loss": 0.0, "ce": 0.0, "att": 0.0, "att_floor": 0.0}
        steps, epoch_start = 0, time.perf_counter()
        # The bar is updated by hand: wrapping the loader would start its workers twice.
        # Only long epochs get a bar of their own; short ones would just add lines to a notebook.
        length = _loader_length(train_loader) or 0
        batch_bar = tqdm(
            total=length, desc=f"epoch {epoch}", leave=False, disable=not progress or length < 50
        )
        for batch in train_loader:
            if time_limit is not None and time.perf_counter() - started > time_limit:
                stopped_by_time_limit = True
                break
            try:
                losses = training_step(
                    model,
                    batch,
                    opt,
                    lam=lam,
                    resolution=resolution,
                    classes=classes,
                    guidance=term,
                    device=device,
                    precision=precision,
                )
            except NonFiniteImages as error:
                raise NonFiniteImages(
                    f"epoch {epoch}, batch {steps + 1}: {error}", error.indices
                ) from None
            annotated = annotated or _has_annotation(batch)
            batch_bar.update()
            for key in sums:
                sums[key] += losses[key]
            steps += 1
        batch_bar.close()
        if stopped_by_time_limit:
            assert snapshot is not None
            model.load_state_dict(snapshot[0])
            opt.load_state_dict(snapshot[1])
            if scheduler is not None and snapshot[2] is not None:
                scheduler.load_state_dict(snapshot[2])
            torch.set_rng_state(snapshot[3])
            break
        if steps == 0:
            raise _empty_loader_error(train_loader)
        sums, all_steps = distributed.reduce_sums(sums, steps)  # over every process
        row: dict[str, Any] = {
            "epoch": epoch,
            **{k: v / all_steps for k, v in sums.items()},
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - epoch_start,
        }
        if scheduler is not None:
            scheduler.step()
        if val_loader is not None:
            scores = evaluate(net, val_loader, device)
            row.update(
                val_accuracy=scores["accuracy"],
                val_auc=scores["auc"],
                val_mass_in_mask=scores["mass_in_mask"],
            )
        rows.append(row)
        shown = ("loss", "att", "val_accuracy")
        epoch_bar.set_postfix({k: round(v, 3) for k, v in row.items() if k in shown})
        if on_epoch is not None:
            on_epoch(epoch, row, net)
        if checkpoint is not None and writes:
            save_checkpoint(
                checkpoint,
                net,
                opt,
                scheduler,
                epoch,
                pd.DataFrame(rows),
                config=config,
                recalibrated=False,
                scaler=precision.state_dict() if precision is not None else None,
            )
    epoch_bar.close()

    if stopped_by_time_limit and not rows:
        raise TimeoutError(
            f"time_limit={time_limit:g} s passed before the first epoch was complete, so "
            "nothing was trained (the model is as it was). Size the run by epochs, or raise "
            "time_limit."
        )
    if stopped_by_time_limit:
        warnings.warn(
            f"time_limit={time_limit:g} s reached after {len(rows)} of {epochs} epochs; the "
            "model and checkpoint hold the last complete epoch. Size runs by epochs when "
            "their results are kept (history.attrs['stopped_by_time_limit'] is True).",
            TimeLimitWarning,
            stacklevel=2,
        )
    if not annotated:
        warnings.warn(
            f"lam={lam:g} but no image in the training loader had a mask (nor a forbidden "
            "region) in any of these epochs, so the guidance term did nothing and this run "
            "trained the baseline. Check that the masks were loaded (has_mask) or that the "
            "annotated images are in the training split.",
            NothingToGuideWarning,
            stacklevel=2,
        )
    train_buffers = _norm_buffers(net)
    rng_after_training = torch.get_rng_state()  # what a resumed run continues from
    if recalibrate_bn and rows:
        for generator in generators:
            generator.manual_seed(seed * 1000)  # the same recalibration batches every time
        recalibrate_batchnorm(net, train_loader, device)
        distributed.broadcast_buffers(net)  # every process keeps the model process 0 saves
    if checkpoint is not None and writes and rows:
        # The returned model, so that reloading the checkpoint gives exactly this model;
        # train_buffers keep the statistics training had, for resuming with more epochs.
        save_checkpoint(
            checkpoint,
            net,
            opt,
            scheduler,
            len(rows),
            pd.DataFrame(rows),
            config=config,
            recalibrated=recalibrate_bn,
            train_buffers=train_buffers,
            torch_rng=rng_after_training,
            stopped_by_time_limit=stopped_by_time_limit,
            scaler=precision.state_dict() if precision is not None else None,
        )
    return _history(rows, epochs, stopped_by_time_limit, config)


def _history(
    rows: list[dict[str, Any]], epochs: int, stopped_by_time_limit: bool, config: dict[str, Any]
) -> pd.DataFrame:
    history = pd.DataFrame(rows)
    history.attrs.update(
        epochs_run=len(rows),
        epochs=epochs,
        stopped_by_time_limit=stopped_by_time_limit,
        config=config,
    )
    return history


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    loader: Iterable[Sequence[Any]],
    device: torch.device | str | None = None,
    max_batches: int = 50,
) -> None:
    """Re-measure BatchNorm's running mean and variance with the final weights.

    During training the running averages trail the changing weights; after a short run
    (tens of steps, as on a laptop) a network that is right on nearly every training batch
    can score near chance in eval mode. One pass without gradients over (up to
    ``max_batches``) training batches fixes that. Nothing else in the model changes.

    Raises:
        ValueError when the loader yields no batch (the statistics are left untouched).
    """
    norms = _norms(model)
    if not norms:
        return
    device = device or next(model.parameters()).device
    was_training = model.training
    momenta = {m: m.momentum for m in norms}
    model.train()
    seen = 0
    try:
        for batch in loader:
            if seen >= max_batches:
                break
            if seen == 0:  # reset only once there is something to measure
                for m in norms:
                    m.reset_running_stats()
                    m.momentum = None  # None = a plain average over all batches seen
            model(batch[0].to(device))
            seen += 1
    finally:
        for m in norms:
            m.momentum = momenta[m]
        model.train(was_training)
    if seen == 0:
        raise ValueError(
            "recalibrate_batchnorm got a loader without batches; the BatchNorm "
            "statistics were left as they were. Pass the training loader."
        )
