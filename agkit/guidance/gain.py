"""GAIN: attention mining on the erased image (Li et al., CVPR 2018)."""

from __future__ import annotations

import torch

from agkit.guidance.base import GuidanceTerm, check_regions, masks_at
from agkit.method import cams as cam_utils


class GAINGuidance(GuidanceTerm):
    """Guided Attention Inference Network (Li, Wu, Peng, Ernst and Fu, CVPR 2018).

    Attention mining: erase from each image the region its true class's map highlights,
    ``x* = x - T(A) * x`` with the soft mask ``T(A) = sigmoid(omega (A - sigma))`` and A the
    min-max normalised CAM at input size, then minimise the true class's score on x*,
    ``L_am = mean_n sigmoid(z_c(x*_n))``. If anything the class needs survives outside the
    map, the score stays high: the map must cover *all* the evidence. With ``supervise > 0``
    (GAIN_ext, the paper's Sec. 4) ``supervise * mean (A - mask)^2`` over annotated images
    pulls the map onto the positive mask as well.

    Uses ``images`` (B x C x H x W), ``labels``, ``out.cams`` and ``masks``; runs the model a
    second time, on the erased images. ``omega = 10`` and ``sigma = 0.5`` are the paper's.
    """

    name = "gain"
    pooling = "avg"
    needs_annotation = False

    def __init__(self, omega: float = 10.0, sigma: float = 0.5, supervise: float = 1.0):
        self.omega, self.sigma, self.supervise = omega, sigma, supervise

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden=None):
        check_regions(out, masks, forbidden)
        # the true class's CAM at input size, min-max normalised: B x 1 x H x W in [0, 1]
        attention = cam_utils.cam_at_input(out.cams, labels, images.shape[-2:])
        erase = torch.sigmoid(self.omega * (attention - self.sigma))
        erased = images - erase * images
        scores = model(erased).logits.gather(1, labels.view(-1, 1))
        loss = torch.sigmoid(scores).mean()
        if self.supervise > 0 and masks is not None and has_mask.any():
            target = masks_at(masks.to(attention.dtype), attention.shape[-2:])
            error = (attention - target).pow(2).flatten(1).mean(1)
            loss = loss + self.supervise * error[has_mask].mean()
        return loss
