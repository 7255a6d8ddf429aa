"""The checks of notebook 02: a mask from a box, the pointing game, the IoU of two masks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from agkit.course.exercises.answers import (
    _extent,
    _number,
    _tensor,
)
from agkit.course.exercises.feedback import Hint
from agkit.course.exercises.runner import _check
from agkit.data import annotation_shapes, shapes
from agkit.method import metrics

# --------------------------------------------------------------------------------------
# Notebook 02: masks from boxes, the pointing game, agreement between masks
# --------------------------------------------------------------------------------------

_BOXES = ((3, 5, 11, 8), (0, 0, 4, 2), (9, 4, 16, 12))  # on 12 x 16; the last two touch borders


def _moved(dr: int, dc: int) -> str:
    def part(n: int, one: str, many: str, plus: str, minus: str) -> str:
        return f"{abs(n)} {one if abs(n) == 1 else many} {plus if n > 0 else minus}"

    parts = [part(dr, "row", "rows", "down", "up")] if dr else []
    parts += [part(dc, "column", "columns", "right", "left")] if dc else []
    return " and ".join(parts)


def _box_hint(value: torch.Tensor, box: tuple, height: int, width: int) -> str:
    """Why the mask ``value`` is not the box ``box``, in one sentence."""
    x0, y0, x1, y1 = box
    if value.sum() == 0:
        return f"the mask of box {box} is empty: set the pixels inside the box to 1."
    found = _extent(value)
    if found is None:
        return (
            f"the 1s of box {box} do not form one rectangle: fill rows y0 to y1 and columns "
            "x0 to x1 (y0:y1, x0:x1)."
        )
    r0, r1, c0, c1 = found
    if found == (x0, x1, y0, y1):
        return "x and y are swapped: rows are y (height), columns are x (width)."
    if (r1 - r0, c1 - c0) == (y1 - y0, x1 - x0):
        return (
            f"box {box} is shifted by {_moved(r0 - y0, c0 - x0)}: row y0 and column x0 "
            "(counting from 0) are the first ones inside."
        )
    if (r0, c0) == (y0, x0) and (r1, c1) == (min(y1 + 1, height), min(x1 + 1, width)):
        return "the box is one pixel too big: x1 and y1 are exclusive ends, as in Python slices."
    if (r0, c0) == (y0, x0) and (r1, c1) == (y1 - 1, x1 - 1):
        return "the box stops one pixel short: the slice y0:y1 already leaves out row y1."
    if (r1, c1) == (y1, x1) and (r0, c0) == (y0 + 1, x0 + 1):
        return "the box misses its first row and column: row y0 and column x0 are inside."
    if (r0, r1, c0, c1) == (y0, min(y0 + y1, height), x0, min(x0 + x1, width)):
        return "x1 and y1 are corners, not a width and a height: the box ends at column x1."
    return (
        f"for box {box} the mask fills rows {r0} to {r1 - 1} and columns {c0} to {c1 - 1}; "
        "fill rows y0 to y1 - 1 and columns x0 to x1 - 1."
    )


@_check(
    "box to mask",
    uses=(
        (shapes, "rasterize_boxes"),
        (shapes, "rasterize_polygons"),
        (annotation_shapes.Shapes, "rasterize"),
    ),
)
def check_box_mask(student) -> str:
    """fn(box (x0, y0, x1, y1), height, width) -> H x W tensor of 0/1, box = mask[y0:y1, x0:x1]."""
    height, width = 12, 16
    for box in _BOXES:
        expected = torch.as_tensor(shapes.rasterize_boxes([box], (height, width))).float()
        value = student(box, height, width)
        if isinstance(value, (torch.Tensor, np.ndarray)) and tuple(value.shape) == (width, height):
            raise Hint("the mask is W x H: rows are y (height), so make it height x width.")
        value = _tensor(value, (height, width), "an H x W mask", numpy_ok=True).float()
        if ((value != 0) & (value != 1)).any():
            raise Hint("a mask holds only 0 and 1.")
        if not torch.equal(value, expected):
            raise Hint(_box_hint(value, box, height, width))
    return f"your masks of {len(_BOXES)} boxes (two at the image's border) are exact."


def _pointing_batch(n: int = 256):
    """n random CAMs 2 x 8 x 8 and one random rectangle mask 32 x 32 per image (a few empty)."""
    generator = torch.Generator().manual_seed(3)
    cams = torch.randn(n, 2, 8, 8, generator=generator)
    masks = torch.zeros(n, 1, 32, 32)
    corners = torch.randint(0, 24, (n, 2), generator=generator)
    sizes = torch.randint(3, 16, (n, 2), generator=generator)
    for k in range(n - 4):  # the last four stay empty: a miss whatever the CAM
        (r, c), (dh, dw) = corners[k].tolist(), sizes[k].tolist()
        masks[k, 0, r : r + dh, c : c + dw] = 1
    classes = torch.randint(0, 2, (n,), generator=generator)
    return cams, masks, classes


def _peaks_at_input(cams, masks, classes, **interpolate) -> torch.Tensor:
    """(row, column) of each selected map's largest pixel after enlarging it: B x 2."""
    maps = cams[torch.arange(len(cams)), classes][:, None]
    big = F.interpolate(maps, size=masks.shape[-2:], **interpolate).flatten(1)
    peak = big.argmax(dim=1)
    return torch.stack([peak // masks.shape[-1], peak % masks.shape[-1]], dim=1)


def _looked_up(masks, rows, cols) -> torch.Tensor:
    return masks[torch.arange(len(masks)), 0, rows, cols] > 0


def _pointing_variants(cams, masks, classes) -> list[tuple[str, torch.Tensor]]:
    """The results of typical wrong pointing games, each with the sentence for it."""
    n, (h, w), (big_h, big_w) = len(cams), cams.shape[-2:], masks.shape[-2:]
    bicubic = {"mode": "bicubic", "align_corners": False}
    out = []
    for other in (torch.zeros_like(classes), torch.ones_like(classes), 1 - classes):
        out.append(
            (
                "you scored another class than the one given: use the map of classes[i] "
                "for image i.",
                metrics.pointing_game(cams, masks, other),
            )
        )
    peak = _peaks_at_input(cams, masks, classes, **bicubic)
    out.append(
        (
            "the row and the column of the peak are swapped: in a flat index p of an H x W "
            "image, the row is p // W and the column p % W.",
            _looked_up(masks, peak[:, 1].clamp(max=big_h - 1), peak[:, 0].clamp(max=big_w - 1)),
        )
    )
    low = _peaks_at_input(-cams, masks, classes, **bicubic)
    out.append(
        (
            "that is the smallest pixel: the peak is the largest one (argmax).",
            _looked_up(masks, low[:, 0], low[:, 1]),
        )
    )
    grid = cams[torch.arange(n), classes].flatten(1).argmax(1)
    i, j = grid // w, grid % w
    on_grid = (
        "you found the peak on the h x w grid: enlarge the CAM to the mask's size first "
        "(bicubic) and take its largest pixel there; the peak can move within a cell "
        "(nearest upsampling keeps it on the grid too)."
    )
    sh, sw = big_h // h, big_w // w
    for di, dj in itertools.product(
        (0, sh // 2 - 1, sh // 2, sh - 1), (0, sw // 2 - 1, sw // 2, sw - 1)
    ):
        out.append((on_grid, _looked_up(masks, i * sh + di, j * sw + dj)))
    for pool in (F.adaptive_max_pool2d, F.adaptive_avg_pool2d):
        small = pool(masks, (h, w))
        out.append((on_grid, small[torch.arange(n), 0, i, j] > 0))
        out.append((on_grid, small[torch.arange(n), 0, i, j] >= 0.5))
    for mode, corners in (
        ("bilinear", False),
        ("bilinear", True),
        ("bicubic", True),
        ("nearest", None),
    ):
        interpolate = {"mode": mode} | ({} if corners is None else {"align_corners": corners})
        p = _peaks_at_input(cams, masks, classes, **interpolate)
        how = f"mode={mode!r}" + ("" if corners is None else f", align_corners={corners}")
        out.append(
            (
                f"you enlarged the CAM with {how}; the exercise's bicubic, align_corners=False "
                "puts some peaks elsewhere.",
                _looked_up(masks, p[:, 0], p[:, 1]),
            )
        )
    return out


@_check("pointing game", uses=((metrics, "pointing_game"),))
def check_pointing_game(student) -> str:
    """fn(cams B x N x h x w, masks B x 1 x H x W, classes B) -> B bools."""
    cams, masks, classes = _pointing_batch()
    n = len(cams)
    expected = metrics.pointing_game(cams, masks, classes)
    value = _tensor(
        student(cams.clone(), masks.clone(), classes.clone()),
        (n,),
        "one True/False per image",
        numpy_ok=True,
    )
    if value.dtype != torch.bool:
        if ((value != 0) & (value != 1)).any():
            raise Hint("the pointing game is a hit or a miss: return a bool per image.")
        value = value.bool()
    if torch.equal(value, expected):
        return f"your hits equal the kit's on {n} random images ({int(expected.sum())} hits)."
    for hint, wrong in _pointing_variants(cams, masks, classes):
        if torch.equal(value, wrong):
            raise Hint(hint)
    if value[-4:].any():
        raise Hint("an image without a mask counts as a miss: its mask is 0 everywhere.")
    raise Hint(
        f"{int((value != expected).sum())} of {n} images scored differently: upsample "
        "the CAM of the given class to the mask's size, find its largest pixel and "
        "look the mask up there."
    )


def _iou_pairs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random mask pairs 16 x 16 (blobs of different sizes), then disjoint and equal ones."""
    generator = torch.Generator().manual_seed(4)
    pairs = []
    for _ in range(6):
        a = (torch.rand(16, 16, generator=generator) < 0.3).float()
        b = (torch.rand(16, 16, generator=generator) < 0.5).float()
        pairs.append((a, b))
    disjoint_a, disjoint_b = torch.zeros(16, 16), torch.zeros(16, 16)
    disjoint_a[:4, :4], disjoint_b[8:, 8:] = 1, 1
    pairs += [
        (disjoint_a, disjoint_b),
        (disjoint_b, disjoint_b.clone()),
        (disjoint_a, torch.zeros(16, 16)),
    ]
    return pairs


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = ((a > 0) | (b > 0)).sum().item()
    return ((a > 0) & (b > 0)).sum().item() / union if union else 0.0


@_check("agreement of two masks (IoU)", uses=((metrics, "cam_iou"),))
def check_mask_iou(student) -> str:
    """fn(a H x W 0/1, b H x W 0/1) -> float intersection over union."""
    a = torch.zeros(10, 10)
    a[2:6, 2:6] = 1  # 16 pixels
    b = torch.zeros(10, 10)
    b[4:8, 2:8] = 1  # 24 pixels, 2 x 4 = 8 shared
    value = _number(student(a.clone(), b.clone()), "one number")
    known = {
        2 * 8 / 40: "that is the Dice score (twice the overlap over the sum of both areas); "
        "IoU divides the overlap by the area of the union.",
        8 / 40: "the union counts the shared pixels twice; count each pixel once.",
        8 / 16: "you divided by the first mask's area; IoU divides by the union of both.",
        8 / 24: "you divided by the second mask's area; IoU divides by the union of both.",
        1 - 8 / 32: "that is 1 - IoU, how much the masks disagree.",
        8.0: "that is the number of shared pixels; divide it by the pixels in either mask.",
        32.0: "that is the size of the union; IoU is the shared pixels divided by it.",
    }
    if not math.isclose(value, 8 / 32, abs_tol=1e-6):
        for wrong, hint in known.items():
            if math.isclose(value, wrong, abs_tol=1e-6):
                raise Hint(hint)
        raise Hint(
            f"got {value:.3f} where 8 shared pixels of 32 in the union give 0.25; IoU = "
            "pixels in both masks / pixels in either mask."
        )
    for first, second in _iou_pairs():
        got = _number(student(first.clone(), second.clone()), "one number")
        if not math.isclose(got, _iou(first, second), abs_tol=1e-6):
            raise Hint(
                f"right on the first test but {got:.3f} instead of {_iou(first, second):.3f} "
                "on another pair of masks; count the pixels that are 1 in both and in either."
            )
    empty = student(
        torch.zeros(4, 4),
        torch.zeros(4, 4),
        when="given two empty masks",
        advice="Their union is empty: return 0 for them",
    )
    if empty is None:
        raise Hint("two empty masks gave nothing back; return 0 when the union is empty.")
    empty = _number(empty, "one number")
    if math.isnan(empty):
        raise Hint("two empty masks gave NaN: return 0 when the union is empty.")
    if empty != 0:
        raise Hint(f"two empty masks gave {empty:g}; the exercise says 0: they agree on nothing.")
    return "0.25 for 8 shared pixels of 32, exact on 9 more pairs, and 0 for two empty masks."
