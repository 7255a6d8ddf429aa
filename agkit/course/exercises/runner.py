"""The check runner: ``_check`` turns a check's body into a printing check with a ``verdict``,
and ``_Student`` calls the student's function behind the tripwires.
"""

from __future__ import annotations

import functools

import torch

from agkit.course.exercises.feedback import Hint, _first_line, _raised
from agkit.course.exercises.tripwires import _USED_THE_KIT, _KitCalled, _tripwires


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
