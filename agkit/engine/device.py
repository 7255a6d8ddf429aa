"""Where training runs: the device, and how many CPU threads torch may use."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def resolve_device(device: torch.device | str | None = "auto") -> torch.device:
    """The device to train on.

    "auto" or None: a GPU when there is one (cuda, then Apple's mps), else the CPU; anything
    else is passed to ``torch.device`` ("cpu", "cuda:1", ...); a name torch does not know,
    and a CUDA or mps device that torch cannot see, are refused with a message that names
    the fix.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device {device!r} is not a device torch knows; use 'auto', 'cpu', 'cuda' "
            "(or 'cuda:1', ...) or 'mps'."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {str(device)!r} was asked for, but torch sees no CUDA GPU; "
            "use device='auto' or 'cpu'."
        )
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(
            "device 'mps' was asked for, but torch sees no Apple GPU; use device='auto' or 'cpu'."
        )
    return device


def set_threads(threads: int) -> None:
    """Let torch use ``threads`` CPU threads for its operations (this process only)."""
    torch.set_num_threads(max(1, int(threads)))


@contextlib.contextmanager
def threads(count: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Run the block with ``count`` torch threads on a CPU, then restore the old count.

    The thread count changes the order of float sums and with it the last digits of every
    weight, so a run that must equal the same run elsewhere (a notebook's process and the
    course's one-thread workers) pins it. On a GPU the block runs as it is.
    """
    if device is not None and torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    set_threads(count)
    try:
        yield
    finally:
        set_threads(before)
