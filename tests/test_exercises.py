"""The instant checks of the notebook exercises: right answers written in other ways pass,
blanks and typical mistakes fail with the sentence that names them, a call to the kit's own
implementation is caught, and an error in the student's code points at their line.

The misses found when the checks were tried as students would (issue 21) each have their
own test, ``test_miss_*``."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agkit.course import exercises
from agkit.method.loss import attention_guidance_loss


def blank(*args): ...  # what an unfilled exercise returns


def verdict(check, fn):
    passed, message = check.verdict(fn)
    assert message.splitlines() == [message], "one line"
    return passed, message


def fails_with(check, fn, *words):
    passed, message = verdict(check, fn)
    assert not passed and message.startswith("✗"), message
    for w in words:
        assert w in message, message
    return message


def passes(check, fn):
    passed, message = verdict(check, fn)
    assert passed and message.startswith("✓"), message


def cell(source: str, name: str, filename: str = "/tmp/ipykernel_1/cell.py"):
    """The function ``name`` defined by a notebook cell's ``source``, in its own globals (as
    a notebook's namespace), compiled under a cell-like file name."""
    namespace = {"torch": torch, "F": F, "np": np}
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


# ---------------------------------------------------------------------------------- 01


def cam(features, weight, bias):
    return torch.einsum("nk,bkhw->bnhw", weight, features) + bias[None, :, None, None]


def cam_matmul(features, weight, bias):
    b, k, h, w = features.shape
    flat = weight @ features.flatten(2)  # B x N x (h*w)
    return (flat + bias[:, None]).view(b, -1, h, w)


def cam_conv(features, weight, bias):
    return F.conv2d(features, weight[:, :, None, None], bias)


def cam_loop(features, weight, bias):
    maps = [
        sum(weight[c, k] * features[:, k] for k in range(weight.shape[1])) + bias[c]
        for c in range(weight.shape[0])
    ]
    return torch.stack(maps, dim=1)


@pytest.mark.parametrize("fn", [cam, cam_matmul, cam_conv, cam_loop])
def test_cam_check_accepts_other_right_answers(fn):
    passes(exercises.check_cam, fn)


def test_cam_check_names_the_mistakes():
    check = exercises.check_cam
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda f, w, b: torch.einsum("nk,bkhw->bnhw", w, f), "add the class's bias")
    fails_with(check, lambda f, w, b: torch.einsum("nk,bkhw->bhwn", w, f) + b, "should have shape")
    fails_with(check, lambda f, w, b: cam(f, w, b).relu(), "no ReLU")
    fails_with(check, lambda f, w, b: cam(f, w, b).detach(), "no gradient reaches")
    fails_with(check, lambda f, w, b: cam(f, w, b) * 2, "differ from CAMNet")
    fails_with(check, lambda f, w, b: cam(f, w, b.detach()), "no gradient reaches")
    fails_with(check, None, "pass your function")


def test_miss_cam_numpy_wrapped_in_a_tensor_that_requires_grad():
    def numpy_cam(features, weight, bias):
        f, w, b = (t.detach().numpy() for t in (features, weight, bias))
        cams = np.einsum("nk,bkhw->bnhw", w, f) + b[None, :, None, None]
        return torch.tensor(cams, requires_grad=True)

    fails_with(exercises.check_cam, numpy_cam, "no gradient reaches the features")


def test_check_prints_one_line(capsys):
    exercises.check_cam(cam)
    assert capsys.readouterr().out.startswith("✓ CAM from features")


def test_average_pooling_check_accepts_other_right_answers():
    check = exercises.check_average_pooling
    passes(check, lambda cams: cams.mean(dim=(2, 3)))
    passes(check, lambda cams: cams.sum(dim=(2, 3)) / (cams.shape[2] * cams.shape[3]))
    passes(check, lambda cams: F.adaptive_avg_pool2d(cams, 1)[:, :, 0, 0])
    passes(check, lambda cams: cams.flatten(2).mean(-1))


def test_average_pooling_check_names_the_mistakes():
    check = exercises.check_average_pooling
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda cams: cams.sum(dim=(2, 3)), "summed")
    fails_with(check, lambda cams: cams.mean(dim=1), "shape")
    fails_with(check, lambda cams: cams.amax(dim=(2, 3)), "max pooling")
    fails_with(check, lambda cams: cams.mean(dim=(2, 3)).detach(), "no gradient reaches")
    fails_with(
        check,
        lambda cams: torch.tensor(cams.detach().numpy().mean(axis=(2, 3)), requires_grad=True),
        "no gradient reaches",
    )


def mass(cams, masks, classes):
    maps = cams[torch.arange(len(cams)), classes]
    small = F.adaptive_max_pool2d(masks, maps.shape[-2:])[:, 0]
    return (maps.flatten(1).softmax(1) * small.flatten(1)).sum(1)


def mass_loop_numpy(cams, masks, classes):
    out = []
    for k in range(len(cams)):
        m = cams[k, classes[k]].numpy().astype(np.float64)
        attention = np.exp(m - m.max())
        attention /= attention.sum()
        h, w = m.shape
        sh, sw = masks.shape[-2] // h, masks.shape[-1] // w
        small = masks[k, 0].numpy().reshape(h, sh, w, sw).max(axis=(1, 3))
        out.append((attention * small).sum())
    return np.array(out)


def mass_gather(cams, masks, classes):
    maps = cams.gather(1, classes[:, None, None, None].expand(-1, 1, *cams.shape[-2:]))
    attention = torch.softmax(maps.flatten(1), dim=1)
    return (attention * F.adaptive_max_pool2d(masks, cams.shape[-2:]).flatten(1)).sum(1)


@pytest.mark.parametrize("fn", [mass, mass_loop_numpy, mass_gather])
def test_mass_in_mask_check_accepts_other_right_answers(fn):
    passes(exercises.check_mass_in_mask, fn)


def test_mass_in_mask_check_names_the_mistakes():
    check = exercises.check_mass_in_mask
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda c, m, k: mass(c, m, torch.zeros_like(k)), "another class")

    def raw(c, m, k):
        small = F.adaptive_max_pool2d(m, (8, 8)).flatten(1)
        return (c[torch.arange(len(c)), k].flatten(1) * small).sum(1)

    fails_with(check, raw, "between 0 and 1")

    def by_row(c, m, k):
        rows = c[torch.arange(len(c)), k].softmax(-1)
        return (rows * F.adaptive_max_pool2d(m, (8, 8))[:, 0]).flatten(1).sum(1)

    fails_with(check, by_row, "all h x w positions")

    def average_shrink(c, m, k):
        maps = c[torch.arange(len(c)), k].flatten(1).softmax(1)
        return (maps * F.adaptive_avg_pool2d(m, (8, 8)).flatten(1)).sum(1)

    fails_with(check, average_shrink, "adaptive_max_pool2d")

    def over_classes(c, m, k):
        attention = c.softmax(dim=1)[torch.arange(len(c)), k]
        return (attention * F.adaptive_max_pool2d(m, (8, 8))[:, 0]).flatten(1).sum(1)

    fails_with(check, over_classes, "not over the classes")


# ---------------------------------------------------------------------------------- 02


def box(b, height, width):
    x0, y0, x1, y1 = b
    mask = torch.zeros(height, width)
    mask[y0:y1, x0:x1] = 1
    return mask


def box_by_comparison(b, height, width):
    rows, cols = torch.arange(height)[:, None], torch.arange(width)[None, :]
    return ((rows >= b[1]) & (rows < b[3]) & (cols >= b[0]) & (cols < b[2])).float()


def box_numpy_loop(b, height, width):
    mask = np.zeros((height, width), dtype=np.uint8)
    for y in range(b[1], b[3]):
        for x in range(b[0], b[2]):
            mask[y, x] = 1
    return mask


@pytest.mark.parametrize("fn", [box, box_by_comparison, box_numpy_loop])
def test_box_mask_check_accepts_other_right_answers(fn):
    passes(exercises.check_box_mask, fn)


def test_box_mask_check_names_the_mistakes():
    check = exercises.check_box_mask
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda b, h, w: box((b[1], b[0], b[3], b[2]), h, w), "x and y are swapped")
    fails_with(check, lambda b, h, w: box((b[0], b[1], b[2] + 1, b[3] + 1), h, w), "exclusive ends")
    fails_with(check, lambda b, h, w: box((b[0], b[1], b[2] - 1, b[3] - 1), h, w), "short")
    fails_with(check, lambda b, h, w: torch.zeros(h, w), "empty")
    fails_with(check, lambda b, h, w: torch.zeros(w, h), "height x width")
    fails_with(check, lambda b, h, w: box(b, h, w) * 255, "only 0 and 1")
    fails_with(
        check,
        lambda b, h, w: box((b[0], b[1], b[0] + b[2], b[1] + b[3]), h, w),
        "not a width and a height",
    )


def test_miss_box_mask_shifted_by_one_pixel_says_shifted():
    message = fails_with(
        exercises.check_box_mask,
        lambda b, h, w: box((b[0] + 1, b[1] + 1, b[2] + 1, b[3] + 1), h, w),
        "shifted by 1 row down and 1 column right",
    )
    assert "pixels where the box covers" not in message


def pointing(cams, masks, classes):
    maps = F.interpolate(
        cams[torch.arange(len(cams)), classes][:, None],
        size=masks.shape[-2:],
        mode="bicubic",
        align_corners=False,
    ).flatten(1)
    return masks.flatten(1)[torch.arange(len(cams)), maps.argmax(1)] > 0


def pointing_loop(cams, masks, classes):
    hits = []
    for k in range(len(cams)):
        big = F.interpolate(
            cams[k : k + 1, classes[k] : classes[k] + 1],
            size=tuple(masks.shape[-2:]),
            mode="bicubic",
            align_corners=False,
        )[0, 0]
        row, col = np.unravel_index(int(big.argmax()), big.shape)
        hits.append(bool(masks[k, 0, row, col] > 0))
    return np.array(hits)


@pytest.mark.parametrize("fn", [pointing, pointing_loop, lambda *a: pointing(*a).float()])
def test_pointing_game_check_accepts_other_right_answers(fn):
    passes(exercises.check_pointing_game, fn)


def pointing_with(cams, masks, classes, **interpolate):
    big = F.interpolate(
        cams[torch.arange(len(cams)), classes][:, None], masks.shape[-2:], **interpolate
    )
    return masks.flatten(1)[torch.arange(len(cams)), big.flatten(1).argmax(1)] > 0


def test_miss_pointing_game_each_mistake_gets_its_own_sentence():
    check = exercises.check_pointing_game
    messages = {
        fails_with(check, blank, "returned nothing"),
        fails_with(check, lambda c, m, k: pointing(c, m, 1 - k), "another class"),
        fails_with(check, lambda c, m, k: pointing(c, m, k) * 2.0, "hit or a miss"),
        fails_with(check, lambda c, m, k: pointing(-c, m, k), "smallest pixel"),
        fails_with(
            check,
            lambda c, m, k: pointing_with(c, m, k, mode="bilinear", align_corners=False),
            "mode='bilinear'",
        ),
        fails_with(
            check,
            lambda c, m, k: pointing_with(c, m, k, mode="bicubic", align_corners=True),
            "align_corners=True",
        ),
    }

    def swapped(cams, masks, classes):
        big = F.interpolate(
            cams[torch.arange(len(cams)), classes][:, None], masks.shape[-2:], mode="bicubic"
        ).flatten(1)
        peak = big.argmax(1)
        return (
            masks[torch.arange(len(cams)), 0, peak % masks.shape[-1], peak // masks.shape[-1]] > 0
        )

    messages.add(fails_with(check, swapped, "swapped"))
    assert len(messages) == 7, "every mistake has its own sentence"


def test_miss_pointing_game_mask_read_at_the_cam_cells_centre():
    def centre(cams, masks, classes):
        maps = cams[torch.arange(len(cams)), classes]
        h, w = maps.shape[-2:]
        peak = maps.flatten(1).argmax(1)
        sh, sw = masks.shape[-2] // h, masks.shape[-1] // w
        rows, cols = (peak // w) * sh + sh // 2, (peak % w) * sw + sw // 2
        return masks[torch.arange(len(cams)), 0, rows, cols] > 0

    fails_with(exercises.check_pointing_game, centre, "peak on the h x w grid")


def test_pointing_game_check_says_what_came_back_instead_of_a_tensor():
    message = fails_with(
        exercises.check_pointing_game,
        lambda c, m, k: pointing(c, m, k).tolist(),
        "returned a list of 256 values, not a torch tensor",
    )
    assert "raised" not in message


def test_pointing_game_check_scores_at_least_64_images():
    cams, masks, classes = exercises._pointing_batch()
    assert len(cams) >= 64


def iou(a, b):
    union = ((a + b) > 0).sum()
    return float((a * b).sum() / union) if union else 0.0


def iou_numpy(a, b):
    a, b = a.numpy() > 0, b.numpy() > 0
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / union if union else 0.0


def iou_areas(a, b):
    both = (a * b).sum()
    union = a.sum() + b.sum() - both
    return torch.where(union > 0, both / union.clamp(min=1), torch.zeros(()))


@pytest.mark.parametrize("fn", [iou, iou_numpy, iou_areas])
def test_mask_iou_check_accepts_other_right_answers(fn):
    passes(exercises.check_mask_iou, fn)


def test_mask_iou_check_names_the_mistakes():
    check = exercises.check_mask_iou
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda a, b: float(2 * (a * b).sum() / (a.sum() + b.sum())), "Dice")
    fails_with(
        check, lambda a, b: float((a * b).sum() / (a.sum() + b.sum())), "shared pixels twice"
    )
    fails_with(check, lambda a, b: float((a * b).sum() / ((a + b) > 0).sum()), "NaN")
    fails_with(check, lambda a, b: float((a * b).sum() / a.sum()), "first mask's area")
    fails_with(check, lambda a, b: (a * b) / ((a + b) > 0).sum(), "returned a Tensor of shape")


def test_miss_mask_iou_two_empty_masks_give_one():
    def one_when_empty(a, b):
        union = ((a + b) > 0).sum()
        return float((a * b).sum() / union) if union else 1.0

    fails_with(exercises.check_mask_iou, one_when_empty, "the exercise says 0")


def test_mask_iou_crash_on_empty_masks_is_told_kindly():
    fn = cell(
        "def mask_iou(a, b):\n"
        "    both = int((a * b).sum())\n"
        "    return both / int(((a + b) > 0).sum())\n",
        "mask_iou",
    )
    fails_with(
        exercises.check_mask_iou,
        fn,
        "given two empty masks, your function raised ZeroDivisionError at line 3 of your cell",
        "return 0 for them",
    )


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


# ---------------------------------------------------------------------------------- 04


def bootstrap(values, draws, seed):
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(draws, len(values))).mean(axis=1)
    return tuple(np.quantile(means, [0.025, 0.975]))


def bootstrap_integers(values, draws, seed):
    rng = np.random.default_rng(seed)
    values = np.asarray(values)
    picks = rng.integers(0, len(values), size=(draws, len(values)))
    low, high = np.percentile(values[picks].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def bootstrap_loop(values, draws=10_000, seed=0):
    rng = np.random.default_rng(seed)
    means = sorted(
        float(np.mean(rng.choice(values, len(values), replace=True))) for _ in range(draws)
    )
    return [means[int(0.025 * draws)], means[int(0.975 * draws) - 1]]


@pytest.mark.parametrize("fn", [bootstrap, bootstrap_integers, bootstrap_loop])
def test_bootstrap_interval_check_accepts_other_right_answers(fn):
    passes(exercises.check_bootstrap_interval, fn)


def test_bootstrap_interval_check_names_the_mistakes():
    check = exercises.check_bootstrap_interval
    fails_with(check, blank, "returned nothing")
    fails_with(
        check,
        lambda v, d, s: (np.mean(v) - 1.96 * np.std(v), np.mean(v) + 1.96 * np.std(v)),
        "normal approximation",
    )
    fails_with(check, lambda v, d, s: (np.mean(v) - 0.01, np.mean(v) + 0.01), "not the 2.5 %")
    fails_with(check, lambda v, d, s: (0.9, 1.0), "contain the mean")
    fails_with(check, lambda v, d, s: bootstrap(v, d, s)[::-1], "smaller quantile comes first")

    def no_replacement(values, draws, seed):
        rng = np.random.default_rng(seed)
        means = [rng.choice(values, len(values), replace=False).mean() for _ in range(draws)]
        return tuple(np.quantile(means, [0.025, 0.975]))

    fails_with(check, no_replacement, "with replacement")

    def unseeded(values, draws, seed):
        return bootstrap(values, draws, None)

    fails_with(check, unseeded, "same seed gave different intervals")


def test_miss_bootstrap_quantiles_of_the_raw_values():
    fails_with(
        exercises.check_bootstrap_interval,
        lambda v, d, s: tuple(np.quantile(v, [0.025, 0.975])),
        "quantiles of the values themselves",
    )


def test_miss_bootstrap_90_percent_interval():
    def ninety(values, draws, seed):
        rng = np.random.default_rng(seed)
        means = rng.choice(values, size=(draws, len(values))).mean(axis=1)
        return tuple(np.quantile(means, [0.05, 0.95]))

    fails_with(exercises.check_bootstrap_interval, ninety, "90 % interval")


def test_miss_bootstrap_dict_returned_says_what_was_returned():
    message = fails_with(
        exercises.check_bootstrap_interval,
        lambda v, d, s: dict(zip(("low", "high"), bootstrap(v, d, s), strict=True)),
        "returned a dict",
    )
    assert "raised" not in message


def test_bootstrap_check_uses_at_least_five_values():
    assert len(exercises._VALUES) >= 5


def box_from_mask(masks):
    out = torch.zeros_like(masks)
    for k, mask in enumerate(masks[:, 0]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(ys):
            out[k, 0, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = 1
    return out


def box_from_mask_outer(masks):
    rows = masks.amax(dim=3) > 0  # n x 1 x H
    cols = masks.amax(dim=2) > 0  # n x 1 x W

    def between(line):
        return (line.cumsum(-1) > 0) & (line.flip(-1).cumsum(-1).flip(-1) > 0)

    return (between(rows)[..., :, None] & between(cols)[..., None, :]).float()


def box_from_mask_numpy(masks):
    out = np.zeros(masks.shape, dtype=np.float32)
    for k in range(len(masks)):
        rows = np.where(masks[k, 0].numpy().any(axis=1))[0]
        cols = np.where(masks[k, 0].numpy().any(axis=0))[0]
        if rows.size:
            out[k, 0, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = 1
    return out


@pytest.mark.parametrize("fn", [box_from_mask, box_from_mask_outer, box_from_mask_numpy])
def test_box_from_mask_check_accepts_other_right_answers(fn):
    passes(exercises.check_box_from_mask, fn)


def test_box_from_mask_check_names_the_mistakes():
    check = exercises.check_box_from_mask
    fails_with(check, blank, "returned nothing")

    def exclusive(masks):
        out = torch.zeros_like(masks)
        for k, mask in enumerate(masks[:, 0]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(ys):
                out[k, 0, ys.min() : ys.max(), xs.min() : xs.max()] = 1
        return out

    fails_with(check, exclusive, "too small")
    fails_with(check, torch.ones_like, "too big")

    def fills_empty(masks):
        empty = masks.flatten(1).amax(1) == 0
        return box_from_mask(masks) + empty[:, None, None, None].float()

    fails_with(check, fills_empty, "empty mask must stay empty")
    fails_with(check, lambda masks: masks.clone(), "the mask itself")

    def reading_order(masks):
        out = torch.zeros_like(masks)
        for k, mask in enumerate(masks[:, 0]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(ys):
                out[k, 0, ys[0] : ys[-1] + 1, min(xs[0], xs[-1]) : max(xs[0], xs[-1]) + 1] = 1
        return out

    fails_with(check, reading_order, "smallest and the largest column")

    def one_box(masks):
        return box_from_mask(masks.amax(dim=0, keepdim=True)).expand_as(masks).clone()

    fails_with(check, one_box, "its own box")


def test_miss_box_from_mask_transposed_says_swapped():
    message = fails_with(
        exercises.check_box_from_mask,
        lambda masks: box_from_mask(masks.transpose(2, 3)),
        "rows and columns are swapped",
    )
    assert "too big" not in message


def test_miss_box_from_mask_crash_on_the_empty_mask_is_told_kindly():
    fn = cell(
        "def box_from_mask(masks):\n"
        "    boxes = torch.zeros_like(masks)\n"
        "    for k in range(len(masks)):\n"
        "        rows, cols = torch.nonzero(masks[k, 0], as_tuple=True)\n"
        "        r0, r1 = rows.min(), rows.max()\n"
        "        boxes[k, 0, r0 : r1 + 1, cols.min() : cols.max() + 1] = 1\n"
        "    return boxes\n",
        "box_from_mask",
    )
    fails_with(
        exercises.check_box_from_mask,
        fn,
        "given a batch with an empty mask, your function raised RuntimeError at line 5 of "
        "your cell",
        "leave its box empty",
    )


# ---------------------------------------------------------------------------------- 05


def sens_spec(labels, predicted):
    return (
        ((predicted == 1) & (labels == 1)).sum() / (labels == 1).sum(),
        ((predicted == 0) & (labels == 0)).sum() / (labels == 0).sum(),
    )


def sens_spec_numpy(labels, predicted):
    y, p = np.asarray(labels), np.asarray(predicted)
    return np.mean(p[y == 1] == 1), np.mean(p[y == 0] == 0)


def sens_spec_loop(labels, predicted):
    counts = {(a, b): 0 for a in (0, 1) for b in (0, 1)}
    for y, p in zip(labels.tolist(), predicted.tolist(), strict=True):
        counts[y, p] += 1
    return [
        counts[1, 1] / (counts[1, 1] + counts[1, 0]),
        counts[0, 0] / (counts[0, 0] + counts[0, 1]),
    ]


@pytest.mark.parametrize("fn", [sens_spec, sens_spec_numpy, sens_spec_loop])
def test_sensitivity_specificity_check_accepts_other_right_answers(fn):
    passes(exercises.check_sensitivity_specificity, fn)


def test_sensitivity_specificity_check_names_the_mistakes():
    check = exercises.check_sensitivity_specificity
    fails_with(check, blank, "returned nothing")
    fails_with(check, lambda y, p: sens_spec(y, p)[::-1], "other order")
    fails_with(
        check,
        lambda y, p: (((p == 1) & (y == 1)).sum() / (p == 1).sum(), sens_spec(y, p)[1]),
        "precision",
    )
    fails_with(
        check,
        lambda y, p: (((p == 1) & (y == 1)).sum(), ((p == 0) & (y == 0)).sum()),
        "those are counts",
    )
    fails_with(check, lambda y, p: ((y == p).float().mean(),) * 2, "accuracy")
    fails_with(
        check,
        lambda y, p: {"sensitivity": sens_spec(y, p)[0], "specificity": sens_spec(y, p)[1]},
        "returned a dict",
    )


def uniform(masks, cam_size):
    small = F.adaptive_max_pool2d(masks, cam_size).flatten(1)
    annotated = masks.flatten(1).sum(1) > 0
    return small.mean(1)[annotated].mean()


def uniform_numpy(masks, cam_size):
    h, w = cam_size
    shares = []
    for mask in masks[:, 0].numpy():
        if mask.any():
            cells = mask.reshape(h, mask.shape[0] // h, w, mask.shape[1] // w).max(axis=(1, 3))
            shares.append(cells.mean())
    return float(np.mean(shares))


def uniform_uniform_cams(masks, cam_size):
    annotated = masks[masks.flatten(1).amax(1) > 0]
    attention = torch.full((len(annotated), *cam_size), 1 / (cam_size[0] * cam_size[1]))
    small = F.adaptive_max_pool2d(annotated, cam_size)[:, 0]
    return (attention * small).flatten(1).sum(1).mean().item()


@pytest.mark.parametrize("fn", [uniform, uniform_numpy, uniform_uniform_cams])
def test_uniform_chance_check_accepts_other_right_answers(fn):
    passes(exercises.check_uniform_chance, fn)


def test_uniform_chance_check_names_the_mistakes():
    check = exercises.check_uniform_chance
    fails_with(check, blank, "returned nothing")
    fails_with(
        check,
        lambda m, s: F.adaptive_max_pool2d(m, s).flatten(1).mean(1).mean(),
        "leave out the images without a mask",
    )
    fails_with(
        check,
        lambda m, s: m[m.flatten(1).sum(1) > 0].flatten(1).mean(1).mean(),
        "count the CAM cells the mask touches",
    )
    fails_with(
        check,
        lambda m, s: F.adaptive_avg_pool2d(m[m.flatten(1).sum(1) > 0], s).flatten(1).mean(),
        "the share of the mask's pixels",
    )
    fails_with(
        check, lambda m, s: F.adaptive_max_pool2d(m, s).flatten(1).mean(1), "returned a Tensor"
    )


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


# --------------------------------------------------------------- the kit's own code

CHEATS = {
    "check_propagation_step": (
        "from agkit.propagation.segmenter import masks_from_probabilities\n"
        "def cheat(probs, size):\n"
        "    return masks_from_probabilities(probs, size)\n"
    ),
    "check_cam": (
        "from types import SimpleNamespace\n"
        "from agkit.method.camnet import CAMNet\n"
        "def cam(features, weight, bias):\n"
        "    fake = SimpleNamespace(classifier=SimpleNamespace(weight=weight, bias=bias))\n"
        "    return CAMNet.cams_from_features(fake, features)\n"
    ),
    "check_average_pooling": (
        "from agkit.method.camnet import pool_cams\ndef cheat(cams):\n    return pool_cams(cams, 'avg')\n"
    ),
    "check_mass_in_mask": (
        "from agkit import metrics\n"
        "def cheat(cams, masks, classes):\n"
        "    return metrics.mass_in_mask(cams, masks, classes)\n"
    ),
    "check_box_mask": (
        "from agkit.data import rasterize_boxes\n"
        "def cheat(box, height, width):\n"
        "    return torch.as_tensor(rasterize_boxes([box], (height, width)))\n"
    ),
    "check_pointing_game": (
        "from agkit.method.metrics import pointing_game as pg\n"
        "def cheat(cams, masks, classes):\n"
        "    return pg(cams, masks, classes)\n"
    ),
    "check_mask_iou": (
        "from agkit import metrics\n"
        "def cheat(a, b):\n"
        "    return float(metrics.cam_iou(a[None, None], b[None, None], torch.zeros(1).long()))\n"
    ),
    "check_softmax_pooling": (
        "import agkit.method.camnet\n"
        "def cheat(cams):\n"
        "    return agkit.method.camnet.pool_cams(cams, 'softmax')\n"
    ),
    "check_attention_loss": (
        "from agkit import attention_guidance_loss\n"  # the re-export
        "def cheat(cams, masks):\n"
        "    try:\n"
        "        return attention_guidance_loss(cams, masks)\n"
        "    except Exception:\n"  # a broad except does not hide the tripwire
        "        return attention_guidance_loss(cams, masks)\n"
    ),
    "check_training_step": (
        "from agkit.method.train import training_step as ts\n"
        "def cheat(model, images, labels, masks, optimizer, lam):\n"
        "    has = masks.flatten(1).amax(1) > 0\n"
        "    return ts(model, (images, labels, masks, has), optimizer, lam=lam)['loss']\n"
    ),
    "check_box_from_mask": (
        "def cheat(masks):\n"
        "    from agkit.data.mask_quality import bounding_boxes\n"  # imported while it runs
        "    return bounding_boxes(masks)\n"
    ),
    "check_sensitivity_specificity": (
        "from agkit.method.metrics import classification_metrics\n"
        "def cheat(labels, predicted):\n"
        "    scores = classification_metrics(labels.numpy(), np.eye(2)[predicted.numpy()])\n"
        "    return scores['sensitivity'], scores['specificity']\n"
    ),
    "check_uniform_chance": (
        "from agkit import metrics\n"
        "def cheat(masks, cam_size):\n"
        "    return metrics.chance_levels(masks, cam_size, draws=1)['uniform']['mass_in_mask']\n"
    ),
    "check_forbidden_loss": (
        "from agkit.guidance import ForbiddenGuidance\n"
        "from agkit.method.camnet import CAMOutput\n"
        "def cheat(cams, region):\n"
        "    out = CAMOutput(cams.mean(dim=(2, 3)), cams)\n"
        "    return ForbiddenGuidance()(None, None, None, None, None, out, region)\n"
    ),
    "check_rrr_penalty": (
        "from agkit.guidance import RRRGuidance\n"
        "def cheat(model, images, region):\n"
        "    x = images.detach().requires_grad_(True)\n"
        "    return RRRGuidance()(model, x, None, None, None, model(x), region)\n"
    ),
}
CHECKS = sorted(name for name in dir(exercises) if name.startswith("check_"))


def test_there_are_sixteen_checks_and_a_cheat_for_each_with_a_kit_implementation():
    assert len(CHECKS) == 16
    without = {name for name in CHECKS if not getattr(exercises, name).uses}
    assert without == {"check_bootstrap_interval"}  # the kit has no bootstrap of its own
    assert set(CHEATS) == set(CHECKS) - without


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_every_check_rejects_a_call_to_the_kits_implementation(name):
    source = CHEATS[name]
    fn_name = source.split("def ")[1].split("(")[0]
    namespace = {"torch": torch, "F": F, "np": np}
    exec(compile(source, "/tmp/ipykernel_1/cheat.py", "exec"), namespace)
    before = dict(namespace)
    message = fails_with(getattr(exercises, name), namespace[fn_name], "write it yourself")
    assert "kit's own implementation" in message
    assert namespace == before, "the student's names are put back"


def test_the_kits_function_passed_itself_is_caught_and_everything_is_put_back():
    import agkit
    import agkit.guidance
    import agkit.method.loss

    original = agkit.method.loss.attention_guidance_loss
    fails_with(exercises.check_attention_loss, attention_guidance_loss, "write it yourself")
    fails_with(exercises.check_attention_loss, lambda c, m: original(c, m), "write it yourself")
    assert agkit.method.loss.attention_guidance_loss is original
    assert agkit.attention_guidance_loss is original
    assert agkit.guidance.attention_guidance_loss is original
    assert globals()["attention_guidance_loss"] is original
    assert float(original(torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 8, 8))) > 0


def test_the_training_step_may_use_the_kits_attention_loss():
    # notebook 03 imports it for this exercise ("or your attention_loss from exercise 2")
    source = (
        "from agkit.method.loss import attention_guidance_loss\n"
        "def training_step(model, images, labels, masks, optimizer, lam):\n"
        "    out = model(images)\n"
        "    loss = F.cross_entropy(out.logits, labels)"
        " + lam * attention_guidance_loss(out.cams, masks)\n"
        "    optimizer.zero_grad()\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
        "    return loss.item()\n"
    )
    passes(exercises.check_training_step, cell(source, "training_step"))


def _message_strings() -> list[str]:
    """Every string literal of agkit/course/exercises.py but docstrings and the ``uses=`` lists."""
    tree = ast.parse(Path(exercises.__file__).read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg == "uses":
            skip |= {id(n) for n in ast.walk(node.value)}
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
    ]


def test_no_message_names_a_function_that_would_solve_an_exercise():
    import re

    names = set()
    for name in CHECKS:
        for owner, attribute in getattr(exercises, name).uses:
            names.add(owner.__name__ if attribute.startswith("__") else attribute)
            if isinstance(owner, type):
                names.add(owner.__name__)
    names -= {"CAMNet"}  # the model the exercises rebuild is named, not a solving function
    assert {"pool_cams", "mass_in_mask", "attention_guidance_loss", "ForbiddenGuidance"} <= names
    strings = _message_strings()
    assert len(strings) > 100
    for text in strings:
        for name in names:
            assert not re.search(rf"\b{re.escape(name)}\b", text), (name, text)


# ------------------------------------------------------------- errors in the student's code


def test_an_error_in_the_students_code_names_their_line():
    fn = cell(
        "def attention_loss(cams, masks):\n"
        "    small = F.adaptive_max_pool2d(masks, cams.shape[-2:])\n"
        "    return torch.einsum('bnp,bnp->', small.flatten(2), cams.flatten(1))\n",
        "attention_loss",
    )
    message = fails_with(
        exercises.check_attention_loss,
        fn,
        "your function raised RuntimeError at line 3 of your cell",
    )
    assert "exercises.py" not in message and "functional.py" not in message


def test_an_error_in_a_helper_names_the_helper_and_its_line():
    namespace = {"torch": torch, "F": F}
    exec(
        compile("def helper(x):\n    return x / 0\n", "/tmp/ipykernel_1/a.py", "exec"),
        namespace,
    )
    exec(
        compile("def mask_iou(a, b):\n    return helper(1)\n", "/tmp/ipykernel_1/b.py", "exec"),
        namespace,
    )
    fails_with(
        exercises.check_mask_iou,
        namespace["mask_iou"],
        "your function raised ZeroDivisionError at line 2 of your cell (in helper)",
    )


def test_not_written_yet():
    def todo(*args):
        raise NotImplementedError

    fails_with(exercises.check_cam, todo, "not written yet")


def test_a_check_leaves_the_random_state_of_the_notebook_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    exercises.check_cam.verdict(cam)  # seeds its own model and inputs inside
    assert torch.equal(torch.rand(3), expected)


def test_every_check_fails_on_a_blank_with_one_line():
    for name in CHECKS:
        passed, message = verdict(getattr(exercises, name), blank)
        assert not passed and message.startswith("✗"), (name, message)


# --------------------------------------------------------------- one propagation step


def propose(probs, size, threshold=">=", upsample="nearest", confidence="decided"):
    cells = (probs >= 0.5) if threshold == ">=" else (probs > 0.5)
    masks = F.interpolate(cells.float(), size=(size, size), mode=upsample)
    if confidence == "decided":
        sure = (2 * probs - 1).abs().flatten(1).mean(dim=1)
    elif confidence == "mean":
        sure = probs.flatten(1).mean(dim=1)
    else:
        sure = (probs - 0.5).abs().flatten(1).mean(dim=1)
    return masks, sure


@pytest.mark.parametrize(
    "fn",
    [
        propose,
        lambda p, s: (
            p.repeat_interleave(s // 4, -1).repeat_interleave(s // 4, -2) >= 0.5,
            (p - 0.5).abs().mean(dim=(1, 2, 3)) * 2,
        ),
    ],
)
def test_propagation_step_check_accepts_other_right_answers(fn):
    passes(exercises.check_propagation_step, fn)


@pytest.mark.parametrize(
    "fn, words",
    [
        (lambda p, s: propose(p, s, threshold=">"), ">= 0.5, not > 0.5"),
        (lambda p, s: propose(p, s, upsample="bilinear"), "only 0 and 1"),
        (lambda p, s: propose(p, s, confidence="mean"), "mean of |2p - 1|"),
        (lambda p, s: propose(p, s, confidence="half"), "that is half of it"),
        (lambda p, s: propose(p, s)[0], "return the pair (masks, confidence)"),
        (lambda p, s: (propose(p, s)[0][..., :8, :8], propose(p, s)[1]), "should have shape"),
        (lambda p, s: (propose(p.transpose(-1, -2), s)[0], propose(p, s)[1]), "transposed"),
    ],
)
def test_propagation_step_check_names_the_mistakes(fn, words):
    fails_with(exercises.check_propagation_step, fn, words)
