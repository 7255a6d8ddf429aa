"""Train the course's runs ahead, in the background, while ``make course`` runs the notebooks.

A notebook trains its runs one per core, but between them cores wait: a kernel starts, a
figure is drawn, notebook 3 trains one network in the open on one core, notebook 5 reads
radiographs. So ``make course`` starts this trainer beside the notebooks at the lowest CPU
priority (nice 19): it gets only the cycles the notebooks leave, and spends them on the runs
the notebooks will ask for later (``experiments.course_configs``).

It first trains what notebook 3 asks for first (``choose_lambda``, whose runs notebook 1's
baseline is one of), then notebook 4's sections from the last to the first, then the rest of
notebook 3, so that it meets the notebooks, which go forward, as late as possible. Beside it
``make course`` runs notebook 5 before notebook 4 (``notebook_order``). Each run
trains under its lock (``experiments.store``): a notebook that reaches a run the trainer is
training waits for it, and no run is trained twice. Every run seeds itself and trains with
one thread, so which process trains it changes no number.

    python -m agkit.course.train_ahead --profile workshop --runs runs [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from agkit import experiments
from agkit.engine.device import resolve_device
from agkit.experiments.comparisons import ablation_configs, course_configs
from agkit.experiments.configs import RunConfig
from agkit.experiments.profiles import PROFILES, Profile


def ahead_order(profile: Profile, lam: float) -> list[list[RunConfig]]:
    """The groups of runs the trainer takes after ``choose_lambda``, in order: notebook 4's
    ablations from the last section to the first, then notebook 3's runs with the chosen
    ``lam`` (its comparison and the random-choice control)."""
    return [*reversed(ablation_configs(profile, lam).values()), course_configs(profile, lam)["03"]]


def notebook_order(notebooks: list[Path]) -> list[Path]:
    """The order ``make course`` runs ``notebooks`` in beside the trainer: notebook 5 just
    before notebook 4, the rest as given.

    Notebook 5 needs nothing from notebook 4. It trains its two networks in the open, on one
    core, on its own demo data: no cached run the trainer could train for it. Run last, it
    left the second core idle for its whole minute; run before notebook 4, the trainer spends
    that core on notebook 4's runs.
    """
    order = list(notebooks)
    prefixes = [notebook.name[:2] for notebook in order]
    if "04" in prefixes and "05" in prefixes:
        moved = order.pop(prefixes.index("05"))
        order.insert(prefixes.index("04"), moved)
    return order


def start(profile: str, runs_dir: Path, log: Path, device: str | None = None) -> subprocess.Popen:
    """Start the trainer in a process group of its own (so that ``stop`` ends its workers
    too, and a Ctrl-C meant for the notebooks does not reach it), its output going to
    ``log``. It stays in the caller's session: Linux shares the CPU fairly between sessions
    (autogroups), and nice would then only rank the trainer against its own workers."""
    command = [sys.executable, "-m", "agkit.course.train_ahead", "--profile", profile]
    command += ["--runs", str(runs_dir), "--nice", "19"] + (["--device", device] if device else [])
    with open(log, "w") as output:
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, preexec_fn=os.setpgrp
        )


def supported(device) -> bool:
    """Whether ``make course`` trains ahead: on a CPU (beside the notebooks it would crowd
    a GPU) and where process groups exist (not on Windows)."""
    return resolve_device(device).type == "cpu" and hasattr(os, "killpg")


def stop(process: subprocess.Popen) -> None:
    """End the trainer and its workers if they still run. A run they were training is not
    stored (a result appears only once complete) and its lock is released."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def report(process: subprocess.Popen, log: Path) -> str:
    """One line on how the trainer ended (call it after ``stop``)."""
    if process.returncode == 0:
        lines = log.read_text().splitlines()
        return f"background trainer: {lines[-1] if lines else 'done'}"
    if process.returncode in (-signal.SIGTERM, -signal.SIGKILL):
        return "background trainer: stopped when the notebooks ended (they trained what it left)"
    return (
        f"background trainer: failed (exit status {process.returncode}); the notebooks trained "
        f"the runs it left, so no number depends on it. Its output is in {log}."
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="workshop", choices=list(PROFILES))
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--device", default=None)
    parser.add_argument("--nice", type=int, default=0, help="lower the CPU priority by this")
    args = parser.parse_args(argv)
    try:  # checked here: a worker's error would surface as a traceback from a future
        resolve_device(args.device or "auto")
        Path(args.runs).mkdir(parents=True, exist_ok=True)
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        parser.error(f"--runs {args.runs} cannot be made a folder ({error.strerror}); pass one.")
    if args.nice:
        os.nice(args.nice)  # before the workers start: they inherit it

    profile = experiments.get_profile(args.profile)
    lam, _ = experiments.choose_lambda(profile, args.runs, progress=False, device=args.device)
    groups = ahead_order(profile, lam)
    runs = {config.key(): config for group in groups for config in group}
    missing = sum(not experiments.is_stored(config, args.runs) for config in runs.values())
    for group in groups:  # one call per group, so that run_many keeps the groups in order
        experiments.run_many(group, args.runs, progress=False, device=args.device)
    print(
        f"trained ahead with lambda {lam:g}: {missing} of the {len(runs)} runs after it were "
        "not stored when it started (it or a notebook trained them)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
