"""The callbacks of a run, chosen in one place: a course run, a recipe and the command line
each ask for some of bars, a checkpoint, a time limit and a log, always in this order."""

from __future__ import annotations

import os

from agkit.engine.callbacks import Callback
from agkit.engine.checkpoint import Checkpoint
from agkit.engine.progress import Progress
from agkit.engine.time_limit import TimeLimit


def run_callbacks(
    *,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    time_limit: float | None = None,
    log: Callback | None = None,
) -> list[Callback]:
    """``fit``'s callbacks: ``Progress`` bars (with ``progress``), a ``Checkpoint`` written
    after every epoch to ``checkpoint`` (continued from it with ``resume``), a ``TimeLimit``
    of ``time_limit`` seconds checked before each epoch, then ``log`` (e.g. a
    TensorBoardLog). A run its time limit stops has saved its last epoch, so it resumes."""
    chosen: list[Callback] = [Progress()] if progress else []
    if checkpoint is not None:
        chosen.append(Checkpoint(checkpoint, resume=resume))
    if time_limit is not None:
        chosen.append(TimeLimit(time_limit))
    if log is not None:
        chosen.append(log)
    return chosen
