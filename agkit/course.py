"""Course plumbing: profiles, cached experiment runs on SynthFrac, and the runs/ folder.

Every training run in the notebooks is described by a ``RunConfig``. ``run(config)``
trains it once and stores the model, its training history and its scores under
``runs/experiments/<key>/``; asking again returns the stored result at once. That is how
a notebook can be rerun quickly, how each notebook can stand alone (it makes whatever an
earlier notebook would have made), and how ``make course`` collects the results.

Profiles set the size of everything:

* ``ci``: the smallest run that still exercises every code path (whole course in minutes);
* ``workshop`` (default): shows the paper's effect clearly on a 2-core laptop;
* ``full``: bigger images and backbone, for a GPU or Colab.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from agkit.data import GuidedDataset, MaskStore, make_loader, make_synthfrac, synthetic
from agkit.data.mask_quality import degrade
from agkit.models import CAMNet
from agkit.train import evaluate, fit

CACHE_VERSION = 1  # bump when a change to the code makes stored results stale
TEST_SEED = 10_000  # the test splits are the same for every run, whatever its seed


@dataclass(frozen=True)
class Profile:
    """How big the course's experiments are."""

    name: str
    size: int  # image side in pixels
    backbone: str
    n_train: int
    n_val: int
    n_test: int
    epochs: int
    batch_size: int
    lr: float
    seeds: tuple  # seeds of the main baseline-vs-guided comparison
    lambdas: tuple  # candidates for lambda, chosen on the validation split
    time_limit: float  # a safety net only: runs are sized by epochs, so results do not depend on the machine
    # ablations (notebook 04): on a smaller training set, where guidance matters most
    ablation_n_train: int
    ablation_seeds: tuple
    ablation_lambdas: tuple
    ablation_sizes: tuple
    ablation_fractions: tuple
    ablation_qualities: tuple
    data: dict = field(default_factory=dict)  # extra make_synthfrac parameters


PROFILES = {
    "ci": Profile(
        name="ci", size=64, backbone="tiny", n_train=128, n_val=64, n_test=96, epochs=2,
        batch_size=32, lr=3e-3, seeds=(0, 1), lambdas=(1.0, 3.0), time_limit=60,
        ablation_n_train=64, ablation_seeds=(0,), ablation_lambdas=(0.0, 1.0),
        ablation_sizes=(32, 64), ablation_fractions=(0.5, 1.0), ablation_qualities=("exact", "box"),
    ),
    "workshop": Profile(
        name="workshop", size=64, backbone="tiny", n_train=500, n_val=300, n_test=600, epochs=24,
        batch_size=32, lr=3e-3, seeds=(0, 1, 2), lambdas=(1.0, 3.0, 10.0), time_limit=300,
        ablation_n_train=250, ablation_seeds=(0, 1, 2), ablation_lambdas=(0.0, 0.3, 3.0),
        ablation_sizes=(125, 250, 500), ablation_fractions=(0.1, 0.3, 1.0),
        ablation_qualities=("exact", "box", "dilated", "shifted"),
    ),
    "full": Profile(
        name="full", size=128, backbone="resnet18", n_train=2000, n_val=500, n_test=1000,
        epochs=20, batch_size=64, lr=1e-3, seeds=(0, 1, 2), lambdas=(0.3, 1.0, 3.0),
        time_limit=600, ablation_n_train=500, ablation_seeds=(0, 1, 2),
        ablation_lambdas=(0.0, 0.01, 0.1, 1.0, 10.0), ablation_sizes=(250, 500, 1000, 2000, 4000),
        ablation_fractions=(0.1, 0.25, 0.5, 1.0), ablation_qualities=("exact", "box", "dilated", "shifted"),
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` ("ci", "workshop" or "full")."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}.")
    return PROFILES[name]


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides the outcome of one training run (and so its cache key)."""

    lam: float = 0.0
    pooling: str = "avg"
    resolution: str = "feature"
    n_train: int = 600
    n_val: int = 300
    n_test: int = 600
    annotated_fraction: float = 1.0
    mask_quality: str = "exact"
    seed: int = 0
    data_seed: int | None = None  # training/validation data drawn with this seed (None: seed)
    size: int = 64
    backbone: str = "tiny"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    time_limit: float = 60.0
    data: tuple = ()  # sorted (name, value) pairs passed to make_synthfrac
    masks_from: str | None = None  # a MaskStore folder with drawn masks; None = built-in
    masks_version: str = ""  # fingerprint of that store, so new drawings retrain

    @property
    def guided(self) -> bool:
        return self.lam > 0

    @property
    def label(self) -> str:
        return f"guided (lambda={self.lam:g})" if self.guided else "baseline"

    def key(self) -> str:
        # SynthFrac's defaults are part of the key: a new generator default means new data.
        text = json.dumps([CACHE_VERSION, dataclasses.asdict(self), synthetic.DEFAULTS],
                          sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def baseline_config(profile: Profile, seed: int = 0, **changes) -> RunConfig:
    """The baseline of a profile: average pooling, no attention loss."""
    return _config(profile, seed, **{"lam": 0.0, "pooling": "avg", **changes})


def guided_config(profile: Profile, lam: float, seed: int = 0, **changes) -> RunConfig:
    """Guided training of a profile: softmax pooling plus lam * attention loss."""
    return _config(profile, seed, **{"lam": lam, "pooling": "softmax", **changes})


def _config(profile: Profile, seed: int, **changes) -> RunConfig:
    base = dict(n_train=profile.n_train, n_val=profile.n_val, n_test=profile.n_test, seed=seed,
                size=profile.size, backbone=profile.backbone, epochs=profile.epochs,
                batch_size=profile.batch_size, lr=profile.lr, time_limit=profile.time_limit,
                data=tuple(sorted(profile.data.items())))
    base.update(changes)
    return RunConfig(**base)


def store_fingerprint(folder) -> str:
    """A short hash of a MaskStore's index: changes whenever a mask is drawn or deleted."""
    index = Path(folder) / "index.json"
    return hashlib.sha1(index.read_bytes()).hexdigest()[:12] if index.exists() else ""


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def make_splits(config: RunConfig) -> dict:
    """The four SynthFrac splits of a run: train, val, test_id, test_shifted."""
    data = dict(config.data)
    seed = config.seed if config.data_seed is None else config.data_seed
    return {
        "train": make_synthfrac(config.n_train, size=config.size, seed=seed, split="train", **data),
        "val": make_synthfrac(config.n_val, size=config.size, seed=seed, split="val", **data),
        "test_id": make_synthfrac(config.n_test, size=config.size, seed=TEST_SEED, split="test_id", **data),
        "test_shifted": make_synthfrac(config.n_test, size=config.size, seed=TEST_SEED,
                                       split="test_shifted", **data),
    }


def training_masks(config: RunConfig, train) -> torch.Tensor | MaskStore:
    """The masks that guide a run: built-in ones (maybe degraded) or a user's MaskStore."""
    if config.masks_from is not None:
        return MaskStore(config.masks_from)
    return degrade(train.masks, config.mask_quality, seed=config.seed)


def make_datasets(config: RunConfig, splits: dict | None = None) -> dict:
    """GuidedDatasets for every split; only the training split has degraded/partial masks."""
    splits = splits or make_splits(config)
    train = splits["train"]
    datasets = {"train": GuidedDataset(train.images, train.labels, training_masks(config, train),
                                       image_ids=train.image_ids, meta=train.meta,
                                       annotated_fraction=config.annotated_fraction, seed=config.seed)}
    for name in ("val", "test_id", "test_shifted"):
        datasets[name] = GuidedDataset.from_synthfrac(splits[name])
    return datasets


# ---------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------

SPLIT_TAGS = {"val": "val", "test_id": "id", "test_shifted": "shifted"}


def run_folder(config: RunConfig, runs_dir="runs") -> Path:
    return Path(runs_dir) / "experiments" / config.key()


def build_model(config: RunConfig) -> CAMNet:
    torch.manual_seed(config.seed)
    return CAMNet(config.backbone, num_classes=2, in_channels=1, pooling=config.pooling)


def run(config: RunConfig, runs_dir="runs", *, progress: bool = True, device=None) -> dict:
    """Train and score one configuration, or return its stored result.

    Returns a flat dict: the config's fields, then for every split tag (val, id,
    shifted) acc_<tag>, auc_<tag>, mass_in_mask_<tag>, pointing_game_<tag>, iou_<tag>,
    plus mass_in_mask (= on the shifted test split), train_seconds and epochs_run.
    """
    folder = run_folder(config, runs_dir)
    result_file = folder / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())

    datasets = make_datasets(config)
    model = build_model(config)
    train_loader = make_loader(datasets["train"], config.batch_size, shuffle=True, seed=config.seed)
    started = time.perf_counter()
    history = fit(model, train_loader, None, lam=config.lam, epochs=config.epochs, lr=config.lr,
                  resolution=config.resolution, seed=config.seed, device=device,
                  progress=progress, time_limit=config.time_limit)
    seconds = time.perf_counter() - started

    result = dict(dataclasses.asdict(config), key=config.key(), label=config.label,
                  train_seconds=round(seconds, 2), epochs_run=len(history))
    for split, tag in SPLIT_TAGS.items():
        scores = evaluate(model, make_loader(datasets[split], 256))
        for metric, name in (("accuracy", "acc"), ("auc", "auc"), ("mass_in_mask", "mass_in_mask"),
                             ("pointing_game", "pointing_game"), ("iou", "iou")):
            result[f"{name}_{tag}"] = float(scores[metric])
    result["mass_in_mask"] = result["mass_in_mask_shifted"]

    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "model.pt")
    history.to_csv(folder / "history.csv", index=False)
    temporary = folder / "result.json.tmp"
    temporary.write_text(json.dumps(result, indent=1, default=str))
    temporary.replace(result_file)  # the result appears only once everything is saved
    return json.loads(result_file.read_text())  # the same form as a cached result


def load_model(config: RunConfig, runs_dir="runs") -> CAMNet:
    """The trained model of a run (trains it first if it was never run)."""
    folder = run_folder(config, runs_dir)
    if not (folder / "result.json").exists():
        run(config, runs_dir)
    model = build_model(config)
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def load_history(config: RunConfig, runs_dir="runs") -> pd.DataFrame:
    return pd.read_csv(run_folder(config, runs_dir) / "history.csv")


def _start_worker() -> None:
    torch.set_num_threads(1)  # two one-thread processes beat one two-thread process on small nets


def _run_quietly(config: RunConfig, runs_dir) -> dict:
    return run(config, runs_dir, progress=False, device="cpu")


def default_jobs() -> int:
    """Parallel training processes: one per core (at most 4) on a CPU, one on a GPU."""
    if torch.cuda.is_available():
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def run_many(configs, runs_dir="runs", *, desc: str = "runs", progress: bool = True,
             jobs: int | None = None) -> pd.DataFrame:
    """Run (or fetch) several configurations, one progress bar over them all.

    Uncached runs are trained ``jobs`` at a time in separate processes (default: one per
    CPU core); each run seeds itself, so the order does not change any result.
    Returns one row per config, in the order given.
    """
    configs = list(configs)
    todo = list({c.key(): c for c in configs if not (run_folder(c, runs_dir) / "result.json").exists()}.values())
    jobs = default_jobs() if jobs is None else jobs
    bar = tqdm(total=len(configs), desc=desc, disable=not progress)
    bar.update(len(configs) - sum(1 for c in configs if c.key() in {t.key() for t in todo}))
    if jobs > 1 and len(todo) > 1:
        context = multiprocessing.get_context("spawn")  # safe with torch and inside Jupyter
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker) as pool:
            futures = {pool.submit(_run_quietly, config, str(runs_dir)): config for config in todo}
            for future in as_completed(futures):
                future.result()  # re-raises a worker's error here
                bar.update(sum(1 for c in configs if c.key() == futures[future].key()))
    else:
        for config in todo:
            bar.set_postfix_str(config.label)
            run(config, runs_dir, progress=False)
            bar.update(sum(1 for c in configs if c.key() == config.key()))
    bar.close()
    return pd.DataFrame([run(config, runs_dir) for config in configs])


def choose_lambda(profile: Profile, runs_dir="runs", *, progress: bool = True, **changes) -> tuple[float, pd.DataFrame]:
    """Pick lambda on the validation split (never on a test split).

    The validation split is drawn like the training split, shortcut included, so its
    accuracy alone cannot tell a shortcut from the fracture; ties within one point of
    accuracy go to the lambda whose CAMs keep more mass inside the validation masks.
    """
    table = run_many([guided_config(profile, lam, seed=profile.seeds[0], **changes) for lam in profile.lambdas],
                     runs_dir, desc="choosing lambda", progress=progress)
    best = table["acc_val"].max()
    contenders = table[table["acc_val"] >= best - 0.01]
    chosen = float(contenders.sort_values("mass_in_mask_val", ascending=False)["lam"].iloc[0])
    return chosen, table[["lam", "acc_val", "mass_in_mask_val"]]


def main_comparison(profile: Profile, runs_dir="runs", *, progress: bool = True, **changes) -> pd.DataFrame:
    """Baseline and guided training over the profile's seeds: one row per run."""
    lam, _ = choose_lambda(profile, runs_dir, progress=progress, **changes)
    shared = {k: v for k, v in changes.items() if k == "data_seed"}  # same images for both
    configs = [baseline_config(profile, seed, **shared) for seed in profile.seeds]
    configs += [guided_config(profile, lam, seed, **changes) for seed in profile.seeds]
    table = run_many(configs, runs_dir, desc="baseline vs guided", progress=progress)
    table["method"] = np.where(table["lam"] > 0, "guided", "baseline")
    return table


SUMMARY_METRICS = ("acc_shifted", "acc_id", "auc_shifted", "mass_in_mask")


def summarize(table: pd.DataFrame, metrics=SUMMARY_METRICS) -> pd.DataFrame:
    """Mean over seeds per method (rows baseline, guided) of the summary metrics."""
    return table.groupby("method")[list(metrics)].mean().reindex(["baseline", "guided"])
