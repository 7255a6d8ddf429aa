"""How much a training step costs against another: the one step-time measure of the kit.

Timings taken run after run on a shared machine are not comparable: its load drifts. So
``step_times`` runs the steps it compares in turns, one step each per round, and
``StepTimes.ratios`` divides each step's time by the reference's *in the same round* and
takes the median over rounds (the median of paired ratios). Every figure of a step-time
ratio (the guided/baseline goal of 1.10 in ``benchmarks/step_ratio.py``, the guidance zoo's
table, the GPU check's precisions) comes from here, so they can be compared.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch


@dataclass(frozen=True)
class StepTimes:
    """Seconds of every round of each step, by name; ``reference`` is the name divided by."""

    seconds: dict[str, list[float]]
    reference: str

    def medians(self) -> pd.Series:
        """Median seconds per step, by name."""
        return pd.Series({name: statistics.median(v) for name, v in self.seconds.items()})

    def ratios(self) -> pd.Series:
        """Median over rounds of each step's time over the reference's in that round."""
        base = self.seconds[self.reference]
        return pd.Series(
            {
                name: statistics.median(t / b for t, b in zip(values, base, strict=True))
                for name, values in self.seconds.items()
            }
        )


def step_times(
    steps: dict[str, Callable[[], object]],
    *,
    repeats: int = 20,
    warmup: int = 2,
    device: torch.device | str | None = None,
) -> StepTimes:
    """Time each of ``steps`` (name -> a call that runs one step) in ``repeats`` rounds.

    The first name is the reference. ``warmup`` rounds are run first and not kept (caches,
    cuDNN's choice of algorithms). On a GPU each step is timed between synchronisations.
    """
    if not steps:
        raise ValueError("step_times needs at least one step to time.")
    on_gpu = device is not None and torch.device(device).type == "cuda"

    def seconds(step: Callable[[], object]) -> float:
        if on_gpu:
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        step()
        if on_gpu:
            torch.cuda.synchronize(device)
        return time.perf_counter() - began

    kept: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(warmup + repeats):
        for name, step in steps.items():
            took = seconds(step)
            if round_ >= warmup:
                kept[name].append(took)
    return StepTimes(kept, reference=next(iter(steps)))
