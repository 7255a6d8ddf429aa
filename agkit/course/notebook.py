"""The one call that opens every course notebook.

    from agkit.course.notebook import setup
    nb = setup(profile=profile, seed=seed, runs_dir=runs_dir, device=device)

does what each notebook used to repeat in its first code cell: it picks the profile, the
device and the runs folder, seeds the random generators, sets the plotting and table
defaults and makes the kit's progress bars plain text, then prints one line saying what
it chose. The returned ``Setup`` carries ``.profile`` (an ``agkit.experiments.Profile``),
``.device`` (a ``torch.device``), ``.runs_dir`` (a ``pathlib.Path``) and ``.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from agkit.engine import progress
from agkit.engine.device import resolve_device, set_threads

if TYPE_CHECKING:
    from agkit.experiments.profiles import Profile


@dataclass(frozen=True)
class Setup:
    """What a notebook runs with."""

    profile: Profile  # imported lazily at run time: agkit.experiments pulls in the data code
    device: torch.device
    runs_dir: Path
    seed: int

    def __str__(self) -> str:
        p = self.profile
        return (
            f"profile={p.name} · images {p.size}x{p.size} · backbone {p.backbone} · "
            f"device {self.device} · seed {self.seed} · runs in {self.runs_dir}"
        )


def plotting_defaults() -> None:
    """Compact figures and tables that fit a notebook column."""
    import matplotlib.pyplot as plt
    import pandas as pd

    pd.set_option("display.precision", 3)
    plt.rcParams.update({"figure.dpi": 90, "axes.spines.top": False, "axes.spines.right": False})


def setup(
    profile: str = "workshop",
    seed: int = 0,
    runs_dir=None,
    device="auto",
    *,
    drive: bool = False,
    quiet: bool = False,
) -> Setup:
    """Prepare a course notebook; see the module docstring.

    Args:
        profile: "ci", "workshop" or "full" (``agkit.experiments.PROFILES``).
        seed: seeds Python, NumPy and torch now, and names the run a notebook shows.
        runs_dir: folder for data, masks and trained runs; None:
            ``agkit.course.colab.default_runs_dir(drive)`` (the checkout's runs/, a per-user cache
            folder, or on Colab /content/agkit-runs).
            A relative path is taken from the current directory (a notebook's own folder).
        device: "auto" (or None), "cpu", "cuda", "mps", or a ``torch.device``.
        drive: on Colab, keep runs (and drawn masks) on Google Drive, so notebooks opened
            in other runtimes find them.
        quiet: do not print the one-line summary.

    Returns:
        a ``Setup`` with ``.profile``, ``.device``, ``.runs_dir`` (absolute) and ``.seed``.
    """
    from agkit import experiments
    from agkit.course import colab
    from agkit.method.train import set_seed

    chosen = experiments.get_profile(profile)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}.")
    folder = colab.default_runs_dir(drive) if runs_dir is None else Path(runs_dir).expanduser()
    folder = folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"runs_dir {str(folder)!r} is a file; pass a folder (it is created when missing)."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"runs_dir {str(folder)!r} cannot be created ({error.strerror}); pass a folder "
            "you can write to, or runs_dir=None for the default."
        ) from None
    set_seed(seed)
    device_chosen = resolve_device(device)
    if device_chosen.type == "cpu":
        # The same thread count as the course's cached runs, so a model trained in the notebook
        # gets their numbers; and one busy core elsewhere no longer stalls a two-thread loop.
        set_threads(1)
    plotting_defaults()
    progress.use_text_bars()
    colab.enable_widget_manager()  # the annotation widget needs it on Colab; no-op elsewhere
    result = Setup(profile=chosen, device=device_chosen, runs_dir=folder, seed=seed)
    if not quiet:
        print(result)
    return result
