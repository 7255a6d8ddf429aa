"""Guidance terms: the paper's CAM loss and its rivals, on one API.

Attention guidance is one member of a family often called *explanation-guided learning*:
add to the cross-entropy a term that is small when the model's explanation agrees with a
human's annotation. The members differ in which explanation they use (the CAM, an input
gradient, Grad-CAM, an erased image) and in the kind of annotation ("look here" masks or
"don't look here" masks). Every term here is a callable with one signature:

    term(model, images, labels, masks, has_mask, out, forbidden) -> scalar tensor

    images     B x C x H x W float
    labels     B long
    masks      B x 1 x H x W 0/1 (float, int or bool), "look here" (the evidence), or None
    has_mask   B bool, True where the image has a positive mask
    out        the model's CAMOutput(logits B x N, cams B x N x h x w) for ``images``,
               computed with the graph
    forbidden  B x 1 x H x W float 0/1, "don't look here" (a known confounder), or None

and training minimises ``CE + lam * term(...)``. A term whose attribute
``needs_input_grad`` is True needs ``images.requires_grad_(True)`` before the forward pass
(it differentiates with respect to the pixels); one whose ``needs_annotation`` is False
acts without any mask (``fit`` warns when a term that needs masks never got one). An image
whose mask is empty adds nothing; a batch where no image has the annotation a term needs
gives 0 (with a graph), never NaN.
Every term checks its masks and forbidden regions with ``agkit.method.loss.check_masks``, the
paper's loss's check: B x 1 x H x W, finite, 0 or 1, and at least the CAM grid in size
(a mask at another size than the images is resampled, see ``masks_at``).

``get_term("rrr")`` returns a term by name; ``TERMS`` lists the names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agkit.method import cams as cam_utils
from agkit.method.loss import attention_guidance_loss, check_masks, shrink_masks


def _zero(out) -> torch.Tensor:
    """A zero that stays connected to the graph, so backward() works and adds nothing."""
    return out.logits.sum() * 0.0


def _check(out, masks: torch.Tensor | None, forbidden: torch.Tensor | None) -> None:
    """Refuse malformed masks or forbidden regions with the CAM loss's messages."""
    cams = getattr(out, "cams", None)
    grid = None if cams is None else cams.shape[-2:]
    for name, region in (("masks", masks), ("forbidden", forbidden)):
        if region is not None:
            check_masks(region, out.logits.shape[0], grid, name)


def masks_at(masks: torch.Tensor, size) -> torch.Tensor:
    """0/1 masks B x 1 x H' x W' (float) at the image size (H, W): B x 1 x H x W.

    A pixel is marked when the mask marks any part of it (adaptive max pooling, as
    ``shrink_masks``); a mask at 1/k of the image's size becomes k x k blocks.
    """
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return shrink_masks(masks, size)


def region_coverage(region: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The share of each CAM cell covered by a pixel region.

    region: B x 1 x H x W, values 0/1.  size: (h, w), the CAM grid.
    Returns B x 1 x h x w in [0, 1]: for each cell, the fraction of its pixels inside the
    region (an area average, exact when H and W are multiples of h and w). Unlike a
    nearest-neighbour shrink it never loses a region smaller than a cell, such as a
    4 x 4 swatch on a 7 x 7 grid.
    """
    if not region.is_floating_point():
        region = region.float()
    return F.adaptive_avg_pool2d(region, size)


def attention_mass(cams: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Share of each class map's softmax attention that falls on a region.

    cams: B x N x h x w raw CAMs. region: B x 1 x H x W 0/1.
    Returns B x N in [0, 1]. Each cell's attention is spread evenly over its pixels, so the
    result is the attention on the region's pixels (see ``region_coverage``).
    """
    attention = cam_utils.attention(cams)  # B x N x h x w, each map sums to 1
    coverage = region_coverage(region.to(cams.dtype), cams.shape[-2:])  # B x 1 x h x w
    return (attention * coverage).flatten(2).sum(dim=2)


def _images_with(region: torch.Tensor | None) -> torch.Tensor | None:
    """B bools: which images have a non-empty region (None when there is no region)."""
    if region is None:
        return None
    return region.flatten(1).amax(dim=1) > 0


# ---------------------------------------------------------------------------------------
# "Look here": the paper's CAM loss
# ---------------------------------------------------------------------------------------


class CAMGuidance:
    """The paper's attention-guidance loss (Liao et al., IEEE JBHI 2022, Eq. 4).

    Mean of ``-log softmax(CAM)`` over every annotated position of every class map: it pulls
    each CAM's probability mass into the positive mask. A thin wrapper around
    ``agkit.method.loss.attention_guidance_loss`` (see there for ``resolution`` and ``classes``).
    Uses ``out.cams`` (B x N x h x w) and ``masks`` (B x 1 x H x W); images without a mask
    (has_mask False) add nothing. Designed for softmax pooling.
    """

    name = "cam"
    pooling = "softmax"
    needs_input_grad = False
    needs_annotation = True

    def __init__(self, resolution: str = "feature", classes: str = "all"):
        self.resolution, self.classes = resolution, classes

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden=None):
        _check(out, masks, forbidden)
        if masks is None:
            return _zero(out)
        kept = masks * has_mask.to(masks.dtype).view(-1, 1, 1, 1)
        return attention_guidance_loss(
            out.cams, kept, resolution=self.resolution, classes=self.classes, labels=labels
        )


# ---------------------------------------------------------------------------------------
# "Don't look here": push CAM mass out of a forbidden region
# ---------------------------------------------------------------------------------------


class ForbiddenGuidance:
    """Push each CAM's softmax mass out of a forbidden region: ``-log(1 - mass inside)``.

    The "don't look here" counterpart of the paper's loss, in the spirit of Ross et al.'s
    annotation matrices (IJCAI 2017) and Teso and Kersting's explanatory interactive learning
    (AIES 2019), which let a user mark what must *not* matter. ``mass`` is the share of a
    class map's softmax attention on the forbidden pixels (``attention_mass``); the term is
    the mean of ``-log(1 - mass)`` over every class map of every image with a non-empty
    forbidden region: 0 when no attention is there, growing without bound as all of it is.

    Uses ``out.cams`` (B x N x h x w) and ``forbidden`` (B x 1 x H x W). With
    ``with_positive=True`` the paper's CAM loss on ``masks`` is added (both kinds of
    annotation at once).
    """

    name = "forbidden"
    pooling = "softmax"
    needs_input_grad = False
    needs_annotation = True

    def __init__(self, with_positive: bool = False, resolution: str = "feature"):
        self.with_positive = with_positive
        self.positive = CAMGuidance(resolution=resolution)

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden):
        _check(out, masks, forbidden)
        total = _zero(out)
        present = _images_with(forbidden)
        if present is not None and present.any():
            mass = attention_mass(out.cams[present], forbidden[present])  # b x N
            # clamp: a region covering every cell would give log(0); keep the loss finite
            total = total - torch.log1p(-mass.clamp(max=1 - 1e-6)).mean()
        if self.with_positive:
            total = total + self.positive(model, images, labels, masks, has_mask, out)
        return total


# ---------------------------------------------------------------------------------------
# Right for the right reasons: input gradients
# ---------------------------------------------------------------------------------------


class RRRGuidance:
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
    needs_annotation = True

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden):
        _check(out, masks, forbidden)
        if forbidden is None or not (forbidden > 0).any():
            return _zero(out)
        if not images.requires_grad:
            raise ValueError(
                "the rrr term differentiates with respect to the images: call "
                "images.requires_grad_(True) before model(images)."
            )
        log_probs = F.log_softmax(out.logits, dim=1).sum()
        (gradient,) = torch.autograd.grad(log_probs, images, create_graph=True)
        region = masks_at(forbidden.to(gradient.dtype), images.shape[-2:])
        return (region * gradient).pow(2).sum() / images.shape[0]


# ---------------------------------------------------------------------------------------
# Grad-CAM in the graph (HINT, RRR-GradCAM)
# ---------------------------------------------------------------------------------------


def gradcam(model, out, labels: torch.Tensor, relu: bool = True) -> torch.Tensor:
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
    bias = model.classifier.bias.view(1, -1, 1, 1)
    maps = (weights * (out.cams - bias)).sum(dim=1, keepdim=True)
    return F.relu(maps) if relu else maps


class GradCAMGuidance:
    """Penalise Grad-CAM outside the positive mask (HINT, Selvaraju et al., ICCV 2019;
    RRR-GradCAM in Schramowski et al., Nature Machine Intelligence 2020).

    The term is the share of the true class's Grad-CAM G (``gradcam``) that lies outside the
    mask, averaged over the annotated images:

        L = mean_n  sum_ij (G_n + d_n)(i,j) (1 - cover_n(i,j)) / sum_ij (G_n + d_n)(i,j)

    with ``cover`` the share of each cell inside the mask (``region_coverage``). A share,
    not a sum, so the network cannot satisfy it by shrinking all its activations; the small
    floor d_n (``floor`` times the mean |map before the ReLU|) makes a map
    that is zero everywhere count as spread evenly, not as perfect.
    When ``forbidden`` is given and no positive mask is, the forbidden region is penalised
    instead of the outside of the mask. Uses ``out`` and ``labels``; masks B x 1 x H x W.
    """

    name = "gradcam"
    pooling = "avg"
    needs_input_grad = False
    needs_annotation = True

    def __init__(self, floor: float = 0.1):
        self.floor = floor

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden=None):
        _check(out, masks, forbidden)
        if masks is not None and has_mask.any():
            keep = has_mask & _images_with(masks)
            outside = 1.0 - region_coverage(masks.to(out.cams.dtype), out.cams.shape[-2:])
        elif forbidden is not None and (forbidden > 0).any():
            keep = _images_with(forbidden)
            outside = region_coverage(forbidden.to(out.cams.dtype), out.cams.shape[-2:])
        else:
            return _zero(out)
        if not keep.any():
            return _zero(out)
        raw = gradcam(model, out, labels, relu=False)  # B x 1 x h x w
        floor = self.floor * raw.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12
        maps = F.relu(raw) + floor
        share = (maps * outside).flatten(1).sum(1) / maps.flatten(1).sum(1)
        return share[keep].mean()


# ---------------------------------------------------------------------------------------
# GAIN: attention mining on the erased image
# ---------------------------------------------------------------------------------------


class GAINGuidance:
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
    needs_input_grad = False
    needs_annotation = False

    def __init__(self, omega: float = 10.0, sigma: float = 0.5, supervise: float = 1.0):
        self.omega, self.sigma, self.supervise = omega, sigma, supervise

    def attention_map(self, out, labels: torch.Tensor, size) -> torch.Tensor:
        """The true class's CAM at input size, min-max normalised: B x 1 x H x W in [0, 1]."""
        return cam_utils.cam_at_input(out.cams, labels, size)

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden=None):
        _check(out, masks, forbidden)
        attention = self.attention_map(out, labels, images.shape[-2:])  # B x 1 x H x W
        erase = torch.sigmoid(self.omega * (attention - self.sigma))
        erased = images - erase * images
        scores = model(erased).logits.gather(1, labels.view(-1, 1))
        loss = torch.sigmoid(scores).mean()
        if self.supervise > 0 and masks is not None and has_mask.any():
            target = masks_at(masks.to(attention.dtype), attention.shape[-2:])
            error = (attention - target).pow(2).flatten(1).mean(1)
            loss = loss + self.supervise * error[has_mask].mean()
        return loss


# ---------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------

TERMS = {
    "cam": CAMGuidance,
    "forbidden": ForbiddenGuidance,
    "forbidden+cam": lambda **kw: ForbiddenGuidance(with_positive=True, **kw),
    "rrr": RRRGuidance,
    "gradcam": GradCAMGuidance,
    "gain": GAINGuidance,
}


def get_term(name_or_callable, **options):
    """A guidance term by name (see ``TERMS``), built with ``options``; a callable is
    returned unchanged (then ``options`` must be empty)."""
    if callable(name_or_callable):
        if options:
            raise ValueError(
                "options only apply to a term given by name; configure your callable yourself."
            )
        return name_or_callable
    if name_or_callable not in TERMS:
        raise ValueError(
            f"unknown guidance term {name_or_callable!r}; choose one of "
            f"{', '.join(TERMS)}, or pass a callable term(model, images, labels, "
            "masks, has_mask, out, forbidden)."
        )
    return TERMS[name_or_callable](**options)
