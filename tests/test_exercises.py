"""The instant checks of the notebook exercises: right answers pass, blanks and typical
mistakes fail with the sentence meant for them."""

import numpy as np
import torch
import torch.nn.functional as F

from agkit import exercises, metrics
from agkit.losses import attention_guidance_loss


def blank(*args): ...  # what an unfilled exercise returns


def verdict(check, fn):
    passed, message = check.verdict(fn)
    assert message.splitlines() == [message], "one line"
    return passed, message


def fails_with(check, fn, words):
    passed, message = verdict(check, fn)
    assert not passed and message.startswith("✗"), message
    assert words in message, message


def passes(check, fn):
    passed, message = verdict(check, fn)
    assert passed and message.startswith("✓"), message


# ---------------------------------------------------------------------------------- 01


def cam(features, weight, bias):
    return torch.einsum("nk,bkhw->bnhw", weight, features) + bias[None, :, None, None]


def test_cam_check():
    passes(exercises.check_cam, cam)
    fails_with(exercises.check_cam, blank, "returned nothing")
    fails_with(
        exercises.check_cam,
        lambda f, w, b: torch.einsum("nk,bkhw->bnhw", w, f),
        "add the class's bias",
    )
    fails_with(
        exercises.check_cam,
        lambda f, w, b: torch.einsum("nk,bkhw->bhwn", w, f),
        "should have shape",
    )
    fails_with(exercises.check_cam, lambda f, w, b: cam(f, w, b).detach(), "no gradient")
    fails_with(exercises.check_cam, lambda f, w, b: cam(f, w, b) * 2, "differ from CAMNet")
    fails_with(exercises.check_cam, lambda f, w, b: 1 / 0, "raised ZeroDivisionError")
    fails_with(exercises.check_cam, None, "pass your function")


def test_check_prints_one_line(capsys):
    exercises.check_cam(cam)
    assert capsys.readouterr().out.startswith("✓ CAM from features")


def test_average_pooling_check():
    passes(exercises.check_average_pooling, lambda cams: cams.mean(dim=(2, 3)))
    fails_with(exercises.check_average_pooling, blank, "returned nothing")
    fails_with(exercises.check_average_pooling, lambda cams: cams.sum(dim=(2, 3)), "summed")
    fails_with(exercises.check_average_pooling, lambda cams: cams.mean(dim=1), "shape")
    fails_with(exercises.check_average_pooling, lambda cams: cams.amax(dim=(2, 3)), "differ")


def mass(cams, masks, classes):
    maps = cams[torch.arange(len(cams)), classes]
    small = F.adaptive_max_pool2d(masks, maps.shape[-2:])[:, 0]
    return (maps.flatten(1).softmax(1) * small.flatten(1)).sum(1)


def test_mass_in_mask_check():
    passes(exercises.check_mass_in_mask, mass)
    fails_with(exercises.check_mass_in_mask, blank, "returned nothing")
    fails_with(
        exercises.check_mass_in_mask,
        lambda c, m, k: mass(c, m, torch.zeros_like(k)),
        "same class for every image",
    )

    def raw(c, m, k):
        return (
            c[torch.arange(len(c)), k].flatten(1) * F.adaptive_max_pool2d(m, (8, 8)).flatten(1)
        ).sum(1)

    fails_with(exercises.check_mass_in_mask, raw, "between 0 and 1")

    def by_row(c, m, k):
        rows = c[torch.arange(len(c)), k].softmax(-1)
        return (rows * F.adaptive_max_pool2d(m, (8, 8))[:, 0]).flatten(1).sum(1)

    fails_with(exercises.check_mass_in_mask, by_row, "all h x w positions")


# ---------------------------------------------------------------------------------- 02


def box(b, height, width):
    x0, y0, x1, y1 = b
    mask = torch.zeros(height, width)
    mask[y0:y1, x0:x1] = 1
    return mask


def test_box_mask_check():
    passes(exercises.check_box_mask, box)
    passes(exercises.check_box_mask, lambda b, h, w: box(b, h, w).numpy())  # NumPy is fine
    fails_with(exercises.check_box_mask, blank, "returned nothing")
    fails_with(
        exercises.check_box_mask,
        lambda b, h, w: box((b[1], b[0], b[3], b[2]), h, w),
        "x and y are swapped",
    )
    fails_with(
        exercises.check_box_mask,
        lambda b, h, w: box((b[0], b[1], b[2] + 1, b[3] + 1), h, w),
        "exclusive ends",
    )
    fails_with(exercises.check_box_mask, lambda b, h, w: torch.zeros(h, w), "empty")
    fails_with(exercises.check_box_mask, lambda b, h, w: torch.zeros(w, h), "shape")


def pointing(cams, masks, classes):
    maps = F.interpolate(
        cams[torch.arange(len(cams)), classes][:, None],
        size=masks.shape[-2:],
        mode="bicubic",
        align_corners=False,
    ).flatten(1)
    return masks.flatten(1)[torch.arange(len(cams)), maps.argmax(1)] > 0


def test_pointing_game_check():
    passes(exercises.check_pointing_game, pointing)
    passes(exercises.check_pointing_game, lambda *a: pointing(*a).float())  # 0/1 is fine
    fails_with(exercises.check_pointing_game, blank, "returned nothing")
    fails_with(
        exercises.check_pointing_game, lambda c, m, k: pointing(c, m, 1 - k), "scored differently"
    )
    fails_with(
        exercises.check_pointing_game, lambda c, m, k: pointing(c, m, k) * 2.0, "hit or a miss"
    )


def iou(a, b):
    union = ((a + b) > 0).sum()
    return float((a * b).sum() / union) if union else 0.0


def test_mask_iou_check():
    passes(exercises.check_mask_iou, iou)
    fails_with(exercises.check_mask_iou, blank, "returned nothing")
    fails_with(
        exercises.check_mask_iou,
        lambda a, b: float(2 * (a * b).sum() / (a.sum() + b.sum())),
        "Dice",
    )
    fails_with(
        exercises.check_mask_iou,
        lambda a, b: float((a * b).sum() / (a.sum() + b.sum())),
        "counts the shared pixels twice",
    )
    fails_with(
        exercises.check_mask_iou, lambda a, b: float((a * b).sum() / ((a + b) > 0).sum()), "NaN"
    )


# ---------------------------------------------------------------------------------- 03


def softmax_pool(cams):
    flat = cams.flatten(2)
    return (flat.softmax(2) * flat).sum(2)


def test_softmax_pooling_check():
    passes(exercises.check_softmax_pooling, softmax_pool)
    fails_with(exercises.check_softmax_pooling, blank, "returned nothing")
    fails_with(exercises.check_softmax_pooling, lambda c: c.mean(dim=(2, 3)), "average pooling")
    fails_with(
        exercises.check_softmax_pooling,
        lambda c: (c.softmax(-1) * c).sum(dim=(2, 3)),
        "all h x w positions",
    )
    fails_with(exercises.check_softmax_pooling, lambda c: softmax_pool(c).detach(), "gradient")


def att_loss(cams, masks):
    small = F.adaptive_max_pool2d(masks, cams.shape[-2:]).flatten(2)
    log_a = cams.flatten(2).log_softmax(2)
    area = small.sum() * cams.shape[1]
    return -(small * log_a).sum() / area if area > 0 else cams.sum() * 0


def test_attention_loss_check():
    passes(exercises.check_attention_loss, att_loss)
    passes(exercises.check_attention_loss, attention_guidance_loss)
    fails_with(exercises.check_attention_loss, blank, "returned nothing")
    fails_with(exercises.check_attention_loss, lambda c, m: -att_loss(c, m), "sign")
    fails_with(exercises.check_attention_loss, lambda c, m: att_loss(c, m) * 3, "differs")

    def naive(c, m):
        small = F.adaptive_max_pool2d(m, c.shape[-2:])
        return -(small.flatten(2) * c.flatten(2).log_softmax(2)).sum() / (small.sum() * c.shape[1])

    fails_with(exercises.check_attention_loss, naive, "exactly 0 (not NaN)")


def step(model, images, labels, masks, optimizer, lam):
    out = model(images)
    loss = F.cross_entropy(out.logits, labels) + lam * attention_guidance_loss(out.cams, masks)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def test_training_step_check():
    passes(exercises.check_training_step, step)
    fails_with(exercises.check_training_step, blank, "did not change")

    def no_zero_grad(model, images, labels, masks, optimizer, lam):
        out = model(images)
        loss = F.cross_entropy(out.logits, labels) + lam * attention_guidance_loss(out.cams, masks)
        loss.backward()
        optimizer.step()
        return loss.item()

    fails_with(exercises.check_training_step, no_zero_grad, "zero_grad")
    fails_with(
        exercises.check_training_step,
        lambda m, x, y, s, o, lam: step(m, x, y, s, o, 0.0),
        "cross-entropy alone",
    )
    fails_with(
        exercises.check_training_step,
        lambda m, x, y, s, o, lam: step(m, x, y, s, o, 1.0),
        "weighted by lam",
    )

    def no_return(*args):
        step(*args)

    fails_with(exercises.check_training_step, no_return, "returns nothing")


# ---------------------------------------------------------------------------------- 04


def bootstrap(values, draws, seed):
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(draws, len(values))).mean(axis=1)
    return tuple(np.quantile(means, [0.025, 0.975]))


def test_bootstrap_interval_check():
    passes(exercises.check_bootstrap_interval, bootstrap)
    fails_with(exercises.check_bootstrap_interval, blank, "returned nothing")
    fails_with(
        exercises.check_bootstrap_interval,
        lambda v, d, s: (np.mean(v) - 1.96 * np.std(v), np.mean(v) + 1.96 * np.std(v)),
        "never leave [min, max]",
    )
    # with three values the bootstrap interval is the min..max range
    passes(exercises.check_bootstrap_interval, lambda v, d, s: (min(v), max(v)))
    fails_with(
        exercises.check_bootstrap_interval,
        lambda v, d, s: (np.mean(v) - 0.01, np.mean(v) + 0.01),
        "quantiles",
    )
    fails_with(exercises.check_bootstrap_interval, lambda v, d, s: (0.9, 1.0), "contain the mean")


def box_from_mask(masks):
    out = torch.zeros_like(masks)
    for k, mask in enumerate(masks[:, 0]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(ys):
            out[k, 0, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = 1
    return out


def test_box_from_mask_check():
    passes(exercises.check_box_from_mask, box_from_mask)
    fails_with(exercises.check_box_from_mask, blank, "returned nothing")

    def exclusive(masks):
        out = box_from_mask(masks)
        for k in range(len(out)):  # forget the last row and column
            rows = torch.nonzero(out[k, 0].sum(1)).flatten()
            cols = torch.nonzero(out[k, 0].sum(0)).flatten()
            if len(rows):
                out[k, 0, rows.max()] = 0
                out[k, 0, :, cols.max()] = 0
        return out

    fails_with(exercises.check_box_from_mask, exclusive, "too small")
    fails_with(exercises.check_box_from_mask, torch.ones_like, "empty mask must stay empty")


# ---------------------------------------------------------------------------------- 05


def test_sensitivity_specificity_check():
    def right(labels, predicted):
        return (
            ((predicted == 1) & (labels == 1)).sum() / (labels == 1).sum(),
            ((predicted == 0) & (labels == 0)).sum() / (labels == 0).sum(),
        )

    passes(exercises.check_sensitivity_specificity, right)
    fails_with(exercises.check_sensitivity_specificity, blank, "returned nothing")
    fails_with(
        exercises.check_sensitivity_specificity, lambda y, p: right(y, p)[::-1], "other order"
    )
    fails_with(
        exercises.check_sensitivity_specificity,
        lambda y, p: (((p == 1) & (y == 1)).sum() / (p == 1).sum(), right(y, p)[1]),
        "sensitivity is",
    )


def test_uniform_chance_check():
    def right(masks, cam_size):
        small = F.adaptive_max_pool2d(masks, cam_size).flatten(1)
        annotated = masks.flatten(1).sum(1) > 0
        return small.mean(1)[annotated].mean()

    passes(exercises.check_uniform_chance, right)
    fails_with(exercises.check_uniform_chance, blank, "returned nothing")
    fails_with(
        exercises.check_uniform_chance,
        lambda m, s: F.adaptive_max_pool2d(m, s).flatten(1).mean(1).mean(),
        "leave out the images without a mask",
    )
    fails_with(
        exercises.check_uniform_chance,
        lambda m, s: m[m.flatten(1).sum(1) > 0].flatten(1).mean(1).mean(),
        "shrink",
    )
    assert metrics.chance_levels  # the reference the check compares with


def test_a_check_leaves_the_random_state_of_the_notebook_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    exercises.check_cam.verdict(cam)  # seeds its own model and inputs inside
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------------- 06


def forbidden_loss(cams, region):
    coverage = F.adaptive_avg_pool2d(region.float(), cams.shape[-2:])
    attention = cams.flatten(2).softmax(dim=2).view_as(cams)
    mass = (attention * coverage).flatten(2).sum(dim=2)  # B x N
    present = region.flatten(1).amax(dim=1) > 0
    if not present.any():
        return cams.sum() * 0.0
    return -torch.log1p(-mass[present]).mean()


def test_forbidden_loss_check():
    passes(exercises.check_forbidden_loss, forbidden_loss)
    fails_with(exercises.check_forbidden_loss, blank, "returned nothing")
    fails_with(exercises.check_forbidden_loss, lambda c, r: -forbidden_loss(c, r), "sign")

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

    fails_with(exercises.check_forbidden_loss, pulls_in, "1 - mass")
    fails_with(exercises.check_forbidden_loss, every_image, "images that have one")
    fails_with(exercises.check_forbidden_loss, whole_cells, "adaptive_avg_pool2d")
    fails_with(exercises.check_forbidden_loss, nan_when_empty, "exactly 0")


def rrr_penalty(model, images, region):
    images = images.detach().requires_grad_(True)
    log_probs = F.log_softmax(model(images).logits, dim=1).sum()
    (gradient,) = torch.autograd.grad(log_probs, images, create_graph=True)
    return (region * gradient).pow(2).sum() / images.shape[0]


def test_rrr_penalty_check():
    passes(exercises.check_rrr_penalty, rrr_penalty)
    fails_with(exercises.check_rrr_penalty, blank, "returned nothing")

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

    fails_with(exercises.check_rrr_penalty, from_logits, "log-probabilities")
    fails_with(exercises.check_rrr_penalty, everywhere, "multiply the gradient by the region")
    fails_with(exercises.check_rrr_penalty, mean, "number of images only")
    fails_with(exercises.check_rrr_penalty, no_graph, "create_graph=True")
    fails_with(exercises.check_rrr_penalty, in_place, "caller's images")
