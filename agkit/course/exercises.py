"""Instant checks for the coding exercises of the course notebooks.

Each ``check_*`` function takes the student's function, runs it on small fixed inputs,
compares the result (and, for what is trained, its gradient) with the kit's own
implementation and prints one line: ``✓`` and what is right, or ``✗`` and one sentence
naming the mistake without giving the answer away. A check never raises, so "Run all" goes
on past an exercise that is not done yet; ``check_x.verdict(fn)`` returns
``(passed, message)`` instead of printing (the tests use it).

While the student's function runs, the kit's own implementation of the exercise is swapped
for a tripwire (in its module, its re-exports and the student's namespace), so a function
that only calls it is told to write the exercise itself. An error raised by the student's
code is reported with the line of their cell it came from.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import site
import sys
import sysconfig
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from agkit import guidance
from agkit.data import mask_quality, shapes
from agkit.data.mask_quality import bounding_boxes
from agkit.guidance import CAMGuidance, ForbiddenGuidance, RRRGuidance, attention_mass
from agkit.method import camnet as models
from agkit.method import loss as losses
from agkit.method import metrics, train
from agkit.method.camnet import CAMNet, CAMOutput, pool_cams
from agkit.method.loss import attention_guidance_loss
from agkit.propagation import segmenter


class Hint(Exception):
    """What is wrong with a student's answer, in one sentence."""


class _KitCalled(BaseException):
    """Raised by a tripwire: the student's function called the kit's implementation.
    A BaseException, so a student's ``except Exception`` cannot swallow it."""


_USED_THE_KIT = (
    "your function calls the kit's own implementation of this exercise, the very code "
    "the check compares with. Good find, but the point is to write it yourself: a few "
    "torch operations do it, and the hints here will guide you."
)

# Where code that is not the student's lives: this package and the installed libraries.
_KIT_DIR = str(Path(__file__).resolve().parents[1])
_LIBRARY_DIRS = tuple(
    {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    | set(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    | {site.getusersitepackages()}
)


def _is_theirs(filename: str) -> bool:
    """Whether a traceback frame's file is the student's (a notebook cell, a script)."""
    if filename.startswith("<frozen"):
        return False
    path = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    return not path.startswith(_KIT_DIR) and not any(path.startswith(d) for d in _LIBRARY_DIRS)


def _first_line(error: BaseException, limit: int = 160) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _raised(error: Exception, fn_name: str, when: str | None, advice: str | None) -> str:
    """'your function raised X at line N of your cell: ...' with the student's own line."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if _is_theirs(f.filename)]
    where = ""
    if frames:
        frame = frames[-1]  # the innermost line of their code
        where = f" at line {frame.lineno} of your cell"
        if frame.name not in (fn_name, "<lambda>", "<module>"):
            where += f" (in {frame.name})"
    message = f"your function raised {type(error).__name__}{where}"
    if when:
        message = f"{when}, {message}"
    detail = _first_line(error)
    message += f": {detail}" if detail else ""
    return message + (f". {advice}" if advice else ".")


def _trip(*args, **kwargs):
    raise _KitCalled


def _functions(fn) -> list:
    """fn and what it wraps (partials, bound methods, decorators): the code to look into."""
    found, todo = [], [fn]
    while todo:
        f = todo.pop()
        if f is None or any(f is g for g in found):
            continue
        found.append(f)
        todo += [getattr(f, a, None) for a in ("func", "__func__", "__wrapped__")]
    return found


@contextlib.contextmanager
def _tripwires(fn, uses):
    """Swap each implementation in ``uses`` ((owner, attribute) pairs) for a tripwire, at
    its home, in every agkit module that re-exports it, and in the student's globals,
    closures and defaults; put everything back afterwards."""
    originals = [owner.__dict__[name] for owner, name in uses]

    def is_original(value) -> bool:
        return any(value is o for o in originals)

    if any(is_original(f) for f in _functions(fn)):
        raise _KitCalled
    undo: list = []

    def swap(obj, attr: str, new) -> None:
        old = getattr(obj, attr) if not isinstance(obj, type) else obj.__dict__[attr]
        setattr(obj, attr, new)
        undo.append(lambda: setattr(obj, attr, old))

    for owner, name in uses:
        swap(owner, name, _trip)
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "agkit" or module_name.startswith("agkit.")):
            continue
        for attr, value in list(vars(module).items()):
            if is_original(value):
                swap(module, attr, _trip)
    for f in _functions(fn):
        namespace = getattr(f, "__globals__", None)
        if isinstance(namespace, dict):
            for key, value in list(namespace.items()):
                if is_original(value):
                    namespace[key] = _trip
                    undo.append(functools.partial(namespace.__setitem__, key, value))
        for cell in getattr(f, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # an empty cell
                if is_original(cell.cell_contents):
                    swap(cell, "cell_contents", _trip)
        defaults = getattr(f, "__defaults__", None)
        if defaults and any(is_original(d) for d in defaults):
            swap(f, "__defaults__", tuple(_trip if is_original(d) else d for d in defaults))
    try:
        yield
    finally:
        for restore in reversed(undo):
            restore()


class _Student:
    """The student's function, called with the kit's implementation behind tripwires."""

    def __init__(self, fn, uses):
        self.fn, self.uses = fn, uses
        self.name = getattr(fn, "__name__", "")

    def __call__(self, *args, when: str | None = None, advice: str | None = None):
        """Run fn(*args); an error in it becomes a Hint naming their line (``when``: the
        case that was run, e.g. "given an empty mask"; ``advice``: what to do about it)."""
        with _tripwires(self.fn, self.uses):
            try:
                return self.fn(*args)
            except NotImplementedError:
                raise Hint("not written yet; replace the blank with your code.") from None
            except Exception as error:  # noqa: BLE001 (any error of the student's code is news)
                raise Hint(_raised(error, self.name, when, advice)) from None


def _check(title: str, uses: tuple = ()):
    """Turn ``body(student) -> str`` (raising Hint when wrong) into a printing check;
    ``uses``: the (owner, attribute) pairs that implement the exercise in the kit."""

    def decorate(body):
        def verdict(fn) -> tuple[bool, str]:
            if not callable(fn):
                return False, (
                    f"✗ {title}: pass your function itself (no brackets after its name)."
                )
            try:
                with torch.random.fork_rng(devices=[]):  # the notebook's random state stays
                    return True, f"✓ {title}: {body(_Student(fn, uses))}"
            except Hint as hint:
                return False, f"✗ {title}: {hint}"
            except _KitCalled:
                return False, f"✗ {title}: {_USED_THE_KIT}"
            except Exception as error:  # noqa: BLE001 (raised while reading the result)
                return False, (
                    f"✗ {title}: the check could not use what your function returned "
                    f"({type(error).__name__}: {_first_line(error)})."
                )

        @functools.wraps(body)
        def check(fn) -> None:
            print(verdict(fn)[1])

        check.verdict = verdict
        check.uses = uses  # the tests read which implementations are behind tripwires
        return check

    return decorate


def _what(value) -> str:
    """A returned value in a few words: 'a dict', 'a tensor of shape (3,)', 'None'."""
    if value is None or value is Ellipsis:
        return "nothing"
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    return f"a {type(value).__name__}"


def _tensor(value, shape: tuple, what: str, numpy_ok: bool = False) -> torch.Tensor:
    """The student's result as a tensor of ``shape``, or a Hint saying what came back."""
    if value is None or value is Ellipsis:
        raise Hint(f"your function returned nothing; it should return {what}.")
    if numpy_ok and isinstance(value, np.ndarray):
        value = torch.as_tensor(value)
    if not isinstance(value, torch.Tensor):
        raise Hint(
            f"your function returned {_what(value)}, not a torch tensor; it should return {what}."
        )
    if tuple(value.shape) != tuple(shape):
        raise Hint(
            f"the result has shape {tuple(value.shape)} but should have shape "
            f"{tuple(shape)} ({what})."
        )
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise Hint("the result contains NaN or infinity.")
    return value


def _number(value, what: str = "one number") -> float:
    """A returned scalar (float, int, NumPy or one-element tensor) as a float."""
    if value is None or value is Ellipsis:
        raise Hint(f"your function returned nothing; it should return {what}.")
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if np.prod(tuple(value.shape), dtype=int) != 1:
            raise Hint(f"your function returned {_what(value)}; it should return {what}.")
        return float(value.reshape(()).item())
    if isinstance(value, (bool, int, float, np.number)):
        return float(value)
    raise Hint(f"your function returned {_what(value)}; it should return {what}.")


def _numbers(value, names: str) -> tuple[float, float]:
    """A returned pair such as (low, high); ``names`` is how the exercise writes it."""
    if value is None or value is Ellipsis:
        raise Hint(f"your function returned nothing; it should return {names}.")
    if isinstance(value, dict):
        raise Hint(f"your function returned a dict; return the two numbers as a tuple, {names}.")
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Hint(f"your function returned {_what(value)}; it should return two numbers, {names}.")
    return _number(value[0], f"two numbers, {names}"), _number(value[1], f"two numbers, {names}")


def _close(
    value: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4
) -> bool:
    value, expected = torch.as_tensor(value), torch.as_tensor(expected)
    if value.shape != expected.shape:
        return False
    return torch.allclose(value.detach().double(), expected.detach().double(), atol=atol, rtol=rtol)


def _gradients(value: torch.Tensor, inputs: list, probe=None) -> list:
    """d sum(value * probe) / d input for each input: None where no gradient reaches it."""
    if not value.requires_grad:
        return [None] * len(inputs)
    probe = torch.ones_like(value) if probe is None else probe
    try:
        return list(torch.autograd.grad((value * probe).sum(), inputs, allow_unused=True))
    except RuntimeError as error:
        raise Hint(f"backpropagating through your result failed ({_first_line(error)}).") from None


def _same_gradients(mine, inputs, reference, ref_inputs, names: str, detached: str, differ: str):
    """Raise Hint unless the student's result ``mine`` (made from the leaves ``inputs``)
    sends the same gradient to every input as the reference (made from ``ref_inputs``).
    A fixed random probe weighs the entries, so every entry's gradient counts."""
    probe = torch.randn(mine.shape, generator=torch.Generator().manual_seed(99)).to(mine.dtype)
    theirs = _gradients(reference, ref_inputs, probe.to(reference.dtype))
    ours = _gradients(mine, inputs, probe)
    if any(g is None for g, t in zip(ours, theirs, strict=True) if t is not None):
        raise Hint(f"the values are right, but no gradient reaches {names}: {detached}")
    for g, t in zip(ours, theirs, strict=True):
        if t is None:
            continue
        if not torch.isfinite(g).all():
            raise Hint("the values are right, but their gradient holds NaN or infinity.")
        if not _close(g, t, 1e-5):
            raise Hint(differ)


_DETACHED = (
    "compute it with torch operations on the tensors you were given (no NumPy, .item(), "
    ".detach() or torch.tensor(...) of a result, which cut the graph)."
)


def _model(seed: int = 0, pooling: str = "avg") -> CAMNet:
    torch.manual_seed(seed)
    model = CAMNet("tiny", num_classes=3, pooling=pooling).eval()
    with torch.no_grad():  # a non-zero bias, so a forgotten bias shows
        model.classifier.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    return model


def _images(seed: int = 0, n: int = 4, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _masks(n: int = 4, size: int = 32, empty: tuple = ()) -> torch.Tensor:
    """n different rectangles (image k's is shifted by k), some left empty."""
    masks = torch.zeros(n, 1, size, size)
    for k in range(n):
        if k not in empty:
            masks[k, 0, 4 + 2 * k : 20 + k, 8 : 24 - k] = 1
    return masks


def _leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Fresh copies that require gradients (the student's function gets its own)."""
    return [t.detach().clone().requires_grad_(True) for t in tensors]


# --------------------------------------------------------------------------------------
# Notebook 01: the CAM, average pooling, mass in mask
# --------------------------------------------------------------------------------------


@_check("CAM from features", uses=((CAMNet, "cams_from_features"),))
def check_cam(student) -> str:
    """fn(features B x K x h x w, weight N x K, bias N) -> CAMs B x N x h x w."""
    model = _model()
    with torch.no_grad():
        features = model.features(_images())
    ref_features = features.clone().requires_grad_(True)
    expected = model.cams_from_features(ref_features)
    ref_inputs = [ref_features, model.classifier.weight, model.classifier.bias]
    inputs = _leaves(*ref_inputs)
    b, _, h, w = features.shape
    cams = _tensor(
        student(*inputs), (b, 3, h, w), "one h x w map per class for every image, B x N x h x w"
    )
    bias = inputs[2].detach()[None, :, None, None]
    if not _close(cams, expected, 1e-4):
        if _close(cams, expected - bias, 1e-4):
            raise Hint("the maps are right up to a constant per class: add the class's bias.")
        if _close(cams, expected.relu(), 1e-4):
            raise Hint("the CAM is the plain weighted sum: no ReLU (negative values stay).")
        if _close(cams, expected - bias + bias.mean(), 1e-4) or _close(
            cams, (expected - bias) + bias.sum(), 1e-4
        ):
            raise Hint("each class has its own bias: add bias[c] to map c only.")
        raise Hint(
            "the values differ from CAMNet's CAMs: map c at (i, j) is the sum over the "
            "channels k of weight[c, k] times feature k at (i, j), plus bias[c]."
        )
    _same_gradients(
        cams,
        inputs,
        expected,
        ref_inputs,
        "the features, the weight and the bias",
        _DETACHED,
        "the values are right but the gradient is not CAMNet's: compute the CAM as one "
        "differentiable expression of features, weight and bias.",
    )
    return "your CAMs equal CAMNet's, and so do their gradients."


@_check("average pooling", uses=((models, "pool_cams"),))
def check_average_pooling(student) -> str:
    """fn(cams B x N x h x w) -> logits B x N equal to fc(GAP(features))."""
    model = _model()
    with torch.no_grad():
        features = model.features(_images(1))
    (ref_cams,) = _leaves(model.cams_from_features(features))
    expected = model.classifier(features.mean(dim=(2, 3)))
    reference = pool_cams(ref_cams, "avg")
    (cams,) = _leaves(ref_cams)
    logits = _tensor(
        student(cams), (cams.shape[0], cams.shape[1]), "one logit per class for every image, B x N"
    )
    if not _close(logits, expected, 1e-4):
        flat = ref_cams.detach().flatten(2)
        if _close(logits, flat.sum(dim=2)):
            raise Hint("you summed over the positions; the pooling takes their mean.")
        if _close(logits, flat.amax(dim=2)):
            raise Hint("that is max pooling; average pooling takes the mean of each map.")
        if _close(logits, flat.median(dim=2).values):
            raise Hint("that is the median; average pooling takes the mean of each map.")
        raise Hint(
            "the logits differ from the classifier applied to the averaged features; "
            "average each class map over all h x w positions."
        )
    _same_gradients(
        logits,
        [cams],
        reference,
        [ref_cams],
        "the CAMs",
        _DETACHED,
        "the values are right but the gradient is not the mean's: every position gets 1/(h*w).",
    )
    return "averaging the CAMs gives exactly fc(GAP(features)), with the gradient of a mean."


def _mass_batch():
    generator = torch.Generator().manual_seed(2)
    cams = torch.randn(6, 3, 8, 8, generator=generator) * 2
    masks = torch.cat([_masks(4), _masks(2)])
    masks[4, 0, 1:6, 25:31] = 1  # a second, small patch that touches cells only in part
    classes = torch.tensor([0, 2, 1, 2, 1, 0])
    return cams, masks, classes


@_check("mass in mask", uses=((metrics, "mass_in_mask"),))
def check_mass_in_mask(student) -> str:
    """fn(cams B x N x h x w, masks B x 1 x H x W, classes B) -> B shares in [0, 1]."""
    cams, masks, classes = _mass_batch()
    expected = metrics.mass_in_mask(cams, masks, classes)
    value = _tensor(
        student(cams.clone(), masks.clone(), classes.clone()),
        (6,),
        "one share of attention per image",
        numpy_ok=True,
    ).double()
    if _close(value, expected, 1e-5):
        return "your shares of attention inside the masks equal the kit's."
    picked = cams[torch.arange(6), classes]  # 6 x 8 x 8

    def share(maps, small):
        return (maps * small).flatten(1).sum(1)

    touched = F.adaptive_max_pool2d(masks, (8, 8))[:, 0]
    for other in [torch.full((6,), c) for c in range(3)] + [cams.mean(dim=(2, 3)).argmax(1)]:
        if _close(value, metrics.mass_in_mask(cams, masks, other), 1e-5):
            raise Hint("you scored another class than the one given: use classes[i] for image i.")
    if _close(value, share(picked.softmax(dim=-1), touched), 1e-5) or _close(
        value, share(picked.softmax(dim=-2), touched), 1e-5
    ):
        raise Hint("the softmax must run over all h x w positions at once, not along one row.")
    by_class = cams.softmax(dim=1)[torch.arange(6), classes]
    if _close(value, share(by_class, touched), 1e-5):
        raise Hint("the softmax runs over the h x w positions of one map, not over the classes.")
    attention = picked.flatten(1).softmax(1).view_as(picked)
    if _close(value, share(attention, F.adaptive_avg_pool2d(masks, (8, 8))[:, 0]), 1e-5):
        raise Hint(
            "a cell counts as a whole when the mask touches it (adaptive_max_pool2d), "
            "not by the share of its pixels inside (the average)."
        )
    if _close(value, metrics.mass_in_mask(cams, masks, classes, resolution="input"), 1e-5):
        raise Hint("shrink the mask to the CAM's h x w instead of enlarging the CAM.")
    if (
        _close(value, share(picked, touched), 1e-5)
        or (value < -1e-6).any()
        or (value > 1 + 1e-6).any()
    ):
        raise Hint(
            "a share of attention lies between 0 and 1: turn the CAM into a probability "
            "distribution over its positions (softmax) first."
        )
    raise Hint(
        "the values differ from the reference: shrink the mask to the CAM's size (a cell "
        "counts when the mask touches it) and add up the attention of the given class inside it."
    )


# --------------------------------------------------------------------------------------
# Notebook 02: masks from boxes, the pointing game, agreement between masks
# --------------------------------------------------------------------------------------

_BOXES = ((3, 5, 11, 8), (0, 0, 4, 2), (9, 4, 16, 12))  # on 12 x 16; the last two touch borders


def _extent(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(first row, end row, first column, end column) when the 1s fill one rectangle."""
    rows, cols = torch.nonzero(mask, as_tuple=True)
    if not len(rows):
        return None
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    return (r0, r1, c0, c1) if int(mask.sum()) == (r1 - r0) * (c1 - c0) else None


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
        (shapes.Shapes, "rasterize"),
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


def _empty_batch_gives_zero(student, cams, annotation, what: str) -> None:
    """Raise Hint unless fn(cams, all-zero annotation) is exactly 0 with a finite gradient
    (a NaN replaced after the fact still sends NaN back, and one SGD step spreads it)."""
    (leaf,) = _leaves(cams)
    when = f"on a batch without any {what}"
    value = student(
        leaf,
        torch.zeros_like(annotation),
        when=when,
        advice=f"With no {what} there is nothing to count: return a zero for such a batch",
    )
    number = _number(value, "one number, a scalar tensor")
    if math.isnan(number):
        raise Hint(
            f"a batch without any {what} gives NaN; it must give exactly 0: nothing is "
            "annotated, so there is nothing to pull or push."
        )
    if number != 0:
        raise Hint(f"a batch without any {what} gives {number:g}; it must give exactly 0.")
    if isinstance(value, torch.Tensor) and value.requires_grad:
        (gradient,) = _gradients(value.reshape(()), [leaf])
        if gradient is not None and not torch.isfinite(gradient).all():
            raise Hint(
                f"a batch without any {what} gives 0, but its gradient is NaN (a NaN turned "
                "into 0 afterwards, e.g. by nan_to_num, still sends NaN back, and one "
                f"optimiser step makes every weight NaN): test for the empty batch before "
                "dividing, and return a zero that keeps a finite gradient."
            )


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
        for loss, hint in wrong:
            if math.isclose(first, loss, rel_tol=1e-4):
                raise Hint(hint)
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


def _grid_probabilities() -> torch.Tensor:
    """3 x 1 x 4 x 4 cell probabilities: random ones, one with cells at exactly 0.5, and
    one that is sure everywhere (0 or 1)."""
    g = torch.Generator().manual_seed(7)
    probs = torch.rand(3, 1, 4, 4, generator=g)
    probs[1, 0, :2] = 0.5  # on the threshold: in the mask
    probs[2] = (probs[2] > 0.5).float()
    return probs


@_check("propagation step", uses=((segmenter, "masks_from_probabilities"),))
def check_propagation_step(student) -> str:
    """fn(probs B x 1 x h x w, size) -> (masks B x 1 x size x size of 0/1, confidence B)."""
    probs, size = _grid_probabilities(), 16
    value = student(probs.clone(), size)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Hint(f"your function returned {_what(value)}; return the pair (masks, confidence).")
    masks = _tensor(value[0], (3, 1, size, size), "masks B x 1 x size x size").float()
    confidence = _tensor(value[1], (3,), "one confidence per image").float()
    expected_masks, expected_confidence = segmenter.masks_from_probabilities(probs, size)
    if ((masks != 0) & (masks != 1)).any():
        raise Hint(
            "a mask holds only 0 and 1: threshold the probabilities first, then enlarge "
            "the cells with mode='nearest' (bilinear blends them)."
        )
    if not torch.equal(masks, expected_masks):
        if torch.equal(masks, F.interpolate((probs > 0.5).float(), size=(size, size))):
            raise Hint("a cell at exactly 0.5 counts as in the mask: use >= 0.5, not > 0.5.")
        if torch.equal(masks[:, :, ::4, ::4], expected_masks[:, :, ::4, ::4].transpose(-1, -2)):
            raise Hint("the mask is transposed: keep rows as rows (h, then w).")
        raise Hint(
            "the masks differ from the proposals: a pixel is in the mask when the "
            "probability of the grid cell it lies in is >= 0.5."
        )
    if torch.allclose(confidence, probs.flatten(1).mean(dim=1), atol=1e-5):
        raise Hint(
            "that is the mean probability; the confidence is how *decided* the cells are, "
            "the mean of |2p - 1| (1 when every cell is 0 or 1, 0 when every cell is 0.5)."
        )
    if torch.allclose(confidence, (probs - 0.5).abs().flatten(1).mean(dim=1), atol=1e-5):
        raise Hint("that is half of it: |2p - 1| runs from 0 to 1, |p - 0.5| only to 0.5.")
    if not torch.allclose(confidence, expected_confidence, atol=1e-5):
        raise Hint(
            f"the confidences are {[round(float(c), 3) for c in confidence]}, they should be "
            f"{[round(float(c), 3) for c in expected_confidence]}: the mean over the cells "
            "of |2p - 1|."
        )
    return (
        "your proposals are the kit's, a cell on the threshold included; an image the "
        f"segmenter is sure of gets confidence {float(expected_confidence[2]):.0f}."
    )


# --------------------------------------------------------------------------------------
# Notebook 04: what a 95 % interval means; a box from a mask
# --------------------------------------------------------------------------------------

_VALUES = [
    0.6213,
    0.7139,
    0.9047,
    0.5521,
    0.8068,
    0.6872,
]  # six, so a near-miss shows (3 allow almost any)
_DRAWS = 20_000


def _bootstrap_means(values) -> np.ndarray:
    """Every equally likely resample's mean (n**n of them): the exact bootstrap distribution."""
    n = len(values)
    picks = np.array(list(itertools.product(range(n), repeat=n)))
    return np.asarray(values, dtype=float)[picks].mean(axis=1)


def _quantile_band(means: np.ndarray, level: float, draws: int) -> tuple[float, float]:
    """Where the ``level`` quantile of ``draws`` resampled means falls (4 standard errors of
    the Monte Carlo either side), read off the exact bootstrap distribution ``means``."""
    spread = 4 * math.sqrt(level * (1 - level) / draws)
    low, high = np.quantile(means, [max(level - spread, 0), min(level + spread, 1)])
    return float(low) - 1e-9, float(high) + 1e-9


@_check("bootstrap interval")
def check_bootstrap_interval(student) -> str:
    """fn(values, draws, seed) -> (low, high), the percentile bootstrap 95 % interval."""
    values, draws = list(_VALUES), _DRAWS
    low, high = _numbers(student(list(values), draws, 0), "(low, high)")
    mean = float(np.mean(values))
    means = _bootstrap_means(values)
    sd = float(np.std(values))
    normal = {
        (mean - 1.96 * sd / math.sqrt(len(values)), mean + 1.96 * sd / math.sqrt(len(values))),
        (mean - 1.96 * sd, mean + 1.96 * sd),
        (
            mean - 1.96 * np.std(values, ddof=1) / math.sqrt(len(values)),
            mean + 1.96 * np.std(values, ddof=1) / math.sqrt(len(values)),
        ),
    }
    if any(
        math.isclose(low, a, abs_tol=1e-6) and math.isclose(high, b, abs_tol=1e-6)
        for a, b in normal
    ):
        raise Hint(
            "that is the normal approximation (mean +- 1.96 standard deviations); the "
            "bootstrap reads the quantiles off the means of resamples instead."
        )
    if low > high:
        raise Hint("the interval is (low, high): the smaller quantile comes first.")
    if math.isclose(low, mean, abs_tol=1e-9) and math.isclose(high, mean, abs_tol=1e-9):
        raise Hint(
            "every resample has the same mean: draw with replacement (replace=True), so a "
            "resample can hold a value twice and leave another out."
        )
    if not low <= mean <= high:
        raise Hint("the interval must contain the mean of the values.")
    if low < min(values) - 1e-9 or high > max(values) + 1e-9:
        raise Hint(
            "a mean of resampled values can never leave [min, max]; resample the "
            "values with replacement and take the mean of each resample."
        )
    raw = [
        np.quantile(values, [0.025, 0.975], method=m)
        for m in ("linear", "inverted_cdf", "nearest", "lower", "higher", "midpoint")
    ]
    if any(np.allclose((low, high), q, atol=1e-4) for q in raw) or (low, high) == (
        min(values),
        max(values),
    ):
        raise Hint(
            "those are quantiles of the values themselves; take the mean of each resample "
            "first, then the quantiles of those means."
        )
    bands = [_quantile_band(means, level, draws) for level in (0.025, 0.975)]
    inside = [a <= v <= b for v, (a, b) in zip((low, high), bands, strict=True)]
    if not all(inside):
        for level, name in ((0.05, "90 %"), (0.1, "80 %"), (0.16, "68 %"), (0.005, "99 %")):
            a, b = _quantile_band(means, level, draws), _quantile_band(means, 1 - level, draws)
            if a[0] <= low <= a[1] and b[0] <= high <= b[1]:
                raise Hint(
                    f"that is a {name} interval; a 95 % interval takes the 2.5 % and 97.5 % "
                    "quantiles of the means."
                )
        raise Hint(
            f"({low:.3f}, {high:.3f}) is not the 2.5 % and 97.5 % quantiles of the means of "
            f"{draws} resamples (each as long as the values) of {len(values)} values."
        )
    # a few draws make the interval vary from seed to seed, so an ignored seed shows
    pairs = [
        [_numbers(student(list(values), 200, seed), "(low, high)") for _ in "ab"]
        for seed in (1, 2, 3)
    ]
    if any(first != second for first, second in pairs):
        raise Hint(
            "two calls with the same seed gave different intervals: make the generator "
            "from it, numpy.random.default_rng(seed)."
        )
    return (
        f"({low:.3f}, {high:.3f}) for six values; with three seeds the same interval spans "
        "almost min..max."
    )


def _box_masks(empty: bool = False) -> torch.Tensor:
    """Masks 4 x 1 x 24 x 24: a rectangle with a stray pixel far off, an L whose first pixel
    (in reading order) is not its leftmost, a thin line, a small diagonal; ``empty``: one more
    that is all zero."""
    masks = _masks(4, 24)
    masks[0, 0, 20, 3] = 1  # a stray pixel stretches the box
    masks[1] = 0
    masks[1, 0, 3:14, 12:15] = 1
    masks[1, 0, 11:14, 2:15] = 1  # the L's foot reaches further left than its top
    masks[2] = 0
    masks[2, 0, 6, 1:22] = 1
    masks[3] = 0
    for k in range(5):
        masks[3, 0, 15 + k, 9 + k] = 1
    if empty:
        masks = torch.cat([masks[:2], torch.zeros(1, 1, 24, 24), masks[2:]])
    return masks


def _box_from_mask_hint(value: torch.Tensor, masks: torch.Tensor, expected: torch.Tensor) -> str:
    if torch.equal(value, masks):
        return "that is the mask itself; fill its whole bounding box."
    if torch.equal(value, expected.transpose(2, 3)):
        return (
            "rows and columns are swapped: the first index of a mask is its row (y), the "
            "second its column (x)."
        )
    union = bounding_boxes(masks.amax(dim=0, keepdim=True)).expand_as(masks)
    if torch.equal(value, union):
        return "each mask gets its own box, not one box around all of them."
    by_reading_order = torch.zeros_like(masks)
    for k in range(len(masks)):
        rows, cols = torch.nonzero(masks[k, 0], as_tuple=True)
        if len(rows):
            c0, c1 = sorted((int(cols[0]), int(cols[-1])))
            by_reading_order[k, 0, rows[0] : rows[-1] + 1, c0 : c1 + 1] = 1
    if torch.equal(value, by_reading_order):
        return (
            "the columns of the first and the last mask pixel (in reading order) are not "
            "the leftmost and the rightmost: take the smallest and the largest column."
        )
    for k in range(len(masks)):
        found, right = _extent(value[k, 0]), _extent(expected[k, 0])
        if found == right:
            continue
        if value[k, 0].sum() == 0:
            found = (R0 := right[0], R0, right[2], right[2])  # an empty box: too small
        if found is None:
            return "each box must be one filled rectangle."
        (r0, r1, c0, c1), (R0, R1, C0, C1) = found, right
        if r0 >= R0 and c0 >= C0 and r1 <= R1 and c1 <= C1:
            return (
                "the box is too small: it runs from the first to the last row and column "
                "that hold any mask pixel, both included."
            )
        return (
            "the box is too big: it runs from the first to the last row and column that "
            "hold any mask pixel, both included."
        )
    return "the boxes differ from the reference."


@_check("mask to box", uses=((mask_quality, "bounding_boxes"),))
def check_box_from_mask(student) -> str:
    """fn(masks n x 1 x H x W 0/1) -> n x 1 x H x W, each mask's bounding box filled."""
    for empty in (False, True):
        masks = _box_masks(empty)
        expected = bounding_boxes(masks)
        value = student(
            masks.clone(),
            when="given a batch with an empty mask" if empty else None,
            advice="An empty mask has no first or last row: leave its box empty" if empty else None,
        )
        value = _tensor(value, tuple(masks.shape), "one box mask per image", numpy_ok=True).float()
        if torch.equal(value, expected):
            continue
        if empty and value[2].sum() > 0:
            raise Hint("an empty mask must stay empty.")
        raise Hint(_box_from_mask_hint(value, masks, expected))
    return "your boxes are exact, a stray pixel and an L-shape included, and empty stays empty."


# --------------------------------------------------------------------------------------
# Notebook 05: sensitivity and specificity, and the chance level of a test split
# --------------------------------------------------------------------------------------

_SPLITS = (
    (torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 0, 0]), torch.tensor([1, 1, 1, 0, 0, 0, 0, 0, 1, 1])),
    (
        torch.tensor([0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]),
        torch.tensor([0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0]),
    ),
)


@_check("sensitivity and specificity", uses=((metrics, "classification_metrics"),))
def check_sensitivity_specificity(student) -> str:
    """fn(labels n, predicted n) -> (sensitivity, specificity); class 1 = fractured."""
    for labels, predicted in _SPLITS:
        got = _numbers(student(labels.clone(), predicted.clone()), "(sensitivity, specificity)")
        sick, healthy = labels == 1, labels == 0
        tp, tn = int((predicted[sick] == 1).sum()), int((predicted[healthy] == 0).sum())
        right = (tp / int(sick.sum()), tn / int(healthy.sum()))
        if all(math.isclose(g, r, abs_tol=1e-6) for g, r in zip(got, right, strict=True)):
            continue
        called_sick, called_healthy = int((predicted == 1).sum()), int((predicted == 0).sum())
        if all(math.isclose(g, r, abs_tol=1e-6) for g, r in zip(got, right[::-1], strict=True)):
            raise Hint(
                "those are the share of normal images called normal and of fractured "
                "images found, in the other order."
            )
        if math.isclose(got[0], tp, abs_tol=1e-6) or math.isclose(got[1], tn, abs_tol=1e-6):
            raise Hint("those are counts; return shares, the count divided by the class's size.")
        accuracy = float((labels == predicted).float().mean())
        if any(math.isclose(g, accuracy, abs_tol=1e-6) for g in got):
            raise Hint("that is the accuracy; each share counts the images of one class only.")
        if not math.isclose(got[0], right[0], abs_tol=1e-6):
            if math.isclose(got[0], tp / called_sick, abs_tol=1e-6):
                raise Hint(
                    "you divided by the images predicted fractured (that is precision); "
                    "divide by the images that are fractured (label 1)."
                )
            raise Hint(
                "sensitivity is the share of fractured images (label 1) that were predicted "
                "fractured."
            )
        if math.isclose(got[1], tn / called_healthy, abs_tol=1e-6):
            raise Hint(
                "you divided by the images predicted normal; divide by the images that are "
                "normal (label 0)."
            )
        raise Hint(
            "specificity is the share of normal images (label 0) that were predicted normal."
        )
    return "3 of 4 fractured images found (0.75), 4 of 6 normal ones called normal (0.67)."


@_check(
    "chance level of mass in mask",
    uses=((metrics, "mass_in_mask_chance"), (metrics, "chance_levels")),
)
def check_uniform_chance(student) -> str:
    """fn(masks n x 1 x H x W, cam_size (h, w)) -> mean mass in mask of uniform attention."""
    masks = _masks(4, 32, empty=(1,))
    masks[2, 0, 29:31, 1:3] = 1  # a speck that touches one cell in part
    annotated = masks[masks.flatten(1).sum(1) > 0]
    expected = metrics.mass_in_mask_chance(annotated, (8, 8)).mean().item()
    value = _number(student(masks.clone(), (8, 8)), "one number, the mean over the images")
    if math.isclose(value, expected, abs_tol=1e-6):
        return "uniform attention scores the mask's share of the CAM cells."
    wrong = [
        (
            metrics.mass_in_mask_chance(masks, (8, 8)).mean().item(),
            "leave out the images without a mask: they have no mass in mask at all.",
        ),
        (
            metrics.pointing_game_chance(annotated).mean().item(),
            "close: that is the share of the mask's pixels; count the CAM cells the mask "
            "touches instead (shrink with F.adaptive_max_pool2d, not the pixel average).",
        ),
        (
            F.adaptive_avg_pool2d(annotated, (8, 8)).flatten(1).mean(1).mean().item(),
            "a cell counts as a whole when the mask touches it: shrink with adaptive_max_pool2d, "
            "not the average.",
        ),
        (
            1 / 64,
            "1/(h*w) is the attention on one cell; the mass in mask adds it over the "
            "cells inside the mask.",
        ),
    ]
    for level, hint in wrong:
        if math.isclose(value, level, abs_tol=1e-6):
            raise Hint(hint)
    raise Hint(
        "uniform attention puts 1/(h*w) on every cell, so it scores the share of "
        "cells inside the mask; average that over the annotated images."
    )


# --------------------------------------------------------------------------------------
# Notebook 06: the "don't look here" CAM term, and Right for the Right Reasons
# --------------------------------------------------------------------------------------


def _forbidden_batch():
    """CAMs 4 x 2 x 8 x 8 and regions 4 x 1 x 32 x 32: image 0's box covers cells only in
    part (so a touched-cell shrink differs from the pixel share), image 2 has no region."""
    generator = torch.Generator().manual_seed(7)
    cams = torch.randn(4, 2, 8, 8, generator=generator) * 2
    region = torch.zeros(4, 1, 32, 32)
    region[0, 0, 2:9, 2:9] = 1
    region[1, 0, 0:8, 24:32] = 1
    region[3, 0, 20:30, 4:14] = 1
    return cams, region


@_check(
    "don't-look-here term",
    uses=((ForbiddenGuidance, "__call__"), (guidance, "attention_mass")),
)
def check_forbidden_loss(student) -> str:
    """fn(cams B x N x h x w, region B x 1 x H x W) -> scalar mean of -log(1 - mass)."""
    start, region = _forbidden_batch()
    (ref_cams,) = _leaves(start)
    out = CAMOutput(logits=ref_cams.mean(dim=(2, 3)), cams=ref_cams)
    expected = ForbiddenGuidance()(None, None, None, None, None, out, region)
    (cams,) = _leaves(start)
    value = _tensor(student(cams, region.clone()), (), "one number, a scalar tensor")
    if not _close(value, expected):
        present = region.flatten(1).amax(dim=1) > 0
        mass = attention_mass(start, region)  # 4 x 2
        touched = F.adaptive_max_pool2d(region, (8, 8))
        attention = start.flatten(2).softmax(dim=2).view_as(start)
        mass_touched = (attention * touched).flatten(2).sum(dim=2)[present]
        wrong = [
            (-expected, "the sign is wrong: -log(1 - mass) is positive, and 0 with no mass there."),
            (
                -torch.log(mass[present]).mean(),
                "-log(mass) pulls attention *into* the region; pushing it out is -log(1 - mass).",
            ),
            (
                -torch.log1p(-mass).mean(),
                "an image without a region adds nothing: average over the images that have one.",
            ),
            (
                -torch.log1p(-mass_touched.clamp(max=1 - 1e-6)).mean(),
                "a cell partly inside the region counts by the share of its pixels inside "
                "(F.adaptive_avg_pool2d), not as a whole cell (max pooling).",
            ),
            (mass[present].mean(), "that is the mean mass itself; the term is -log(1 - mass)."),
            (
                -torch.log1p(-mass[present]).sum(),
                "that is the sum; the term is the mean over every class map of every image "
                "with a region.",
            ),
        ]
        for loss, hint in wrong:
            if _close(value, loss):
                raise Hint(hint)
        raise Hint(
            "the value differs from the kit's term: take the softmax of every map over all its "
            "positions, sum it over the region's share of each cell (F.adaptive_avg_pool2d), "
            "and average -log(1 - mass) over every class map of every image with a region."
        )
    _same_gradients(
        value,
        [cams],
        expected,
        [ref_cams],
        "the CAMs",
        _DETACHED,
        "the value is right but its gradient is not: keep the whole term one differentiable "
        "expression of the CAMs.",
    )
    _empty_batch_gives_zero(student, start, region, "region")
    return "your term and its gradient equal the kit's, and a batch without regions gives 0."


@_check("RRR penalty", uses=((RRRGuidance, "__call__"),))
def check_rrr_penalty(student) -> str:
    """fn(model, images B x C x H x W, region B x 1 x H x W) -> scalar RRR penalty."""
    model = _model(8)
    images = _images(8)
    region = torch.zeros(4, 1, 32, 32)
    region[:, :, :8, :8] = 1  # a corner of every image
    # the penalty is tiny here (about 3e-6: an untrained network barely reads a corner), so
    # values are compared by their relative difference only (atol=0)
    reference = images.clone().requires_grad_(True)
    expected = RRRGuidance()(model, reference, None, None, None, model(reference), region)
    (ref_grad,) = torch.autograd.grad(expected, [model.classifier.weight])
    value = _tensor(student(model, images, region.clone()), (), "one number, a scalar tensor")
    if images.requires_grad or images.grad is not None:
        raise Hint(
            "you changed the caller's images (requires_grad or .grad); differentiate a "
            "copy, images.detach().requires_grad_(True)."
        )
    if not _close(value, expected, atol=0.0):
        copy = images.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(model(copy).logits.sum(), copy)
        if _close(value, (region * gradient).pow(2).sum() / 4, atol=0.0):
            raise Hint(
                "differentiate the sum of the log-probabilities (F.log_softmax), not the logits."
            )
        (gradient,) = torch.autograd.grad(F.log_softmax(model(copy).logits, 1).sum(), copy)
        if _close(value, gradient.pow(2).sum() / 4, atol=0.0):
            raise Hint("only the forbidden pixels count: multiply the gradient by the region.")
        if _close(value, (region * gradient).pow(2).mean(), atol=0.0):
            raise Hint("sum over pixels and channels and divide by the number of images only.")
        if _close(value, (region * gradient).pow(2).sum(), atol=0.0):
            raise Hint("divide the sum by the number of images.")
        if _close(value, (region * gradient).abs().sum() / 4, atol=0.0):
            raise Hint("square the gradient on the region (RRR penalises its square).")
        raise Hint(
            "the value differs from RRR: the gradient of the summed log-probabilities with "
            "respect to the pixels, times the region, squared, summed, divided by B."
        )
    if not value.requires_grad:
        raise Hint(
            "the value is right but cannot be trained: take the input gradient with "
            "create_graph=True (double backpropagation)."
        )
    (weights,) = _gradients(value, [model.classifier.weight])
    if weights is None or not weights.abs().sum() > 0:
        raise Hint("no gradient reaches the weights: use create_graph=True in autograd.grad.")
    if not torch.allclose(weights, ref_grad, rtol=1e-3, atol=0.0):
        raise Hint(
            "the value is right but its gradient with respect to the weights is not RRR's: "
            "keep the input gradient in the graph (create_graph=True) and use it as it is."
        )
    return "your penalty and its gradient for the weights equal RRR's (double backprop)."
