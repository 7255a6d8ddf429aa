"""A time limit for ``fit``: a safety net that stops a run between whole epochs.

``TimeLimit(seconds)`` is checked before each epoch, never inside one, so the model always
holds whole epochs and a stop never depends on where in an epoch the clock ran out. A run it
stops warns ``TimeLimitWarning`` and says so in ``history.attrs["stopped_by_time_limit"]``.
Runs whose results are kept should be sized by epochs, not time: a time limit makes the
number of epochs depend on the machine's speed. Leave it out with several processes: each
would read its own clock and they could stop at different epochs.
"""

from __future__ import annotations

import time
import warnings

from agkit.engine.callbacks import Callback, TrainingState


class TimeLimitWarning(UserWarning):
    """fit stopped early at its time limit; the model holds the last complete epoch."""


class TimeLimit(Callback):
    """Stop before the next epoch once ``seconds`` have passed since the run started."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.perf_counter()

    def on_fit_start(self, state: TrainingState) -> None:
        self.started = time.perf_counter()

    def on_epoch_start(self, state: TrainingState) -> None:
        if time.perf_counter() - self.started > self.seconds:
            state.stop = "time limit"
            state.attrs["stopped_by_time_limit"] = True

    def on_fit_end(self, state: TrainingState) -> None:
        if state.stop != "time limit":
            return
        if not state.history:
            raise TimeoutError(
                f"time_limit={self.seconds:g} s passed before the first epoch started, so "
                "nothing was trained (the model is as it was). Size the run by epochs, or "
                "raise the time limit."
            )
        warnings.warn(
            f"time_limit={self.seconds:g} s reached after {len(state.history)} of "
            f"{state.epochs} epochs; the model and checkpoint hold the last complete epoch. "
            "Size runs by epochs when their results are kept "
            "(history.attrs['stopped_by_time_limit'] is True).",
            TimeLimitWarning,
            stacklevel=3,
        )
