"""Guidance terms: the paper's CAM loss and its rivals, on one API.

Attention guidance is one member of a family often called *explanation-guided learning*:
add to the cross-entropy a term that is small when the model's explanation agrees with a
human's annotation. The members differ in which explanation they use (the CAM, an input
gradient, Grad-CAM, an erased image) and in the kind of annotation ("look here" masks or
"don't look here" masks). One file a term, each a ``GuidanceTerm`` (``base``: the call
signature and what the training step asks of a term):

    cam        CAMGuidance         the paper's loss: CAM mass into the mask
    forbidden  ForbiddenGuidance   CAM mass out of a forbidden region
    rrr        RRRGuidance         input gradients off a forbidden region (Ross et al.)
    gradcam    GradCAMGuidance     Grad-CAM outside the mask (HINT)
    gain       GAINGuidance        attention mining on the erased image (GAIN)

An image whose mask is empty adds nothing; a batch where no image has the annotation a term
needs gives 0 (with a graph), never NaN. Every term checks its masks and forbidden regions
with ``agkit.method.loss.check_masks``, the paper's loss's check: B x 1 x H x W, finite, 0
or 1, and at least the CAM grid in size (a mask at another size than the images is
resampled, see ``base.masks_at``).

``get_term("rrr")`` returns a term by name; ``TERMS`` lists the names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agkit.guidance.base import GuidanceTerm
from agkit.guidance.cam import CAMGuidance
from agkit.guidance.forbidden import ForbiddenGuidance
from agkit.guidance.gain import GAINGuidance
from agkit.guidance.gradcam import GradCAMGuidance, gradcam
from agkit.guidance.rrr import RRRGuidance


def _forbidden_and_cam(**options: Any) -> ForbiddenGuidance:
    return ForbiddenGuidance(with_positive=True, **options)


TERMS: dict[str, Callable[..., Any]] = {
    "cam": CAMGuidance,
    "forbidden": ForbiddenGuidance,
    "forbidden+cam": _forbidden_and_cam,
    "rrr": RRRGuidance,
    "gradcam": GradCAMGuidance,
    "gain": GAINGuidance,
}


def get_term(name_or_callable: str | Callable[..., Any], **options: Any) -> Any:
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


__all__ = [
    "TERMS",
    "CAMGuidance",
    "ForbiddenGuidance",
    "GAINGuidance",
    "GradCAMGuidance",
    "GuidanceTerm",
    "RRRGuidance",
    "get_term",
    "gradcam",
]
