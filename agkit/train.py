"""Training and evaluation loops for baseline (lam = 0) and guided (lam > 0) training.

Every loader yields batches ``(image, label, mask, has_mask)``:
image B x C x H x W float in [0, 1], label B int64, mask B x 1 x H x W float 0/1 (all
zeros for an image without annotation), has_mask B bool.

One step minimises ``CE(logits, label) + lam * attention_guidance_loss(cams, mask)``.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from agkit import metrics
from agkit.losses import attention_guidance_loss


class TrainingDiverged(FloatingPointError):
    """Raised when the loss stops being a finite number."""


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
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got {labels.min().item()}..{labels.max().item()}; "
            f"build the model with num_classes={int(labels.max().item()) + 1} or fix the labels."
        )


def training_step(model, batch, optimizer, *, lam: float, resolution: str = "feature",
                  channels: str = "all", device=None) -> dict:
    """One optimisation step on one batch. Returns the float losses {loss, ce, att}."""
    device = device or next(model.parameters()).device
    images, labels, masks, _ = (t.to(device) for t in batch)
    _check_labels(labels, model.num_classes)
    out = model(images)
    ce = F.cross_entropy(out.logits, labels)
    if lam > 0:
        att = attention_guidance_loss(out.cams, masks, resolution=resolution,
                                      channels=channels, targets=labels)
    else:
        att = torch.zeros((), device=device)  # not computed: the baseline pays nothing for it
    loss = ce + lam * att
    if not torch.isfinite(loss):
        raise TrainingDiverged(
            f"the loss became {loss.item()} (cross-entropy {ce.item():.4g}, attention "
            f"{att.item():.4g}); lower the learning rate or lambda and train again."
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "ce": ce.item(), "att": att.item()}


@torch.no_grad()
def predict(model, loader, device=None, progress: bool = False) -> dict:
    """Run the model over a loader.

    Returns a dict of CPU tensors: probs (n x N), labels (n), cams (n x N x h x w) and the
    per-image attention scores of the predicted class: mass_in_mask, pointing_game, iou
    (n each; NaN where the image has no mask) and has_mask (n bools).
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts = {k: [] for k in ("probs", "labels", "cams", "mass_in_mask", "pointing_game", "iou", "has_mask")}
    for images, labels, masks, has_mask in tqdm(loader, desc="predict", leave=False, disable=not progress):
        images, masks = images.to(device), masks.to(device)
        out = model(images)
        predicted = out.logits.argmax(dim=1)
        nan = torch.full(predicted.shape, float("nan"), device=device)
        annotated = has_mask.to(device).bool()
        parts["probs"].append(out.logits.softmax(dim=1).cpu())
        parts["labels"].append(labels.cpu())
        parts["cams"].append(out.cams.cpu())
        parts["has_mask"].append(annotated.cpu())
        parts["mass_in_mask"].append(torch.where(annotated, metrics.mass_in_mask(out.cams, masks, predicted), nan).cpu())
        parts["pointing_game"].append(torch.where(annotated, metrics.pointing_game(out.cams, masks, predicted).float(), nan).cpu())
        parts["iou"].append(torch.where(annotated, metrics.cam_iou(out.cams, masks, predicted), nan).cpu())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def evaluate(model, loader, device=None) -> dict:
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


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch: int = 0,
                    history: pd.DataFrame | None = None) -> Path:
    """Write model (+ optimiser, scheduler, epoch, history, RNG state) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer else None,
        "scheduler": scheduler.state_dict() if scheduler else None,
        "epoch": epoch,
        "history": history.to_dict("records") if history is not None else [],
        "torch_rng": torch.get_rng_state(),
    }
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)  # a crash mid-save leaves the previous checkpoint intact
    return path


def load_checkpoint(path, model, optimizer=None, scheduler=None) -> dict:
    """Restore what save_checkpoint wrote; returns the raw state (epoch, history, ...)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or pass the right path.")
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler"):
        scheduler.load_state_dict(state["scheduler"])
    return state


def make_optimizer(model, name: str, lr: float, weight_decay: float, momentum: float):
    if name == "adam":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adam' or 'sgd'.")


def fit(model, train_loader, val_loader=None, *, lam: float = 0.0, epochs: int = 10,
        lr: float = 1e-3, weight_decay: float = 1e-4, optimizer: str = "adam",
        momentum: float = 0.9, lr_step: int | None = None, lr_gamma: float = 0.1,
        resolution: str = "feature", channels: str = "all", seed: int = 0, device=None,
        progress: bool = True, checkpoint=None, resume: bool = False,
        time_limit: float | None = None, recalibrate_bn: bool = True) -> pd.DataFrame:
    """Train ``model`` for ``epochs`` epochs; lam = 0 is the baseline, lam > 0 guided.

    Args:
        model: a CAMNet (pooling "avg" for the baseline, "softmax" for guided training).
        train_loader, val_loader: loaders of (image, label, mask, has_mask) batches.
        lam: weight of the attention loss. resolution/channels: see attention_guidance_loss.
        optimizer: "adam" (AdamW, the course default) or "sgd" (with momentum; the authors').
        lr_step: multiply the learning rate by lr_gamma every lr_step epochs (None: constant).
        seed: seeds torch/NumPy/Python and the loader's shuffling, so CPU runs repeat exactly.
        device: defaults to cuda when present.
        progress: show a tqdm bar over epochs (and, for epochs of 50 batches or more, one
            over the batches of each epoch).
        checkpoint: path; the model is saved there after every epoch.
        resume: continue from ``checkpoint`` if it exists.
        time_limit: stop after this many seconds of training (checked after each step).
        recalibrate_bn: re-measure BatchNorm statistics at the end (see
            recalibrate_batchnorm); the history's val columns are from before it.

    Returns:
        pandas DataFrame, one row per epoch: epoch, loss, ce, att (training means), lr,
        seconds, and with a val_loader val_accuracy, val_auc, val_mass_in_mask.

    Raises:
        TrainingDiverged when the loss becomes NaN or infinite.
    """
    set_seed(seed)
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    opt = make_optimizer(model, optimizer, lr, weight_decay, momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, lr_step, lr_gamma) if lr_step else None

    rows, start_epoch = [], 1
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, model, opt, scheduler)
        rows, start_epoch = list(state["history"]), state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])

    # Reseeding the loader's generators each epoch makes the order depend on (seed, epoch)
    # only, so a resumed run sees the same batches as an uninterrupted one.
    generators = [g for g in (getattr(train_loader, "generator", None),
                              getattr(getattr(train_loader, "sampler", None), "generator", None))
                  if isinstance(g, torch.Generator)]
    started = time.perf_counter()
    epoch_bar = tqdm(range(start_epoch, epochs + 1), desc="lam=%g" % lam, disable=not progress,
                     initial=start_epoch - 1, total=epochs)
    for epoch in epoch_bar:
        for generator in generators:
            generator.manual_seed(seed * 1000 + epoch)
        model.train()
        sums, steps, epoch_start = {"loss": 0.0, "ce": 0.0, "att": 0.0}, 0, time.perf_counter()
        out_of_time = False
        # The bar is updated by hand: wrapping the loader would start its workers twice.
        # Only long epochs get a bar of their own; short ones would just add lines to a notebook.
        batch_bar = tqdm(total=len(train_loader), desc=f"epoch {epoch}", leave=False,
                         disable=not progress or len(train_loader) < 50)
        for batch in train_loader:
            losses = training_step(model, batch, opt, lam=lam, resolution=resolution,
                                   channels=channels, device=device)
            batch_bar.update()
            for key in sums:
                sums[key] += losses[key]
            steps += 1
            if time_limit is not None and time.perf_counter() - started > time_limit:
                out_of_time = True
                break
        batch_bar.close()
        row = {"epoch": epoch, **{k: v / max(steps, 1) for k, v in sums.items()},
               "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - epoch_start}
        if scheduler is not None:
            scheduler.step()
        if val_loader is not None:
            scores = evaluate(model, val_loader, device)
            row.update(val_accuracy=scores["accuracy"], val_auc=scores["auc"],
                       val_mass_in_mask=scores["mass_in_mask"])
        rows.append(row)
        epoch_bar.set_postfix({k: round(v, 3) for k, v in row.items() if k in ("loss", "att", "val_accuracy")})
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, opt, scheduler, epoch, pd.DataFrame(rows))
        if out_of_time:
            break
    epoch_bar.close()
    if recalibrate_bn:
        recalibrate_batchnorm(model, train_loader, device)
    return pd.DataFrame(rows)


@torch.no_grad()
def recalibrate_batchnorm(model, loader, device=None, max_batches: int = 50) -> None:
    """Re-measure BatchNorm's running mean and variance with the final weights.

    During training the running averages trail the changing weights; after a short run
    (tens of steps, as on a laptop) a network that is right on nearly every training batch
    can score near chance in eval mode. One pass without gradients over (up to
    ``max_batches``) training batches fixes that. Nothing else in the model changes.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    device = device or next(model.parameters()).device
    was_training = model.training
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None = a plain average over all batches seen
    model.train()
    for step, batch in enumerate(loader):
        if step >= max_batches:
            break
        model(batch[0].to(device))
    for m in norms:
        m.momentum = momenta[m]
    model.train(was_training)
