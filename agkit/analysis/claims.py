"""Sentences that state a result, computed from the numbers they describe.

A sentence beside a table ("the gain grows with the training set", "above chance") is a
claim. Typed by hand it goes stale the first time a rerun, a new profile or an edit of the
method changes the numbers, and then the page contradicts itself. So every sentence of the
course that states a direction, a comparison or a verdict against chance is made here, from
the values on the same screen, by two rules a student can check by eye:

* **Seeds.** Two settings differ only when their ranges over the seeds do not overlap: the
  lowest seed of one lies above the highest seed of the other. Otherwise the difference is
  "within the spread between seeds", however large the means look. With three seeds this is
  what the error bars of the plots show (``plots.seed_range``).
* **Chance.** A score is above (below) chance when it is more than ``margin`` above (below)
  its chance level; in between it is "at chance".

Every function returns plain text; the notebooks print it under the figure it describes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

#: how far from its chance level a score must be to count as above or below it
CHANCE_MARGIN = 0.05


@dataclass(frozen=True)
class Spread:
    """The mean of a score over seeds and its range (lowest and highest seed)."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return self.format(two_decimals)

    def format(self, fmt: Callable[[float], str]) -> str:
        """``mean (low-high)`` with each number written by ``fmt``; the mean alone for one seed."""
        if self.n == 1:
            return fmt(self.mean)
        return f"{fmt(self.mean)} ({fmt(self.low)} to {fmt(self.high)})"


def two_decimals(value: float) -> str:
    """A share or a score as the tables show it: ``0.82``."""
    return f"{value:.2f}"


def in_points(value: float) -> str:
    """A difference of shares in percentage points, with its sign: ``+12.3``."""
    return f"{100 * value:+.1f}"


def spread(values: Iterable[float]) -> Spread:
    """The Spread of ``values`` (one score per seed); ValueError when there are none."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to summarise: the table has no run for this setting.")
    return Spread(sum(values) / len(values), min(values), max(values), len(values))


def order(a: Spread, b: Spread) -> int:
    """+1 when every seed of ``a`` is above every seed of ``b``, -1 when below, else 0.

    With one seed each there is no spread to compare with: the two never differ.
    """
    if a.n < 2 or b.n < 2:
        return 0
    if a.low > b.high:
        return 1
    if a.high < b.low:
        return -1
    return 0


def points(difference: float) -> str:
    """A difference of two shares in percentage points, with its sign: ``+12.3 points``."""
    return f"{in_points(difference)} points"


def compare(name_a: str, a: Iterable[float], name_b: str, b: Iterable[float]) -> str:
    """One sentence comparing two settings' scores over seeds, e.g.
    ``guided 0.82 (0.79 to 0.85) against baseline 0.55 (0.52 to 0.58): higher by 27.0
    points, outside the spread between seeds``."""
    sa, sb = spread(a), spread(b)
    difference = sa.mean - sb.mean
    verdict = order(sa, sb)
    head = f"{name_a} {sa} against {name_b} {sb}"
    if verdict == 0:
        reason = "one seed each" if min(sa.n, sb.n) < 2 else "the ranges overlap"
        return f"{head}: {points(difference)}, within the spread between seeds ({reason})"
    word = "higher" if verdict > 0 else "lower"
    return f"{head}: {word} by {abs(100 * difference):.1f} points, outside the spread between seeds"


def trend(
    groups: Mapping[float, Iterable[float]],
    what: str = "the score",
    fmt: Callable[[float], str] = two_decimals,
) -> str:
    """How ``what`` changes along a setting: ``groups`` maps each value of the setting (a
    training-set size, a lambda) to its scores over seeds, written by ``fmt``. The
    direction is read from the two ends (smallest and largest setting), by the seed rule;
    "steadily" only when every step's mean goes the same way."""
    keys = sorted(groups)
    if len(keys) < 2:
        raise ValueError("a trend needs at least two settings.")
    spreads = {k: spread(groups[k]) for k in keys}
    first, last = spreads[keys[0]], spreads[keys[-1]]
    listed = ", ".join(f"{spreads[k].format(fmt)} at {k:g}" for k in keys)
    verdict = order(last, first)
    if verdict == 0:
        return (
            f"{what} stays within the spread between seeds from {keys[0]:g} to {keys[-1]:g} "
            f"({listed})"
        )
    means = [spreads[k].mean for k in keys]
    steps = [b - a for a, b in zip(means[:-1], means[1:], strict=True)]
    steady = all(s > 0 for s in steps) if verdict > 0 else all(s < 0 for s in steps)
    word = "grows" if verdict > 0 else "shrinks"
    return (
        f"{what} {word}{' steadily' if steady else ''} from {keys[0]:g} to {keys[-1]:g} ({listed})"
    )


def versus_chance(value: float, chance: float, margin: float = CHANCE_MARGIN) -> str:
    """``above chance``, ``at chance`` or ``below chance``, with both numbers."""
    if value > chance + margin:
        word = "above chance"
    elif value < chance - margin:
        word = "below chance"
    else:
        word = "at chance"
    return f"{value:.2f}, {word} ({chance:.2f})"


def against_reference(
    table: pd.DataFrame,
    by: str,
    metric: str,
    reference,
    *,
    label=lambda value: f"{value}",
) -> list[str]:
    """One sentence per setting of column ``by`` (other than ``reference``): its ``metric``
    over seeds against the reference setting's, by ``compare``."""
    groups = {value: rows[metric].tolist() for value, rows in table.groupby(by, sort=True)}
    if reference not in groups:
        raise ValueError(f"no run with {by} = {reference!r} to compare with.")
    return [
        compare(label(value), scores, label(reference), groups[reference])
        for value, scores in groups.items()
        if value != reference
    ]


def compare_pairs(
    table: pd.DataFrame, by: str, metric: str, pairs: Iterable[tuple[Any, Any]]
) -> list[str]:
    """One sentence per pair (a, b) of settings of column ``by``: a's ``metric`` over seeds
    against b's, by ``compare``. ``table`` has one row per run, with columns ``by`` and
    ``metric``; ValueError naming a setting that has no run."""
    groups = {value: rows[metric].tolist() for value, rows in table.groupby(by, sort=True)}
    pairs = list(pairs)
    missing = [value for pair in pairs for value in pair if value not in groups]
    if missing:
        raise ValueError(f"no run with {by} = {missing[0]!r} to compare.")
    return [compare(f"{a}", groups[a], f"{b}", groups[b]) for a, b in pairs]


def paired_gain(table: pd.DataFrame, by: str, metric: str = "accuracy_shifted") -> dict:
    """The gain of guided over baseline training for each value of ``by``, one per seed
    (the guided run of a seed minus the baseline run of the same seed): ``{value: [gains]}``.
    ``table`` has columns ``method`` ("baseline" / "guided"), ``seed``, ``by`` and ``metric``."""
    wide = table.pivot_table(index=[by, "seed"], columns="method", values=metric)
    gains = (wide["guided"] - wide["baseline"]).dropna()
    return {value: rows.tolist() for value, rows in gains.groupby(level=0)}


#: below this gain of full annotation over the baseline a share of it is mostly noise
MIN_GAIN = 0.05


def share_of_gain(accuracy: float, baseline: float, full: float) -> float:
    """How far ``accuracy`` gets from ``baseline`` towards ``full`` (the run with every mask):
    (accuracy - baseline) / (full - baseline); NaN when full annotation gains nothing."""
    gain = full - baseline
    return (accuracy - baseline) / gain if gain > 0 else float("nan")


def gain_story(accuracy: Mapping[str, float], baseline: str, full: str, yours: str) -> list[str]:
    """Sentences on the share of the full-annotation gain that each run recovers.

    accuracy: {run name: shifted-test accuracy}, holding ``baseline``, ``full`` and
    ``yours``; every other run is a control that ``yours`` is compared with. One seed
    each, so the comparisons say "in this run". Below MIN_GAIN of gain no share is given.
    """
    base, top = accuracy[baseline], accuracy[full]
    said = [f"The baseline reaches {base:.2f} on the shifted test split, {full} {top:.2f}."]
    if top - base <= MIN_GAIN:
        others = ", ".join(f"{name} {value:.2f}" for name, value in accuracy.items())
        said.append(
            f"Full annotation gains {in_points(top - base)} points here: too little to share "
            f"out ({others})."
        )
        return said
    share = {name: share_of_gain(value, base, top) for name, value in accuracy.items()}
    controls = [name for name in accuracy if name not in (baseline, full, yours)]
    subject = yours[0].upper() + yours[1:]  # run names start a sentence as they are
    said.append(
        f"{subject} reach {accuracy[yours]:.2f}: {share[yours]:.0%} of that gain. "
        + " ".join(f"{name[0].upper()}{name[1:]}: {share[name]:.0%}." for name in controls)
    )
    for name in controls:
        difference = share[yours] - share[name]
        if abs(difference) < 0.005:
            said.append(f"{subject} and {name} recover the same share.")
        else:
            word = "more" if difference > 0 else "less"
            said.append(
                f"{subject} recover {abs(difference):.0%} of the gain {word} than {name} "
                "in this run."
            )
    return said
