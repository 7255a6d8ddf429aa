"""The errors of the course's runs: a run past its time limit, guidance without masks,
source edited after this process imported it, and a stored run whose files are damaged."""


class TimeLimitReached(RuntimeError):
    """A run needed more than its time limit; nothing of it was stored."""


class NoMasksError(ValueError):
    """Guided training was asked to use a mask store that holds no usable mask."""


class SourceChangedError(RuntimeError):
    """agkit's source changed on disk after this process imported it."""


class DamagedRunError(ValueError):
    """A stored run's file (result.json, model.pt, history.csv, propagated.pt) cannot be read."""
