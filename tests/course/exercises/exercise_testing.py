"""What the exercise tests share: a check's verdict in one line, passing and failing with
the words of a hint, and a function defined as a notebook cell defines it."""

import numpy as np
import torch
import torch.nn.functional as F


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
