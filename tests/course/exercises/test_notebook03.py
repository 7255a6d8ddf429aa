"""The checks of notebook 03's training (agkit.course.exercises.notebook03)."""

import pytest
import torch
import torch.nn.functional as F
from exercise_testing import blank, fails_with, passes

from agkit.course import exercises
from agkit.method.loss import attention_guidance_loss

# ---------------------------------------------------------------------------------- 03


def softmax_pool(cams):
    flat = cams.flatten(2)
    return (flat.softmax(2) * flat).sum(2)


def softmax_pool_einsum(cams):
    flat = cams.flatten(2)
    weights = torch.exp(flat - flat.amax(2, keepdim=True))
    weights = weights / weights.sum(2, keepdim=True)
    return torch.einsum("bnp,bnp->bn", weights, flat)


def softmax_pool_loop(cams):
    rows = []
    for image in cams:
        rows.append(torch.stack([(m.flatten().softmax(0) * m.flatten()).sum() for m in image]))
    return torch.stack(rows)


@pytest.mark.parametrize("fn", [softmax_pool, softmax_pool_einsum, softmax_pool_loop])
def test_softmax_pooling_check_accepts_other_right_answers(fn):
    passes(exercises.check_softmax_pooling, fn)


def test_softmax_pooling_check_names_the_mistakes():
    check = exercises.check_softmax_pooling
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda c: c.mean(dim=(2, 3)), "average pooling")
    fails_with(check, lambda c: (c.softmax(-1) * c).sum(dim=(2, 3)), "all h x w positions")
    fails_with(check, lambda c: (c.softmax(1) * c).sum(dim=(2, 3)), "not over the classes")
    fails_with(check, lambda c: c.flatten(2).logsumexp(2), "log-sum-exp")
    fails_with(check, lambda c: softmax_pool(c).detach(), "no gradient reaches")


def test_miss_softmax_pooling_detached_weights():
    def detached(cams):
        flat = cams.flatten(2)
        return (flat.softmax(2).detach() * flat).sum(2)

    fails_with(exercises.check_softmax_pooling, detached, "must stay in the graph")


def att_loss(cams, masks):
    small = F.adaptive_max_pool2d(masks, cams.shape[-2:]).flatten(2)
    log_a = cams.flatten(2).log_softmax(2)
    area = small.sum() * cams.shape[1]
    return -(small * log_a).sum() / area if area > 0 else cams.sum() * 0


def att_loss_where(cams, masks):
    small = F.adaptive_max_pool2d(masks, cams.shape[-2:]).flatten(2).expand(-1, cams.shape[1], -1)
    log_a = torch.log_softmax(cams.flatten(2), dim=-1)
    picked = log_a[small > 0]
    return -picked.mean() if picked.numel() else (cams * 0).sum()


def att_loss_loop(cams, masks):
    total, count = cams.new_zeros(()), 0
    for k in range(len(cams)):
        small = F.adaptive_max_pool2d(masks[k : k + 1], cams.shape[-2:])[0, 0].flatten()
        for c in range(cams.shape[1]):
            total = total - (small * cams[k, c].flatten().log_softmax(0)).sum()
            count += int(small.sum())
    return total / count if count else total


@pytest.mark.parametrize("fn", [att_loss, att_loss_where, att_loss_loop])
def test_attention_loss_check_accepts_other_right_answers(fn):
    passes(exercises.check_attention_loss, fn)


def test_attention_loss_check_names_the_mistakes():
    check = exercises.check_attention_loss
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda c, m: -att_loss(c, m), "sign")
    fails_with(check, lambda c, m: att_loss(c, m) * 3, "differs")

    def naive(c, m):
        small = F.adaptive_max_pool2d(m, c.shape[-2:])
        return -(small.flatten(2) * c.flatten(2).log_softmax(2)).sum() / (small.sum() * c.shape[1])

    fails_with(check, naive, "gives NaN", "exactly 0")

    def by_images(c, m):
        small = F.adaptive_max_pool2d(m, c.shape[-2:]).flatten(2)
        return -(small * c.flatten(2).log_softmax(2)).sum() / (c.shape[0] * c.shape[1])

    fails_with(check, by_images, "not by the number of images")

    def average_shrink(c, m):
        share = F.adaptive_avg_pool2d(m, c.shape[-2:]).flatten(2)
        total = share.sum() * c.shape[1]
        return -(share * c.flatten(2).log_softmax(2)).sum() / total if total else c.sum() * 0

    fails_with(check, average_shrink, "adaptive_max_pool2d")

    def crashes(c, m):
        small = F.adaptive_max_pool2d(m, c.shape[-2:]).flatten(2)
        assert small.sum() > 0, "no mask"
        return att_loss(c, m)

    fails_with(check, crashes, "on a batch without any mask, your function raised AssertionError")


def test_miss_attention_loss_nan_to_num_guard_has_nan_gradients():
    def nan_to_num(cams, masks):
        small = F.adaptive_max_pool2d(masks, cams.shape[-2:]).flatten(2)
        loss = -(small * cams.flatten(2).log_softmax(2)).sum() / (small.sum() * cams.shape[1])
        return torch.nan_to_num(loss)

    fails_with(exercises.check_attention_loss, nan_to_num, "its gradient is NaN")


def step(model, images, labels, masks, optimizer, lam):
    out = model(images)
    loss = F.cross_entropy(out.logits, labels) + lam * attention_guidance_loss(out.cams, masks)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_own_loss(model, images, labels, masks, optimizer, lam):
    optimizer.zero_grad(set_to_none=False)
    logits, cams = model(images)
    loss = F.cross_entropy(logits, labels) + lam * att_loss(cams, masks)
    loss.backward()
    optimizer.step()
    return loss  # a tensor is fine too


def step_manual_zero(model, images, labels, masks, optimizer, lam):
    for p in model.parameters():
        p.grad = None
    out = model(images)
    ce = F.nll_loss(F.log_softmax(out.logits, dim=1), labels)
    loss = ce + lam * att_loss_loop(out.cams, masks)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@pytest.mark.parametrize("fn", [step, step_own_loss, step_manual_zero])
def test_training_step_check_accepts_other_right_answers(fn):
    passes(exercises.check_training_step, fn)


def step_with(order, lam_used=None):
    """A step whose calls come in ``order`` (names of 'zero', 'backward', 'step')."""

    def fn(model, images, labels, masks, optimizer, lam):
        out = model(images)
        weight = lam if lam_used is None else lam_used
        loss = F.cross_entropy(out.logits, labels) + weight * attention_guidance_loss(
            out.cams, masks
        )
        for call in order:
            {"zero": optimizer.zero_grad, "backward": loss.backward, "step": optimizer.step}[call]()
        return loss.item()

    return fn


def test_training_step_check_names_the_mistakes():
    check = exercises.check_training_step
    fails_with(check, blank, "gradients were never computed")
    fails_with(check, step_with(["backward", "step"]), "zero_grad")
    fails_with(check, step_with(["zero", "backward", "step"], 0.0), "cross-entropy alone")
    fails_with(check, step_with(["zero", "backward", "step"], 1.0), "weighted by lam")
    fails_with(check, step_with(["zero", "backward"]), "never took its step")
    fails_with(check, step_with(["zero", "step", "backward"]), "steps before backward")
    fails_with(check, step_with(["zero", "backward", "step", "step"]), "more than once")

    def no_return(*args):
        step(*args)

    fails_with(check, no_return, "returns nothing")


def test_miss_training_step_zero_grad_between_backward_and_step():
    message = fails_with(
        exercises.check_training_step,
        step_with(["backward", "zero", "step"]),
        "zero_grad() between backward() and step()",
    )
    assert "did not change" not in message
