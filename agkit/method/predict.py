"""Running a trained model: its classes and CAMs, per-image scores, and a summary.

``classify(model, images)``  probabilities, predicted classes and CAMs of a stack of images
``predict(model, loader)``   the same for a loader, with the attention scores of every image
``evaluate(model, loader)``  classification and attention scores of the whole loader

Each runs the model in eval mode without gradients and leaves its train/eval mode as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from agkit.engine.progress import bar
from agkit.method import metrics
from agkit.method.loss import attention_guidance_loss


class Classified(NamedTuple):
    """What a model says about n images: probs n x N, predicted n (int64), cams n x N x h x w."""

    probs: torch.Tensor
    predicted: torch.Tensor
    cams: torch.Tensor


@torch.no_grad()
def classify(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> Classified:
    """The model on images n x C x H x W, ``batch_size`` at a time; CPU tensors."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = []
    for start in range(0, len(images), batch_size):
        out = model(images[start : start + batch_size].to(device))
        parts.append(
            (out.logits.softmax(dim=1).cpu(), out.logits.argmax(dim=1).cpu(), out.cams.cpu())
        )
    model.train(was_training)
    probs, predicted, cams = (torch.cat(column) for column in zip(*parts, strict=True))
    return Classified(probs, predicted, cams)


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable[Sequence[Any]],
    device: torch.device | str | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Run the model over a loader of (images, labels, masks, has_mask, ...) batches.

    Returns a dict of CPU tensors: probs (n x N), labels (n), cams (n x N x h x w), has_mask
    (n bools) and the per-image attention scores of the predicted class, mass_in_mask,
    pointing_game and iou, with the paper's attention_loss of each image (n each; NaN where
    the image has no mask).
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    keys = ("probs", "labels", "cams", "has_mask", "mass_in_mask", "pointing_game", "iou")
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in (*keys, "attention_loss")}
    for batch in bar(loader, desc="predict", leave=False, disable=not progress):
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
        kept = masks * annotated.to(masks.dtype).view(-1, 1, 1, 1)
        parts["attention_loss"].append(
            attention_guidance_loss(out.cams, kept, reduction="none").float().cpu()
        )
    model.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def evaluate(
    model: nn.Module, loader: Iterable[Sequence[Any]], device: torch.device | str | None = None
) -> dict[str, Any]:
    """Classification and attention scores of a model on a loader.

    Returns a dict with accuracy, balanced_accuracy, auc, sensitivity, specificity,
    confusion, n (the number of images), and the means over the annotated images (NaN when
    none is) of mass_in_mask, pointing_game, iou and attention_loss (the paper's loss, per
    image: how a model trained without it, the baseline, would fare on it).
    """
    out = predict(model, loader, device)
    scores = metrics.classification_metrics(out["labels"].numpy(), out["probs"].numpy())
    for key in ("mass_in_mask", "pointing_game", "iou", "attention_loss"):
        values = out[key][out["has_mask"]]
        scores[key] = float(values.mean()) if len(values) else float("nan")
    scores["n"] = len(out["labels"])
    return scores
