"""Reading what the student's function returned and comparing it with the kit's: a tensor
of the right shape, a number, a pair, equal values and equal gradients.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from agkit.course.exercises.feedback import Hint, _first_line, _what
from agkit.course.exercises.inputs import _leaves


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


def _extent(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(first row, end row, first column, end column) when the 1s fill one rectangle."""
    rows, cols = torch.nonzero(mask, as_tuple=True)
    if not len(rows):
        return None
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    return (r0, r1, c0, c1) if int(mask.sum()) == (r1 - r0) * (c1 - c0) else None


_DETACHED = (
    "compute it with torch operations on the tensors you were given (no NumPy, .item(), "
    ".detach() or torch.tensor(...) of a result, which cut the graph)."
)


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
