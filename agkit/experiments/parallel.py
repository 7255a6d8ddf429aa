"""Several runs at once: ``run_many`` trains the runs not stored yet in worker processes
that outlive one call, and returns one row per run; ``start_runs`` queues runs there and
returns at once, so that they train while a notebook does other things."""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

import pandas as pd
import torch

from agkit.engine.device import set_threads
from agkit.engine.progress import bar
from agkit.experiments.configs import RunConfig
from agkit.experiments.fingerprints import source_fingerprint
from agkit.experiments.mask_checks import check_mask_store
from agkit.experiments.store import is_stored, run


def _start_worker() -> None:
    set_threads(1)  # two one-thread processes beat one two-thread process on small nets
    # Jupyter's stop button and kernel shutdown send SIGINT to the whole process group; the
    # notebook's process handles it (run_many cancels what has not started), the workers not.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# The worker processes outlive one run_many call: starting one (importing torch) takes
# seconds, and a notebook calls run_many once per figure. A new pool starts when the
# number of jobs or agkit's source changes, so a worker never runs code older than the key.
_pool: dict = {"key": None, "executor": None, "at_exit": False}
# Runs submitted to the pool and not collected yet, by (runs folder, key): a run_many (or
# start_runs) that asks for one of them waits for it instead of queueing it a second time.
_queued: dict[tuple[str, str], Future] = {}


def _worker_pool(jobs: int) -> ProcessPoolExecutor:
    key = (jobs, source_fingerprint())
    if _pool["key"] != key:
        shutdown_workers()
        context = multiprocessing.get_context("spawn")  # safe with torch and inside Jupyter
        _pool.update(
            key=key,
            executor=ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker),
        )
        if not _pool["at_exit"]:  # the first pool: importing agkit.experiments registers nothing
            atexit.register(shutdown_workers)
            _pool["at_exit"] = True
    return _pool["executor"]


def shutdown_workers() -> None:
    """Stop run_many's worker processes (they stop by themselves when Python exits)."""
    if _pool["executor"] is not None:
        _pool["executor"].shutdown(wait=True, cancel_futures=True)
    _pool.update(key=None, executor=None)
    _queued.clear()


def _run_quietly(config: RunConfig, runs_dir, device) -> dict:
    return run(config, runs_dir, progress=False, device=device)


def default_jobs(device=None) -> int:
    """Parallel training processes: one per core (at most 4) on a CPU, one on a GPU."""
    if device is None:
        on_cpu = not torch.cuda.is_available()
    else:
        on_cpu = torch.device(device).type == "cpu"
    return max(1, min(4, os.cpu_count() or 1)) if on_cpu else 1


def _cost(config: RunConfig) -> float:
    """Rough relative training time of a run: images times epochs, a tenth more for guidance
    at input resolution (``benchmarks/step_ratio.py``: 1.09 of a baseline step, against 1.02
    on the feature grid)."""
    at_input = config.guided and config.resolution == "input"
    return config.n_train * config.epochs * (1.1 if at_input else 1.0)


def _submit(pending: dict, runs_dir, device, jobs: int) -> dict[Future, str]:
    """The futures of the runs of ``pending`` (key -> config), in the order given: those
    already queued, and new ones for the rest."""
    pool = _worker_pool(jobs)
    for key, config in pending.items():
        place = (str(runs_dir), key)
        if place not in _queued or _queued[place].cancelled():
            _queued[place] = pool.submit(_run_quietly, config, str(runs_dir), device)
    return {_queued[str(runs_dir), key]: key for key in pending}


def _train_in_workers(todo: dict, runs_dir, device, jobs: int, done) -> None:
    """Train the configs of ``todo`` (key -> config) in the worker processes.

    Calls ``done(key)`` as each run is stored. When a worker was killed (the pool is
    broken), new workers take over the runs not stored yet, once.
    """
    for attempt in (1, 2):
        pending = {k: c for k, c in todo.items() if not is_stored(c, runs_dir)}
        try:
            futures = _submit(pending, runs_dir, device, jobs)
            try:
                for future in as_completed(futures):
                    _queued.pop((str(runs_dir), futures[future]), None)
                    future.result()  # re-raises a worker's error here
                    done(futures[future])
            except BaseException:  # an error, or a notebook's stop button: stop what is
                for future in _queued.values():  # queued, start_runs' runs too (a started
                    future.cancel()  # run finishes and is stored)
                _queued.clear()
                raise
            return
        except BrokenProcessPool:
            shutdown_workers()
            if attempt == 2:
                raise


def _not_stored(configs, runs_dir) -> dict[str, RunConfig]:
    """key -> config of the runs of ``configs`` not stored yet, once each, in the order
    given. A missing mask store stops here, before any training (not in a worker's future)."""
    todo: dict[str, RunConfig] = {}
    for config in configs:
        key = config.key()
        if key not in todo and not is_stored(config, runs_dir):
            todo[key] = config
    for config in todo.values():
        if config.masks_from is not None:
            check_mask_store(config.masks_from)
    return todo


def start_runs(configs, runs_dir="runs", *, jobs: int | None = None, device=None) -> int:
    """Queue the runs of ``configs`` not stored yet in the worker processes, in the order
    given, and return at once: the number queued.

    They train while the caller goes on (a notebook draws its figures and asks its
    questions meanwhile), and a later ``run_many`` of any of them waits for it rather than
    training it again; its errors surface there. With one job (a GPU, or one core) nothing
    is queued, since the caller's own process would have to train them. The stop button
    (or an error) in a ``run_many`` cancels what is queued and not started.
    """
    jobs = default_jobs(device) if jobs is None else jobs
    pending = _not_stored(configs, runs_dir)
    if jobs < 2 or not pending:
        return 0
    _submit(pending, runs_dir, device, jobs)
    return len(pending)


def run_many(
    configs,
    runs_dir="runs",
    *,
    desc: str = "runs",
    progress: bool = True,
    jobs: int | None = None,
    device=None,
) -> pd.DataFrame:
    """Run (or fetch) several configurations, one progress bar over them all.

    Uncached runs are trained ``jobs`` at a time in separate processes (default: one per
    CPU core, one on a GPU), on ``device``; each run seeds itself, so neither the order
    nor the number of processes changes any result. Returns one row per config, in the
    order given.
    """
    configs = list(configs)
    keys = [config.key() for config in configs]
    todo = _not_stored(configs, runs_dir)
    # Longest runs first: the processes then finish at about the same time. Among equals, one
    # seed after another, so that a worker reuses the images it drew (``splits._split``).
    todo = dict(sorted(todo.items(), key=lambda item: (-_cost(item[1]), item[1].seed)))
    jobs = default_jobs(device) if jobs is None else jobs
    stored = len(set(keys)) - len(todo)
    if progress and not todo:
        print(f"{desc}: all {len(set(keys))} runs are stored in {runs_dir}; nothing to train.")
    # The bar counts only the runs trained now: stored ones would make its rate a fiction.
    label = f"{desc} ({stored} stored)" if stored else desc
    runs_bar = bar(total=len(todo), desc=label, disable=not progress or not todo)
    if jobs > 1 and (len(todo) > 1 or any((str(runs_dir), key) in _queued for key in todo)):
        _train_in_workers(todo, runs_dir, device, jobs, lambda key: runs_bar.update(1))
    else:
        for config in todo.values():
            runs_bar.set_postfix_str(config.label)
            run(config, runs_dir, progress=False, device=device)
            runs_bar.update(1)
    runs_bar.close()
    return pd.DataFrame([run(config, runs_dir) for config in configs])
