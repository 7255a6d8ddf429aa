"""Checkpoints: save a run after every epoch, and resume it exactly.

``Checkpoint(path)`` is a callback of ``fit``. It writes the model, optimiser, scheduler,
history, configuration and torch's random state after every epoch, and at the end the model
``fit`` returns (after BatchNorm recalibration), so that reloading the file gives exactly that
model. ``Checkpoint(path, resume=True)`` continues from the file when it exists: its
configuration must equal this call's (only ``epochs`` may grow), or the run is refused with a
message naming every difference; a finished checkpoint is returned as it is. Several
processes (torchrun): only process 0 writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from agkit.engine import distributed
from agkit.engine.batchnorm import norm_buffers
from agkit.engine.callbacks import Callback, TrainingState

CHECKPOINT_FORMAT = 3


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    epoch: int = 0,
    history: pd.DataFrame | None = None,
    **extra: Any,
) -> Path:
    """Write model (+ optimiser, scheduler, epoch, history, RNG state) atomically.

    ``extra`` items (``Checkpoint`` stores ``config``, ``train_buffers``, ``recalibrated``,
    ``scaler`` and ``attrs``) are saved alongside.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer else None,
        "scheduler": scheduler.state_dict() if scheduler else None,
        "epoch": epoch,
        "history": history.to_dict("records") if history is not None else [],
        "torch_rng": torch.get_rng_state(),
        **extra,
    }
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)  # a crash mid-save leaves the previous checkpoint intact
    return path


class UnreadableCheckpoint(ValueError):
    """A checkpoint file that is empty, cut short or not one ``save_checkpoint`` wrote."""


class ResumeMismatch(ValueError):
    """A resumed run asked for other settings than its checkpoint was trained with."""


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The state ``save_checkpoint`` wrote to ``path``, on the CPU; UnreadableCheckpoint,
    naming the file and the fix, when it cannot be read (the file is left as it is)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or pass the right path.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        problem = "" if isinstance(state, dict) and "model" in state else "it holds no model"
    except Exception as error:  # torch raises EOFError, RuntimeError, UnpicklingError, ...
        first_line = (str(error).splitlines() or [""])[0]
        problem = f"{type(error).__name__}: {first_line[:100]}"
    if problem:
        raise UnreadableCheckpoint(
            f"the checkpoint {path} ({path.stat().st_size:,} bytes) cannot be read ({problem}): "
            "it is empty, cut short or not an agkit checkpoint. Restore it from a copy, or "
            "delete it to train the run again from the start."
        )
    return state


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> dict[str, Any]:
    """Restore what save_checkpoint wrote; returns the raw state (epoch, history, ...).

    The model receives the weights ``fit`` returned (after BatchNorm recalibration).
    """
    state = read_checkpoint(path)
    restore(state, model, optimizer, scheduler)
    return state


def restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> None:
    """Load a checkpoint's state (``read_checkpoint``) into the model, optimiser and scheduler."""
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler"):
        scheduler.load_state_dict(state["scheduler"])


def check_resume_config(
    path: str | os.PathLike[str], stored: dict[str, Any] | None, asked: dict[str, Any]
) -> None:
    """Raise ResumeMismatch naming every setting in which a checkpoint and a call differ."""
    if stored is None:
        raise ResumeMismatch(
            f"the checkpoint {path} stores no training configuration (it was "
            "written by an older agkit); delete it to train again."
        )
    differences = [
        f"{key}={stored.get(key)!r}, this call asks {key}={asked.get(key)!r}"
        for key in sorted(set(stored) | set(asked))
        if stored.get(key) != asked.get(key)
    ]
    if differences:
        raise ResumeMismatch(
            f"checkpoint {path} was trained with "
            + "; with ".join(differences)
            + f". Delete {path} to start again, or pass the same values to resume."
        )


class Checkpoint(Callback):
    """Save after every epoch and at the end; with ``resume=True`` continue from ``path``."""

    def __init__(self, path: str | os.PathLike[str], resume: bool = False):
        self.path, self.resume = Path(path), resume
        self.train_buffers: dict[str, torch.Tensor] = {}
        self.rng_after_training = torch.get_rng_state()

    def on_fit_start(self, state: TrainingState) -> None:
        if not (self.resume and self.path.exists()):
            return
        stored = read_checkpoint(self.path)
        check_resume_config(self.path, stored.get("config"), state.config)
        if stored["epoch"] > state.epochs:
            raise ResumeMismatch(
                f"checkpoint {self.path} holds {stored['epoch']} epochs, this call "
                f"asks for {state.epochs}; pass epochs>={stored['epoch']} or delete it."
            )
        restore(stored, state.model, state.optimizer, state.scheduler)
        if state.precision is not None:
            state.precision.load_state_dict(stored.get("scaler"))
        state.history, state.epoch = list(stored["history"]), stored["epoch"]
        torch.set_rng_state(stored["torch_rng"])
        recalibrates = state.config.get("recalibrate_bn", False)
        if state.epoch == state.epochs and (stored.get("recalibrated") or not recalibrates):
            state.finished = True  # the stored model is the answer
            state.attrs.update(stored.get("attrs") or {})
        elif stored.get("train_buffers"):  # continue from the statistics training left
            state.model.load_state_dict(stored["train_buffers"], strict=False)

    def on_epoch_end(self, state: TrainingState, row: dict[str, Any]) -> None:
        self.train_buffers = norm_buffers(state.model)
        self.rng_after_training = torch.get_rng_state()
        self._save(state, recalibrated=False)

    def on_fit_end(self, state: TrainingState) -> None:
        if state.history and not state.finished:
            # train_buffers keep the statistics training had, for resuming with more epochs;
            # torch_rng is the state right after training, which a resumed run continues from
            self._save(
                state,
                recalibrated=state.recalibrated,
                train_buffers=self.train_buffers,
                torch_rng=self.rng_after_training,
            )

    def _save(self, state: TrainingState, **extra: Any) -> None:
        if not distributed.is_main():
            return
        save_checkpoint(
            self.path,
            state.model,
            state.optimizer,
            state.scheduler,
            state.epoch,
            pd.DataFrame(state.history),
            config=state.config,
            attrs=state.attrs,
            scaler=state.precision.state_dict() if state.precision is not None else None,
            **extra,
        )
