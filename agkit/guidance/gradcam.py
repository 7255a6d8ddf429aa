"""Grad-CAM in the graph, and the term that penalises it outside the mask (HINT)."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from agkit.guidance.base import GuidanceTerm, check_regions, images_with, zero
from agkit.method.camnet import CAMOutput
from agkit.method.metrics import region_coverage


def gradcam(
    model: nn.Module, out: CAMOutput, labels: torch.Tensor, relu: bool = True
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017) of the true class at the backbone's output,
    differentiable (computed with ``create_graph=True``).

    Grad-CAM weights each feature channel k by the mean gradient of the class score,
    ``alpha_k = mean_ij dz_c / dF_k(i, j)``, and returns ``ReLU(sum_k alpha_k F_k)``.
    In a CAMNet the CAMs are linear in the features, ``M = W F + b``, so with
    ``g = dz_c / dM`` (from autograd) the same map is ``ReLU(sum_c' mean_ij(g_c') (M_c' - b_c'))``
    and the features need not be kept. (For both poolings mean_ij(g) is 1/(h w) for the
    true class and 0 otherwise, so Grad-CAM there equals ``ReLU(M_c - b_c) / (h w)``: CAM
    is the special case Grad-CAM generalises.)

    out: CAMOutput(logits B x N, cams B x N x h x w) of ``model``. labels: B.
    Returns B x 1 x h x w, non-negative (``relu=False``: the map before the ReLU).
    """
    scores = out.logits.gather(1, labels.view(-1, 1)).sum()
    (grads,) = torch.autograd.grad(scores, out.cams, create_graph=True)  # B x N x h x w
    weights = grads.mean(dim=(2, 3), keepdim=True)  # B x N x 1 x 1
    bias = cast(nn.Linear, model.classifier).bias.view(1, -1, 1, 1)
    maps = (weights * (out.cams - bias)).sum(dim=1, keepdim=True)
    return F.relu(maps) if relu else maps


class GradCAMGuidance(GuidanceTerm):
    """Penalise Grad-CAM outside the positive mask (HINT, Selvaraju et al., ICCV 2019;
    RRR-GradCAM in Schramowski et al., Nature Machine Intelligence 2020).

    The term is the share of the true class's Grad-CAM G (``gradcam``) that lies outside the
    mask, averaged over the annotated images:

        L = mean_n  sum_ij (G_n + d_n)(i,j) (1 - cover_n(i,j)) / sum_ij (G_n + d_n)(i,j)

    with ``cover`` the share of each cell inside the mask (``region_coverage``). A share,
    not a sum, so the network cannot satisfy it by shrinking all its activations; the small
    floor d_n (``floor_share`` times the mean |map before the ReLU|) makes a map that is
    zero everywhere count as spread evenly, not as perfect. When ``forbidden`` is given and
    no positive mask is, the forbidden region is penalised instead of the outside of the
    mask. Uses ``out`` and ``labels``; masks B x 1 x H x W.
    """

    name = "gradcam"
    pooling = "avg"

    def __init__(self, floor_share: float = 0.1):
        self.floor_share = floor_share

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden=None):
        check_regions(out, masks, forbidden)
        grid = out.cams.shape[-2:]
        if masks is not None and has_mask.any():
            keep = has_mask & images_with(masks)
            outside = 1.0 - region_coverage(masks.to(out.cams.dtype), grid)
        elif forbidden is not None and (forbidden > 0).any():
            keep = images_with(forbidden)
            outside = region_coverage(forbidden.to(out.cams.dtype), grid)
        else:
            return zero(out)
        if not keep.any():
            return zero(out)
        raw = gradcam(model, out, labels, relu=False)  # B x 1 x h x w
        floor = self.floor_share * raw.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12
        maps = F.relu(raw) + floor
        share = (maps * outside).flatten(1).sum(1) / maps.flatten(1).sum(1)
        return share[keep].mean()
