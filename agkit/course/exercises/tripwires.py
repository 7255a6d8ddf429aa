"""The tripwires: while the student's function runs, the kit's own implementation of the
exercise is swapped for one that raises, so a function that only calls it is caught.
"""

from __future__ import annotations

import contextlib
import functools
import sys


class _KitCalled(BaseException):
    """Raised by a tripwire: the student's function called the kit's implementation.
    A BaseException, so a student's ``except Exception`` cannot swallow it."""


_USED_THE_KIT = (
    "your function calls the kit's own implementation of this exercise, the very code "
    "the check compares with. Good find, but the point is to write it yourself: a few "
    "torch operations do it, and the hints here will guide you."
)


def _trip(*args, **kwargs):
    raise _KitCalled


def _functions(fn) -> list:
    """fn and what it wraps (partials, bound methods, decorators): the code to look into."""
    found: list = []
    todo = [fn]
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
