"""Runs: train and score one configuration once, store it under ``runs/experiments/<key>/``,
and return the stored result whenever it is asked for again.

A run is sized by epochs, never by time: one that hits its ``time_limit`` raises
``TimeLimitReached`` and is not stored, so a stored result never depends on how busy the
machine was. This module is where a run starts (``fingerprints.TRAINING_ROOTS``): a cache key
hashes it and every agkit module it imports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from filelock import FileLock, Timeout

from agkit.data import make_loader
from agkit.engine.callback_list import run_callbacks
from agkit.engine.device import resolve_device, threads
from agkit.engine.time_limit import TimeLimitWarning
from agkit.experiments.configs import RunConfig
from agkit.experiments.errors import DamagedRunError, TimeLimitReached
from agkit.experiments.fingerprints import check_source_loaded
from agkit.experiments.models import build_model
from agkit.experiments.splits import (
    make_datasets,
    make_splits,
    propagated_masks,
    propagation_scores,
    training_loader,
)
from agkit.guidance import CAMGuidance
from agkit.method.camnet import CAMNet
from agkit.method.predict import evaluate
from agkit.method.train import decay_step, fit
from agkit.propagation import Propagated

EVAL_BATCH_SIZE = 64  # small batches score faster than large ones on a CPU (cache-friendly)

SPLIT_TAGS = {
    "val": "val",
    "test_id": "id",
    "test_shifted": "shifted",
    "val_shifted": "val_shifted",
}
SCORES = ("accuracy", "auc", "mass_in_mask", "pointing_game", "iou")


def run_folder(config: RunConfig, runs_dir="runs") -> Path:
    return Path(runs_dir) / "experiments" / config.key()


def _read_stored(path: Path, read):
    """``read(path)`` of a stored run's file; DamagedRunError naming the folder and the fix
    when the file is empty, cut short or edited (a run is written whole, so only a hand,
    a full disk or a broken copy can leave it so). Nothing is deleted."""
    try:
        return read(path)
    except Exception as error:  # JSON, pickle and zip readers raise many kinds
        first_line = (str(error).splitlines() or [""])[0][:100]
        raise DamagedRunError(
            f"the stored run in {path.parent} is damaged: {path.name} "
            f"({path.stat().st_size:,} bytes) cannot be read ({type(error).__name__}: "
            f"{first_line}). Delete that folder and run again to train the run anew."
        ) from None


def read_result(path: Path) -> dict:
    """A stored run's result.json; DamagedRunError when it cannot be read."""
    return _read_stored(path, lambda p: json.loads(p.read_text()))


def is_stored(config: RunConfig, runs_dir="runs") -> bool:
    """Whether the run's result is in ``runs_dir`` (so ``run`` returns it without training)."""
    return (run_folder(config, runs_dir) / "result.json").exists()


def run(config: RunConfig, runs_dir="runs", *, progress: bool = True, device=None) -> dict:
    """Train and score one configuration, or return its stored result.

    device: where to train (None: a GPU when there is one). It is not part of the key: a
    run trained on a GPU is reused on a CPU; the result records where it was trained. On a
    CPU a run trains with one torch thread, whatever the process's setting, so its numbers
    do not depend on the process (or machine) it was trained in.

    Returns a flat dict: the config's fields (all but time_limit), key, label, source_hash,
    masks_hash, then for every split tag (val, id, shifted, val_shifted) accuracy_<tag>, auc_<tag>,
    mass_in_mask_<tag>, pointing_game_<tag>, iou_<tag>, plus mass_in_mask (= on the
    shifted test split), epochs_run (= epochs: a shorter run is never stored),
    train_seconds and device.

    Raises TimeLimitReached, storing nothing, when training needs more than
    ``config.time_limit`` seconds, and NoMasksError when ``masks_from`` holds no mask.
    """
    folder = run_folder(config, runs_dir)
    result_file = folder / "result.json"
    if result_file.exists():
        return read_result(result_file)

    check_source_loaded()
    device = resolve_device(device)
    with _training_lock(config, folder, progress):
        if result_file.exists():  # another process trained it while this one waited
            return read_result(result_file)
        # One torch thread on a CPU: the thread count changes the order of float sums and with
        # it the last digits of every weight, so a run in a notebook's own process equals the
        # same run in run_many's one-thread workers.
        with threads(1, device):
            return _train_and_store(config, folder, device, progress)


@contextlib.contextmanager
def _training_lock(config: RunConfig, folder: Path, progress: bool):
    """Hold the run's lock (``<key>.lock`` beside its folder) while it trains, so that two
    processes on one runs folder (two notebooks, or ``make course`` and its background
    trainer) never train one run twice: the second waits, then reads the stored result.

    The operating system releases the lock of a process that dies. The wait is bounded by
    twice the run's time limit (a run past it stops by itself) plus a minute for scoring.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{folder}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            print(f"{config.label} (seed {config.seed}): another process trains it; waiting.")
        limit = config.time_limit
        try:
            lock.acquire(timeout=-1 if limit is None else 2 * limit + 60)
        except Timeout:
            raise TimeLimitReached(
                f"{config.label} (seed {config.seed}): another process has been training this "
                f"run for longer than its time limit allows; it holds {lock.lock_file}. Stop "
                f"that process (or the notebook running it) and run this cell again."
            ) from None
    try:
        yield
    finally:
        lock.release()


def fit_settings(config: RunConfig) -> dict:
    """The arguments of ``fit`` that train a run of ``config`` (besides the model, the
    batches of ``training_loader``, the device and the callbacks): the one recipe of every
    course run."""
    return {
        "lam": config.lam,
        "epochs": config.epochs,
        "lr": config.lr,
        "lr_step": decay_step(config.epochs, config.lr_decay_at),  # then lr / 10
        "lr_gamma": 0.1,
        "guidance": CAMGuidance(resolution=config.resolution),
        "seed": config.seed,
    }


def _train_and_store(config: RunConfig, folder: Path, device: torch.device, progress: bool) -> dict:
    datasets = make_datasets(config)
    model = build_model(config)
    train_loader = training_loader(config, datasets["train"])
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # fit warns and keeps the whole epochs it finished; a course run is all or nothing.
            warnings.simplefilter("ignore", TimeLimitWarning)
            history = fit(
                model,
                train_loader,
                **fit_settings(config),
                device=device,
                callbacks=run_callbacks(progress=progress, time_limit=config.time_limit),
            )
        epochs_run = len(history)
        stopped = bool(history.attrs.get("stopped_by_time_limit"))
    except TimeoutError:  # the limit passed before the first epoch
        epochs_run, stopped = 0, True
    seconds = time.perf_counter() - started
    if stopped or epochs_run < config.epochs:
        raise TimeLimitReached(
            f"{config.label} (seed {config.seed}) ran past its time limit of "
            f"{config.time_limit:g} s after {epochs_run} of {config.epochs} epochs; its result "
            f"was not stored. Use a smaller profile, a GPU, a packed cache (use_cache) or a "
            f"larger time_limit (None: no limit)."
        )

    result = dict(
        config.fields(),
        key=config.key(),
        label=config.label,
        **config.fingerprints(),
        epochs_run=epochs_run,
    )
    for split, tag in SPLIT_TAGS.items():
        scores = evaluate(model, make_loader(datasets[split], EVAL_BATCH_SIZE))
        for metric in SCORES:
            result[f"{metric}_{tag}"] = float(scores[metric])
    result["mass_in_mask"] = result["mass_in_mask_shifted"]
    if config.propagation:
        result.update(propagation_scores(config, make_splits(config)))
    result["train_seconds"] = round(seconds, 2)
    result["device"] = device.type

    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / "model.pt.tmp"
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, model_file)
    model_file.replace(folder / "model.pt")
    history.to_csv(folder / "history.csv", index=False)
    if config.propagation:  # the masks it trained with, so that a figure need not draw them again
        propagated = propagated_masks(config)  # memoised: not trained again
        saved = dict(dataclasses.asdict(propagated), masks=propagated.masks.to(torch.uint8))
        torch.save(saved, folder / "propagated.pt")  # 0/1 masks as bytes: a quarter the size
    temporary = folder / "result.json.tmp"
    temporary.write_text(json.dumps(result, indent=1, default=str))
    temporary.replace(folder / "result.json")  # the result appears once everything is saved
    return read_result(folder / "result.json")  # the form of a stored result


def load_model(config: RunConfig, runs_dir="runs", device=None) -> CAMNet:
    """The trained model of a run, on the CPU (trains it first, on ``device``, if needed)."""
    folder = run_folder(config, runs_dir)
    if not (folder / "result.json").exists():
        run(config, runs_dir, device=device)
    model = build_model(config)
    weights = _read_stored(
        folder / "model.pt", lambda p: torch.load(p, map_location="cpu", weights_only=True)
    )
    model.load_state_dict(weights)
    return model.eval()


def load_propagated(config: RunConfig, runs_dir="runs", device=None) -> Propagated:
    """The masks a propagating run trained with (``splits.propagated_masks``), as it stored
    them (trains it first, on ``device``, if needed): masks n x 1 x S x S, confidence n and
    drawn n, for its training images in order."""
    if not config.propagation:
        raise ValueError(f"{config.label} propagates no masks; set its propagation first.")
    folder = run_folder(config, runs_dir)
    if not (folder / "result.json").exists():
        run(config, runs_dir, device=device)
    if not (folder / "propagated.pt").is_file():  # deleted by hand: propagation is seeded,
        return propagated_masks(config)  # so drawing the masks again gives the same ones
    saved = _read_stored(folder / "propagated.pt", lambda p: torch.load(p, weights_only=True))
    return Propagated(**dict(saved, masks=saved["masks"].to(torch.float32)))


def load_history(config: RunConfig, runs_dir="runs") -> pd.DataFrame:
    """The stored run's training history, one row per epoch."""
    return _read_stored(run_folder(config, runs_dir) / "history.csv", pd.read_csv)
