"""Did the model learn the right thing? Diagnostics beyond accuracy.

* ``worst_group_accuracy``: accuracy on the worst of the label x confounder groups
  (Sagawa et al., "Distributionally robust neural networks", ICLR 2020). On SynthFrac's
  shifted split the groups are (normal, fractured) x (marker, no marker); a model that reads
  the marker fails on "fractured without marker" and "normal with marker".
* ``wrong_reason``: the share of a model's attribution on the confounder's pixels, from its
  own CAM and from an independent explainer, Integrated Gradients (Sundararajan et al.,
  ICML 2017, via Captum). A CAM term could in principle move only the CAM; if the IG share
  drops too, the model changed, not just its picture.
* ``randomization_check``: Adebayo et al.'s sanity check ("Sanity checks for saliency
  maps", NeurIPS 2018): re-initialise the layers from the top down and watch the CAM
  change. A map that stays the same does not depend on what the model learned.
* ``synthfrac_marker_masks``: the lead marker's box in SynthFrac, or the four corner boxes
  where a marker can sit: SynthFrac's "don't look here" masks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import cast

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import nn

from agkit.data.synthetic_marker import marker_boxes
from agkit.method import cams as cam_utils
from agkit.method.metrics import attention_mass
from agkit.method.predict import classify

# ---------------------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------------------


def group_accuracy(predictions, labels, confounders) -> pd.DataFrame:
    """Accuracy per (label, confounder) group.

    predictions, labels: n class indices; confounders: n values (bools or small ints).
    Returns a DataFrame with columns label, confounder, n, accuracy, one row per group
    that has images, sorted by label then confounder.
    """
    table = pd.DataFrame(
        {
            "label": np.asarray(labels),
            "confounder": np.asarray(confounders),
            "correct": np.asarray(predictions) == np.asarray(labels),
        }
    )
    if not len(table):
        raise ValueError("no images: group accuracy needs at least one prediction.")
    grouped = table.groupby(["label", "confounder"])["correct"]
    return grouped.agg(n="size", accuracy="mean").reset_index()


def worst_group_accuracy(predictions, labels, confounders) -> float:
    """The lowest accuracy over the non-empty label x confounder groups (group DRO's metric)."""
    return float(group_accuracy(predictions, labels, confounders)["accuracy"].min())


# ---------------------------------------------------------------------------------------
# SynthFrac's shortcut as a mask
# ---------------------------------------------------------------------------------------


def synthfrac_marker_masks(data, every_corner: bool = False) -> torch.Tensor:
    """The lead marker's box of every SynthFrac image: n x 1 x S x S float 0/1.

    All zero for images without a marker. The geometry is the generator's
    (``agkit.data.synthetic_marker``): a square of side max(7, round(0.17 S)) set in from the
    corner by max(2, round(0.05 S)) pixels; ``meta["marker_corner"]`` says which corner.

    With ``every_corner`` each image gets all four boxes where a marker can sit, marker or
    not. That is the region a "don't look here" annotation has to cover: an empty corner
    says "normal" as surely as a marker says "fractured", and a model penalised only on
    the marker's box can still read the corners of the images without one.
    """
    size = int(data.images.shape[-1])
    box, origin = marker_boxes(size)
    masks = torch.zeros(len(data), 1, size, size)
    if every_corner:
        for row, col in origin.values():
            masks[:, 0, row : row + box, col : col + box] = 1.0
        return masks
    for i, (marker, corner) in enumerate(
        zip(data.meta["marker"], data.meta["marker_corner"], strict=True)
    ):
        if marker:
            row, col = origin[corner]
            masks[i, 0, row : row + box, col : col + box] = 1.0
    return masks


# ---------------------------------------------------------------------------------------
# Wrong reasons: attribution on the confounder
# ---------------------------------------------------------------------------------------


def attribution_share(attributions: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Share of absolute attribution on a region, per image.

    attributions: B x C x H x W (any sign; the magnitude counts, summed over channels).
    region: B x 1 x H x W 0/1. Returns B values in [0, 1] (NaN for an all-zero attribution).
    """
    magnitude = attributions.abs().sum(dim=1, keepdim=True).flatten(1)
    return (magnitude * region.to(magnitude.dtype).flatten(1)).sum(1) / magnitude.sum(1)


def integrated_gradients(
    model, images: torch.Tensor, classes: torch.Tensor, steps: int = 32
) -> torch.Tensor:
    """Captum's Integrated Gradients of the class scores from a black image:
    images B x C x H x W, classes B -> attributions B x C x H x W."""
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        raise ImportError("Integrated Gradients needs Captum: pip install 'captum>=0.7'.") from None
    explainer = IntegratedGradients(lambda x: model(x).logits)
    return explainer.attribute(
        images,
        baselines=torch.zeros_like(images),
        target=classes,
        n_steps=steps,
        internal_batch_size=len(images) * 8,
    )


def wrong_reason(
    model, images: torch.Tensor, regions: torch.Tensor, *, steps: int = 32, batch_size: int = 64
) -> dict:
    """The share of attribution on the confounder ``regions`` for the predicted class.

    images: n x C x H x W; regions: n x 1 x H x W 0/1 (images with an empty region are
    skipped). Returns {"cam": mean share of the CAM's softmax attention, "ig": mean share
    of |Integrated Gradients|, "n": images scored}. 0 means "never looks there";
    for a map spread evenly it is the region's share of the image area.
    """
    model.eval()
    keep = regions.flatten(1).amax(1) > 0
    images, regions = images[keep], regions[keep]
    cam_parts, ig_parts = [], []
    device = next(model.parameters()).device
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        r = regions[start : start + batch_size]
        out = classify(model, x, batch_size)
        mass = attention_mass(out.cams, r, cells="area")  # b x N
        cam_parts.append(mass.gather(1, out.predicted[:, None])[:, 0])
        attributions = integrated_gradients(model, x.to(device), out.predicted.to(device), steps)
        ig_parts.append(attribution_share(attributions, r.to(device)).cpu())
    if not cam_parts:
        return {"cam": float("nan"), "ig": float("nan"), "n": 0}
    return {
        "cam": float(torch.cat(cam_parts).mean()),
        "ig": float(torch.cat(ig_parts).nanmean()),
        "n": int(keep.sum()),
    }


# ---------------------------------------------------------------------------------------
# Sanity check: cascading model randomisation
# ---------------------------------------------------------------------------------------


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation between two stacks of maps, one value per map.

    a, b: B x ... (each map flattened). A constant map has no ranking: its value is NaN.
    """
    a_np, b_np = a.flatten(1).double().cpu().numpy(), b.flatten(1).double().cpu().numpy()
    values = []
    for x, y in zip(a_np, b_np, strict=True):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            values.append(np.nan)
        else:
            values.append(spearmanr(x, y).statistic)
    return np.array(values)


def layers_top_down(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's parameterised leaf layers (convolutions, linear, norms), output first."""
    leaves = [
        (name, m)
        for name, m in model.named_modules()
        if not list(m.children()) and any(True for _ in m.parameters(recurse=False))
    ]
    return leaves[::-1]


def randomization_check(model, images: torch.Tensor, *, seed: int = 0, size=None) -> pd.DataFrame:
    """Adebayo et al.'s cascading randomisation of the CAM (top-down).

    Re-initialises the layers of a copy of ``model`` one by one from the output towards the
    input (``layers_top_down``; each with its own ``reset_parameters``) and after each
    compares the CAM of the class the *trained* model predicts with the trained model's CAM
    (Spearman rank correlation at input size, mean over images).

    images: B x C x H x W. Returns a DataFrame: step (0 = trained model), layer, spearman.
    A CAM that reflects the learned weights falls from 1 towards 0 as layers go.
    """
    size = size or tuple(images.shape[-2:])
    model = copy.deepcopy(model).eval()
    device = next(model.parameters()).device
    images = images.to(device)
    _, classes, trained_cams = classify(model, images)
    reference = cam_utils.upsample(cam_utils.select_class(trained_cams, classes), size)
    classes = classes.to(device)
    rows = [{"step": 0, "layer": "(trained)", "spearman": 1.0}]
    torch.manual_seed(seed)
    for step, (name, layer) in enumerate(layers_top_down(model), start=1):
        # nn.Module.__getattr__ is typed Tensor | Module; these are the layers' methods
        cast(Callable[[], None], layer.reset_parameters)()
        if hasattr(layer, "reset_running_stats"):
            cast(Callable[[], None], layer.reset_running_stats)()
        with torch.no_grad():
            cams = model(images).cams
            maps = cam_utils.upsample(cam_utils.select_class(cams, classes), size)
        rows.append(
            {
                "step": step,
                "layer": name,
                "spearman": float(np.nanmean(rank_correlation(reference, maps))),
            }
        )
    return pd.DataFrame(rows)
