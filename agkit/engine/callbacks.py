"""What ``fit`` shares with its callbacks: the state of a training run, and the hooks.

``fit`` (agkit.method.train) is the method's loop. Everything else a run may need, saving
and resuming (``Checkpoint``), a time limit (``TimeLimit``), progress bars (``Progress``),
a log (``TensorBoardLog``), is a ``Callback`` that ``fit`` calls at fixed points:

    on_fit_start(state)            once, before the first epoch (may resume: set epoch, history)
    on_epoch_start(state)          before each epoch (may set state.stop to end the run here)
    on_batch_end(state, losses)    after each optimisation step
    on_epoch_end(state, row)       after each epoch, with its history row
    on_fit_end(state)              once, after training and BatchNorm recalibration

A callback changes the run only through ``state``: it never rebinds anything in another module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn


@dataclass
class TrainingState:
    """One training run as ``fit`` and its callbacks see it.

    model: the plain model (a CAMNet; the DDP or compile wrapper is unwrapped).
    optimizer, scheduler: torch's (scheduler None for a constant learning rate).
    config: the settings that determine the result (checked when a run resumes).
    epochs: the epochs asked for. epoch: the last complete one (0 before training).
    history: one dict per complete epoch (fit's rows). batches: batches per epoch (None
    when the loader has no length). precision: an agkit.engine.precision.Precision or None.
    stop: a reason set by a callback to end the run before the next epoch (None: go on).
    finished: a resumed run had nothing left to do (no training, no recalibration).
    recalibrated: BatchNorm statistics were re-measured after training.
    attrs: extra facts for ``history.attrs`` (e.g. stopped_by_time_limit).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    config: dict[str, Any]
    epochs: int
    batches: int | None = None
    precision: Any = None
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stop: str | None = None
    finished: bool = False
    recalibrated: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """The history as a DataFrame, with epochs_run, epochs, config and ``attrs``."""
        history = pd.DataFrame(self.history)
        history.attrs.update(
            {
                "epochs_run": len(self.history),
                "epochs": self.epochs,
                "stopped_by_time_limit": False,
                "config": self.config,
                **self.attrs,
            }
        )
        return history


class Callback:
    """A hook into ``fit``; override the methods you need (each does nothing here)."""

    def on_fit_start(self, state: TrainingState) -> None:
        pass

    def on_epoch_start(self, state: TrainingState) -> None:
        pass

    def on_batch_end(self, state: TrainingState, losses: dict[str, float]) -> None:
        pass

    def on_epoch_end(self, state: TrainingState, row: dict[str, Any]) -> None:
        pass

    def on_fit_end(self, state: TrainingState) -> None:
        pass
