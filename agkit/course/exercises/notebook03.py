"""The checks of notebook 03's training: softmax pooling, the attention loss, one training
step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from agkit.course.exercises.answers import (
    _DETACHED,
    _close,
    _empty_batch_gives_zero,
    _number,
    _same_gradients,
    _tensor,
)
from agkit.course.exercises.feedback import Hint
from agkit.course.exercises.inputs import _leaves, _masks
from agkit.course.exercises.runner import _check
from agkit.guidance import CAMGuidance
from agkit.method import camnet as models
from agkit.method import loss as losses
from agkit.method import train
from agkit.method.camnet import CAMNet, pool_cams
from agkit.method.loss import attention_guidance_loss

# --------------------------------------------------------------------------------------
# Notebook 03: softmax pooling, the attention loss, one training step, one propagation step
# --------------------------------------------------------------------------------------


@_check("softmax pooling", uses=((models, "pool_cams"),))
def check_softmax_pooling(student) -> str:
    """fn(cams B x N x h x w) -> logits B x N, z_c = sum_ij softmax(M_c)_ij M_c(i,j)."""
    generator = torch.Generator().manual_seed(4)
    (ref_cams,) = _leaves(torch.randn(3, 2, 8, 8, generator=generator) * 2)
    expected = pool_cams(ref_cams, "softmax")
    (cams,) = _leaves(ref_cams)
    logits = _tensor(student(cams), (3, 2), "one logit per class for every image, B x N")
    if not _close(logits, expected, 1e-5):
        flat = ref_cams.detach().flatten(2)
        if _close(logits, flat.mean(dim=2)):
            raise Hint("that is average pooling; weight each position by its softmax attention.")
        if _close(logits, flat.amax(dim=2)):
            raise Hint("that is max pooling; weight each position by its softmax attention.")
        if _close(logits, flat.logsumexp(dim=2)):
            raise Hint(
                "that is log-sum-exp, another soft maximum; weight each value by its softmax."
            )
        m = ref_cams.detach()
        if _close(logits, (m.softmax(dim=-1) * m).sum(dim=(2, 3)), 1e-5) or _close(
            logits, (m.softmax(dim=-2) * m).sum(dim=(2, 3)), 1e-5
        ):
            raise Hint("the softmax must run over all h x w positions at once, not along one row.")
        if _close(logits, (m.softmax(dim=1) * m).sum(dim=(2, 3)), 1e-5):
            raise Hint("the softmax runs over the positions of each map, not over the classes.")
        raise Hint(
            "the logits differ from softmax pooling: the weights are softmax(M_c) over "
            "all positions, and the logit is the weighted sum of M_c."
        )
    _same_gradients(
        logits,
        [cams],
        expected,
        [ref_cams],
        "the CAMs",
        _DETACHED,
        "the values are right but the gradient is not: the softmax weights must stay in the "
        "graph (no .detach()), because training moves them too.",
    )
    return "your logits and their gradients equal CAMNet's softmax pooling."


def _attention_batch():
    generator = torch.Generator().manual_seed(5)
    cams = torch.randn(4, 2, 8, 8, generator=generator) * 2
    masks = _masks(4, 32, empty=(3,))
    masks[1, 0, 25:31, 2:7] = 1  # a second patch, so the masks' areas differ more
    return cams, masks


@_check(
    "attention loss",
    uses=(
        (losses, "attention_guidance_loss"),
        (CAMGuidance, "__call__"),
    ),
)
def check_attention_loss(student) -> str:
    """fn(cams B x N x h x w, masks B x 1 x H x W) -> scalar L_att (feature resolution)."""
    start, masks = _attention_batch()
    (ref_cams,) = _leaves(start)
    expected = attention_guidance_loss(ref_cams, masks)
    (cams,) = _leaves(start)
    value = _tensor(student(cams, masks.clone()), (), "one number, a scalar tensor")
    if not _close(value, expected, 1e-5):
        touched = F.adaptive_max_pool2d(masks, (8, 8)).flatten(2)  # 4 x 1 x 64
        log_a = start.flatten(2).log_softmax(dim=2)  # 4 x 2 x 64
        inside = -(touched * log_a)
        per_image = inside.sum(dim=(1, 2)) / (touched.sum(dim=(1, 2)) * 2)
        wrong = [
            (-expected, "the sign is wrong: the loss is the mean of -log A, a positive number."),
            (
                inside.sum() / (4 * 2),
                "divide by the number of annotated positions (over all "
                "class maps), not by the number of images.",
            ),
            (
                inside.sum() / touched.sum(),
                "each class map counts: divide by the mask area times the number of classes.",
            ),
            (
                inside.sum(),
                "that is the sum of -log A; the loss is its mean over the masked "
                "positions of every class map.",
            ),
            (inside.mean(), "you averaged over every position; average only over the masked ones."),
            (
                per_image[:3].mean(),
                "average over all masked positions of the batch at once, "
                "not image by image (a large mask weighs more).",
            ),
        ]
        share = F.adaptive_avg_pool2d(masks, (8, 8)).flatten(2)
        wrong.append(
            (
                -(share * log_a).sum() / (share.sum() * 2),
                "a cell counts as a whole "
                "when the mask touches it: shrink with adaptive_max_pool2d, not the average.",
            )
        )
        rows = start.log_softmax(dim=-1).flatten(2)
        wrong.append(
            (
                -(touched * rows).sum() / (touched.sum() * 2),
                "log_softmax must run "
                "over all h x w positions of a map at once, not along one row.",
            )
        )
        for loss, hint in wrong:
            if _close(value, loss, 1e-6, 1e-6):
                raise Hint(hint)
        raise Hint(
            "the value differs from the kit's loss: shrink the mask to the CAM's size "
            "(F.adaptive_max_pool2d), take log softmax over all positions of each map, "
            "and average -log A over every masked position of every class map."
        )
    _same_gradients(
        value,
        [cams],
        expected,
        [ref_cams],
        "the CAMs",
        _DETACHED,
        "the value is right but its gradient is not: keep the whole loss one differentiable "
        "expression of the CAMs.",
    )
    _empty_batch_gives_zero(student, start, masks, "mask")
    return "your loss and its gradient equal the kit's, and a batch without masks gives 0."


def _step_batch():
    generator = torch.Generator().manual_seed(6)
    images = torch.rand(8, 1, 32, 32, generator=generator)
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    masks = torch.cat([_masks(4), _masks(4, empty=(0, 2))])
    return images, labels, masks


def _fresh_step_model():
    torch.manual_seed(7)
    model = CAMNet("tiny", num_classes=2, pooling="softmax")
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _reference_step(model, images, labels, masks, optimizer, lam, backward_on=None):
    out = model(images)
    ce = F.cross_entropy(out.logits, labels)
    loss = ce + lam * attention_guidance_loss(out.cams, masks)
    optimizer.zero_grad()
    (loss if backward_on is None else backward_on(ce, loss)).backward()
    optimizer.step()
    return loss


def _record_calls(model, optimizer) -> list[str]:
    """The order of zero_grad, backward and step during the student's step (for the hints)."""
    events: list[str] = []
    for owner in (optimizer, model):
        method = owner.zero_grad

        def zero_grad(*args, _method=method, **kwargs):
            events.append("zero_grad")
            return _method(*args, **kwargs)

        owner.zero_grad = zero_grad
    step = optimizer.step

    def recorded_step(*args, **kwargs):
        events.append("step")
        return step(*args, **kwargs)

    optimizer.step = recorded_step
    model.classifier.weight.register_post_accumulate_grad_hook(lambda _: events.append("backward"))
    return events


def _order_hint(events: list[str]) -> str | None:
    """The mistake in the order of one step's calls, if there is one."""
    if "backward" not in events:
        return (
            "the gradients were never computed: call backward() on the loss before the "
            "optimizer's step."
        )
    if "step" not in events:
        return "the optimizer never took its step: call optimizer.step() after backward()."
    first_backward = events.index("backward")
    if "step" not in events[first_backward:]:
        return "the optimizer steps before backward(): compute the gradients first, then step."
    if "zero_grad" in events[first_backward : events.index("step", first_backward)]:
        return (
            "zero_grad() between backward() and step() clears the gradients the step needs: "
            "clear them first, then backward, then step."
        )
    if events.count("step") > 1:
        return "the optimizer stepped more than once: take exactly one step per call."
    if events.count("backward") > 1:
        return "backward() ran more than once: call it once, on CE + lam * L_att."
    return None


def _same_weights(model, weights) -> bool:
    return all(
        torch.allclose(a, b, atol=1e-5, rtol=1e-4)
        for a, b in zip(model.parameters(), weights, strict=True)
    )


@_check("training step", uses=((train, "training_step"), (train, "fit")))
def check_training_step(student) -> str:
    """fn(model, images, labels, masks, optimizer, lam) -> the loss; one SGD step."""
    images, labels, masks = _step_batch()
    lam = 2.0
    reference, ref_opt = _fresh_step_model()
    expected, weights = [], []
    for _ in range(2):
        expected.append(_reference_step(reference, images, labels, masks, ref_opt, lam).item())
        weights.append([p.detach().clone() for p in reference.parameters()])
    model, optimizer = _fresh_step_model()
    events = _record_calls(model, optimizer)
    before = [p.detach().clone() for p in model.parameters()]
    first = student(model, images.clone(), labels.clone(), masks.clone(), optimizer, lam)
    if all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)):
        raise Hint(
            _order_hint(events)
            or "the weights did not change: compute the gradients (backward) and let the "
            "optimizer take its step."
        )
    if first is None or first is Ellipsis:
        raise Hint("your step trains but returns nothing; return the loss.")
    first = _number(first, "the loss, one number")
    if not math.isclose(first, expected[0], rel_tol=1e-4, abs_tol=1e-5):
        out = _fresh_step_model()[0](images)
        ce = F.cross_entropy(out.logits, labels).item()
        att = attention_guidance_loss(out.cams, masks).item()
        wrong = [
            (ce, "the loss is the cross-entropy alone: add lam times the attention loss."),
            (att, "the loss is missing the cross-entropy term."),
            (lam * att, "the loss is missing the cross-entropy term."),
            (ce + att, "the attention loss must be weighted by lam."),
            (lam * ce + att, "lam weighs the attention loss, not the cross-entropy."),
            (ce - lam * att, "the attention loss is added (it is positive), not subtracted."),
        ]
        for loss, message in wrong:
            if math.isclose(first, loss, rel_tol=1e-4):
                raise Hint(message)
        raise Hint(
            f"the loss of the first step is {first:.4f} where CE + lam * L_att is "
            f"{expected[0]:.4f}."
        )
    if not _same_weights(model, weights[0]):
        hint = _order_hint(events)
        if hint is None:
            ce_only, ce_opt = _fresh_step_model()
            _reference_step(ce_only, images, labels, masks, ce_opt, lam, lambda ce, loss: ce)
            if _same_weights(model, [p.detach() for p in ce_only.parameters()]):
                hint = "backward() ran on the cross-entropy alone: call it on the whole loss."
        raise Hint(
            hint
            or "the loss is right but the weights moved differently: call backward on that "
            "loss and step the optimizer once per call."
        )
    events.clear()
    student(model, images.clone(), labels.clone(), masks.clone(), optimizer, lam)
    if not _same_weights(model, weights[1]):
        raise Hint(
            _order_hint(events)
            or "the first step is right but the second is not: clear the old gradients "
            "(optimizer.zero_grad()) before each backward pass."
        )
    return "two steps on a fixed batch give the reference losses and weights."
