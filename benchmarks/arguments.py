"""Argument types the benchmarks share, checked while argparse reads the command line: a bad
value stops a benchmark with one line naming it (exit status 2) before anything trains.

    parser.add_argument("--seeds", type=comma_list(int, minimum=0), default="0,1,2")
    parser.add_argument("--rounds", type=at_least(1), default=3)

(argparse passes a string default through ``type`` too, so ``args.seeds`` is [0, 1, 2].)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Collection
from typing import Any

_KINDS = {int: "a whole number", float: "a finite number", str: "a name"}


def comma_list(
    kind: Callable[[str], Any] = int,
    *,
    minimum: float | None = None,
    choices: Collection[str] | None = None,
    extra: Collection[str] = (),
) -> Callable[[str], list]:
    """An argparse ``type``: "0,1,2" -> [0, 1, 2], each item read by ``kind`` and at least
    ``minimum`` (numbers) or one of ``choices`` (names); an item of ``extra`` (such as
    "all") is kept as it is."""
    wanted = _KINDS.get(kind, kind.__name__)

    def parse(text: str) -> list:
        items: list = []
        for part in text.split(","):
            if part in extra:
                items.append(part)
                continue
            try:
                value = kind(part)
            except ValueError:
                value = None
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                raise argparse.ArgumentTypeError(_problem(part, f"is not {wanted}", extra))
            if minimum is not None and value < minimum:
                raise argparse.ArgumentTypeError(_problem(part, f"is below {minimum:g}", extra))
            if choices is not None and value not in choices:
                raise argparse.ArgumentTypeError(
                    f"{part!r} is not one of {', '.join(choices)} (comma-separated)"
                )
            items.append(value)
        return items

    return parse


def _problem(part: str, what: str, extra: Collection[str]) -> str:
    also = f" or {', '.join(extra)}" if extra else ""
    return f"{part!r} {what}; give a comma-separated list such as 0,1,2{also}"


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}; give {minimum} or more")
        return value

    return parse
