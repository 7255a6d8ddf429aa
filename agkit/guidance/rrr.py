"""Right for the Right Reasons: penalise input gradients on a forbidden region."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agkit.guidance.base import GuidanceTerm, check_regions, masks_at, zero


class RRRGuidance(GuidanceTerm):
    """Right for the Right Reasons (Ross, Hughes and Doshi-Velez, IJCAI 2017).

    The gradient of the summed log-probabilities with respect to the input pixels says how
    much each pixel moves the prediction. The penalty is its square on the forbidden region:

        L = (1/B) sum_n sum_{c,i,j} ( forbidden_n(i,j) * d/dx_n(c,i,j) sum_k log p_k(x_n) )^2

    It is differentiated again in the training step (double backpropagation), so it needs
    ``images.requires_grad_(True)`` before the forward pass (``needs_input_grad``).
    Uses ``out.logits`` (B x N), ``images`` (B x C x H x W) and ``forbidden`` (B x 1 x H x W,
    broadcast over the channels). Ross et al. weight it by 1000 for Decoy-MNIST with pixel
    values in [0, 1]. Any model with logits works; the CAM is not used.
    """

    name = "rrr"
    pooling = "avg"
    needs_input_grad = True

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden=None):
        check_regions(out, masks, forbidden)
        if forbidden is None or not (forbidden > 0).any():
            return zero(out)
        if not images.requires_grad:
            raise ValueError(
                "the rrr term differentiates with respect to the images: call "
                "images.requires_grad_(True) before model(images)."
            )
        log_probs = F.log_softmax(out.logits, dim=1).sum()
        (gradient,) = torch.autograd.grad(log_probs, images, create_graph=True)
        region = masks_at(forbidden.to(gradient.dtype), images.shape[-2:])
        return (region * gradient).pow(2).sum() / images.shape[0]
