"""The checks of notebook 06 (agkit.course.exercises.notebook06)."""

import pytest
import torch
import torch.nn.functional as F
from exercise_testing import blank, fails_with, passes

from agkit.course import exercises

# ---------------------------------------------------------------------------------- 06


def forbidden_loss(cams, region):
    coverage = F.adaptive_avg_pool2d(region.float(), cams.shape[-2:])
    attention = cams.flatten(2).softmax(dim=2).view_as(cams)
    mass = (attention * coverage).flatten(2).sum(dim=2)  # B x N
    present = region.flatten(1).amax(dim=1) > 0
    if not present.any():
        return cams.sum() * 0.0
    return -torch.log1p(-mass[present]).mean()


def forbidden_weighted(cams, region):
    coverage = F.adaptive_avg_pool2d(region, cams.shape[-2:]).flatten(2)
    mass = torch.einsum("bnp,bop->bn", cams.flatten(2).softmax(-1), coverage)
    present = (region.flatten(1).sum(1) > 0).float()[:, None].expand_as(mass)
    count = present.sum()
    return -(torch.log(1 - mass) * present).sum() / count.clamp(min=1)


def forbidden_loop(cams, region):
    terms = []
    for k in range(len(cams)):
        if region[k].sum() == 0:
            continue
        share = F.adaptive_avg_pool2d(region[k], cams.shape[-2:])[0]
        for c in range(cams.shape[1]):
            mass = (cams[k, c].flatten().softmax(0) * share.flatten()).sum()
            terms.append(-torch.log(1 - mass))
    return torch.stack(terms).mean() if terms else cams.sum() * 0


@pytest.mark.parametrize("fn", [forbidden_loss, forbidden_weighted, forbidden_loop])
def test_forbidden_loss_check_accepts_other_right_answers(fn):
    passes(exercises.check_forbidden_loss, fn)


def test_forbidden_loss_check_names_the_mistakes():
    check = exercises.check_forbidden_loss
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda c, r: -forbidden_loss(c, r), "sign")

    def parts(cams, region, cover=F.adaptive_avg_pool2d):
        attention = cams.flatten(2).softmax(dim=2).view_as(cams)
        mass = (attention * cover(region, cams.shape[-2:])).flatten(2).sum(dim=2)
        return mass, region.flatten(1).amax(dim=1) > 0

    def pulls_in(cams, region):
        mass, present = parts(cams, region)
        return -torch.log(mass[present]).mean()

    def every_image(cams, region):
        return -torch.log1p(-parts(cams, region)[0]).mean()

    def whole_cells(cams, region):
        mass, present = parts(cams, region, F.adaptive_max_pool2d)
        return -torch.log1p(-mass[present]).mean()

    def nan_when_empty(cams, region):
        mass, present = parts(cams, region)
        return -torch.log1p(-mass[present]).mean()  # the mean of nothing is NaN

    def detached_mass(cams, region):
        mass, present = parts(cams, region)
        return -torch.log1p(-mass[present].detach()).mean() + 0 * cams.sum()

    fails_with(check, pulls_in, "1 - mass")
    fails_with(check, every_image, "images that have one")
    fails_with(check, whole_cells, "adaptive_avg_pool2d")
    fails_with(check, nan_when_empty, "gives NaN", "exactly 0")
    fails_with(check, detached_mass, "gradient is not")


def test_miss_forbidden_loss_nan_to_num_guard_has_nan_gradients():
    def nan_to_num(cams, region):
        share = F.adaptive_avg_pool2d(region, cams.shape[-2:])
        mass = (cams.flatten(2).softmax(2).view_as(cams) * share).flatten(2).sum(2)
        present = (region.flatten(1).amax(1) > 0).float()[:, None]
        loss = -(torch.log1p(-mass) * present).sum() / (present.sum() * cams.shape[1])
        return torch.nan_to_num(loss)

    fails_with(exercises.check_forbidden_loss, nan_to_num, "its gradient is NaN")


def rrr_penalty(model, images, region):
    images = images.detach().requires_grad_(True)
    log_probs = F.log_softmax(model(images).logits, dim=1).sum()
    (gradient,) = torch.autograd.grad(log_probs, images, create_graph=True)
    return (region * gradient).pow(2).sum() / images.shape[0]


def rrr_einsum(model, images, region):
    copy = images.clone().detach().requires_grad_()
    log_probs = model(copy).logits.log_softmax(-1)
    (gradient,) = torch.autograd.grad(log_probs.sum(), [copy], create_graph=True)
    masked = gradient * region.expand_as(gradient)
    return torch.einsum("bchw,bchw->", masked, masked) / len(images)


def rrr_per_image(model, images, region):
    total = 0
    for k in range(len(images)):
        x = images[k : k + 1].detach().requires_grad_(True)
        logp = torch.log(torch.softmax(model(x).logits, dim=1)).sum()
        (gradient,) = torch.autograd.grad(logp, x, create_graph=True)
        total = total + ((region[k : k + 1] * gradient) ** 2).sum()
    return total / len(images)


@pytest.mark.parametrize("fn", [rrr_penalty, rrr_einsum, rrr_per_image])
def test_rrr_penalty_check_accepts_other_right_answers(fn):
    passes(exercises.check_rrr_penalty, fn)


def test_rrr_penalty_check_names_the_mistakes():
    check = exercises.check_rrr_penalty
    fails_with(check, blank, "returned nothing")

    def penalty(model, images, region, of=lambda logits: F.log_softmax(logits, 1).sum(), **kw):
        images = images.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(of(model(images).logits), images, **kw)
        return gradient

    def from_logits(model, images, region):
        gradient = penalty(model, images, region, of=lambda z: z.sum(), create_graph=True)
        return (region * gradient).pow(2).sum() / len(images)

    def everywhere(model, images, region):
        return penalty(model, images, region, create_graph=True).pow(2).sum() / len(images)

    def mean(model, images, region):
        return (region * penalty(model, images, region, create_graph=True)).pow(2).mean()

    def no_graph(model, images, region):
        return (region * penalty(model, images, region)).pow(2).sum() / len(images)

    def in_place(model, images, region):
        images.requires_grad_(True)
        log_probs = F.log_softmax(model(images).logits, dim=1).sum()
        (gradient,) = torch.autograd.grad(log_probs, images, create_graph=True)
        return (region * gradient).pow(2).sum() / images.shape[0]

    fails_with(check, from_logits, "log-probabilities")
    fails_with(check, everywhere, "multiply the gradient by the region")
    fails_with(check, mean, "number of images only")
    fails_with(check, no_graph, "create_graph=True")
    fails_with(check, in_place, "caller's images")
