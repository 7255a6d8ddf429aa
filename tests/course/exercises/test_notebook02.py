"""The checks of notebook 02 (agkit.course.exercises.notebook02)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_testing import blank, cell, fails_with, passes

from agkit.course import exercises
from agkit.course.exercises import notebook02

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
    cams, masks, classes = notebook02._pointing_batch()
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
