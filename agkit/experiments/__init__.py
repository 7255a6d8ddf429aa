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

A stored result is reused only when everything that decides it is unchanged: the
``RunConfig``, the bytes of the mask files it trains with (``masks_from``) and the source
text of the agkit modules that train and score it (``source_files()``). Edit
``agkit/method/loss.py`` or redraw a mask and the affected runs train again. Runs are sized by
epochs, never by time: a run that hits its ``time_limit`` raises ``TimeLimitReached`` and is
not stored, so a stored result never depends on how busy the machine was.

``pack_runs`` and ``use_cache`` move trained runs between machines: an instructor packs a
profile's runs into one archive, students unpack it and redraw every figure in seconds.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import multiprocessing
import numbers
import os
import re
import shutil
import signal
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from agkit.data import GuidedDataset, MaskStore, make_loader, make_synthfrac, synthetic
from agkit.data.mask_quality import degrade
from agkit.experiments.few_masks import ANNOTATED_SHARE, FEW_MASK_LAM, few_mask_loader, with_masks
from agkit.method.camnet import CAMNet
from agkit.method.train import TimeLimitWarning, decay_step, default_device, evaluate, fit
from agkit.propagation import (
    PROPAGATORS,
    Propagated,
    grid_iou,
    marker_share,
    propagate,
    with_propagated,
)

CACHE_VERSION = 2  # bump when the layout of a stored run changes
TEST_SEED = 10_000  # the test splits are the same for every run, whatever its seed
EVAL_BATCH_SIZE = 64  # small batches score faster than large ones on a CPU (cache-friendly)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# The modules a run starts from, relative to PACKAGE_ROOT. A cache key hashes them and every
# agkit module they import, found by reading their import statements (``source_files``), so
# a module added to the training path is hashed without anyone remembering to list it.
TRAINING_ROOTS = ("experiments/__init__.py",)


class TimeLimitReached(RuntimeError):
    """A run needed more than its time limit; nothing of it was stored."""


class NoMasksError(ValueError):
    """Guided training was asked to use a mask store that holds no usable mask."""


class SourceChangedError(RuntimeError):
    """agkit's source changed on disk after this process imported it."""


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
    # Seconds per run after which it stops with TimeLimitReached and stores nothing: a safety
    # net only. Runs are sized by epochs, so their results never depend on the machine.
    time_limit: float | None
    # ablations (notebook 04), on ablation_n_train images: a size where the guided gain is
    # far outside the spread between seeds, or no panel could show anything but noise
    ablation_n_train: int
    ablation_seeds: tuple
    ablation_lambdas: tuple
    ablation_sizes: tuple
    ablation_fractions: tuple
    ablation_qualities: tuple
    data: dict = field(default_factory=dict)  # extra make_synthfrac parameters
    lr_decay_at: float | None = None  # divide lr by 10 after this share of the epochs


PROFILES = {
    "ci": Profile(
        name="ci",
        size=64,
        backbone="tiny",
        n_train=128,
        n_val=64,
        n_test=96,
        epochs=2,
        batch_size=32,
        lr=3e-3,
        seeds=(0, 1),
        lambdas=(1.0, 3.0),
        time_limit=300,
        ablation_n_train=64,
        ablation_seeds=(0,),
        ablation_lambdas=(0.0, 1.0),
        ablation_sizes=(32, 64),
        ablation_fractions=(0.5, 1.0),
        ablation_qualities=("exact", "box"),
    ),
    # 8 epochs with the learning rate divided by 10 for the last quarter give the same
    # picture as 24 at a constant rate, in a third of the time (benchmarks/course_time.py).
    "workshop": Profile(
        name="workshop",
        size=64,
        backbone="tiny",
        n_train=500,
        n_val=300,
        n_test=600,
        epochs=8,
        lr_decay_at=0.75,
        batch_size=32,
        lr=3e-3,
        seeds=(0, 1, 2),
        lambdas=(1.0, 3.0, 10.0),
        time_limit=900,
        # at 250 images the guided network reached 0.60 shifted accuracy and every panel
        # sat inside the seed spread; at 500 (notebook 3's comparison) the gain is +37 points
        ablation_n_train=500,
        ablation_seeds=(0, 1, 2),
        ablation_lambdas=(0.0, 0.3, 3.0),
        ablation_sizes=(125, 250, 500),
        ablation_fractions=(0.1, 0.3, 1.0),
        ablation_qualities=("exact", "box", "shifted"),
    ),
    "full": Profile(
        name="full",
        size=128,
        backbone="resnet18",
        n_train=2000,
        n_val=500,
        n_test=1000,
        epochs=20,
        batch_size=64,
        lr=1e-3,
        seeds=(0, 1, 2),
        lambdas=(0.3, 1.0, 3.0),
        time_limit=3600,
        ablation_n_train=500,
        ablation_seeds=(0, 1, 2),
        ablation_lambdas=(0.0, 0.01, 0.1, 1.0, 10.0),
        ablation_sizes=(250, 500, 1000, 2000, 4000),
        ablation_fractions=(0.1, 0.25, 0.5, 1.0),
        ablation_qualities=("exact", "box", "dilated", "shifted"),
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` ("ci", "workshop" or "full")."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}.")
    return PROFILES[name]


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides the outcome of one training run (and so its cache key).

    ``time_limit`` is the one field that is not part of the key: it does not change a
    run's result, it only stops (with ``TimeLimitReached``) a run that takes too long.
    """

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
    lr_decay_at: float | None = None  # divide lr by 10 after this share of the epochs
    time_limit: float | None = None  # seconds; None: no limit. Not part of the key
    data: tuple = ()  # sorted (name, value) pairs passed to make_synthfrac
    masks_from: str | None = None  # a MaskStore folder with drawn masks; None = built-in
    masks_version: str = ""  # kept for old notebooks; the key hashes the mask files anyway
    # Few masks (agkit.experiments.few_masks): the image ids that keep their masks (empty: every image),
    # and the share of the draws that go to annotated images (None: plain shuffling).
    annotated_ids: tuple = ()
    annotated_share: float | None = None
    # Mask propagation (agkit.propagation): a propagator draws masks for the images without
    # one from those that have one; proposals below min_confidence are left out.
    propagation: str | None = None
    min_confidence: float = 0.0

    def __post_init__(self):
        # the key must not depend on the order the ids were listed in, nor on list vs tuple
        object.__setattr__(
            self, "annotated_ids", tuple(sorted({str(i) for i in self.annotated_ids}))
        )
        if self.propagation is not None and self.propagation not in PROPAGATORS:
            raise ValueError(
                f"unknown propagation {self.propagation!r}; choose one of "
                f"{', '.join(PROPAGATORS)} (or None)."
            )
        if self.annotated_share is not None and not 0 < self.annotated_share < 1:
            raise ValueError(
                f"annotated_share must lie strictly between 0 and 1 (or be None), "
                f"got {self.annotated_share}."
            )

    @property
    def guided(self) -> bool:
        return self.lam > 0

    @property
    def label(self) -> str:
        if not self.guided:
            return "baseline"
        masks = f", {len(self.annotated_ids)} masks" if self.annotated_ids else ""
        spread = f", propagated by {self.propagation}" if self.propagation else ""
        return f"guided (lambda={self.lam:g}{masks}{spread})"

    def fields(self) -> dict:
        """The fields that decide the result (all but time_limit), as a plain dict."""
        fields = dataclasses.asdict(self)
        del fields["time_limit"]
        return fields

    def fingerprints(self) -> dict:
        """Hashes of what the config names but does not hold: source code and mask files."""
        return {
            "source_hash": source_fingerprint(),
            "masks_hash": store_fingerprint(self.masks_from) if self.masks_from else "",
        }

    def key(self) -> str:
        # SynthFrac's defaults are part of the key: a new generator default means new data.
        text = json.dumps(
            [CACHE_VERSION, self.fields(), synthetic.DEFAULTS, self.fingerprints()],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def baseline_config(profile: Profile, seed: int = 0, **changes) -> RunConfig:
    """The baseline of a profile: average pooling, no attention loss."""
    return _config(profile, seed, **{"lam": 0.0, "pooling": "avg", **changes})


def guided_config(profile: Profile, lam: float, seed: int = 0, **changes) -> RunConfig:
    """Guided training of a profile: softmax pooling plus lam * attention loss."""
    return _config(profile, seed, **{"lam": lam, "pooling": "softmax", **changes})


FEW_MASKS = 20  # the masks a student draws in notebook 02 (its n_to_annotate)


def few_mask_config(
    profile: Profile,
    lam: float = FEW_MASK_LAM,
    seed: int = 0,
    annotated_ids=(),
    share: float | None = ANNOTATED_SHARE,
    **changes,
) -> RunConfig:
    """Guided training with a few masks: only ``annotated_ids`` keep their masks (empty:
    every image that has one, e.g. with ``masks_from``), and annotated images make up
    ``share`` of the draws (None: plain shuffling). See agkit.experiments.few_masks."""
    return guided_config(
        profile, lam, seed, annotated_ids=tuple(annotated_ids), annotated_share=share, **changes
    )


def random_control_config(
    profile: Profile,
    lam: float | None = None,
    seed: int = 0,
    n: int = FEW_MASKS,
    *,
    propagation: str | None = None,
) -> RunConfig:
    """The control of a few-mask run: the built-in masks of n training images chosen at
    random (the first n of the "random" proposal), trained like ``few_mask_config``
    (lam default FEW_MASK_LAM) or, with a ``propagation``, spread to every training image
    and trained like ``propagated_config`` (lam default PROPAGATED_LAM).

    n must lie between 1 and the number of training images. n = 0 is refused, not read as
    "no masks": a guided run without masks trains the baseline (its control is
    ``baseline_config``), and an empty ``annotated_ids`` means *every* mask.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(
            f"n must be a whole number of masks, at least 1, got {n!r}; for a run without "
            "masks use baseline_config(profile, seed), the run guidance is compared with."
        )
    proposal = annotation_proposal(profile, "random", seed)
    if n > len(proposal):
        raise ValueError(
            f"n={n} asks for more masks than the {len(proposal)} training images of profile "
            f"{profile.name!r}; pass n <= {len(proposal)}."
        )
    return masks_config(profile, seed, lam, propagation, annotated_ids=proposal[:n])


def masks_config(
    profile: Profile, seed: int, lam: float | None, propagation: str | None, **masks
) -> RunConfig:
    """A run on a few masks (``masks``: annotated_ids, or masks_from and data_seed): alone,
    the annotated images oversampled (``few_mask_config``, lam default FEW_MASK_LAM), or
    spread by ``propagation`` to every training image (``propagated_config``, lam default
    PROPAGATED_LAM)."""
    if propagation is None:
        return few_mask_config(profile, FEW_MASK_LAM if lam is None else lam, seed, **masks)
    weight = PROPAGATED_LAM if lam is None else lam
    return propagated_config(profile, seed, propagation=propagation, lam=weight, **masks)


# The propagated recipe: every image with a mask (drawn or proposed), trained like full
# annotation (its lambda, 3, and plain shuffling), every proposal kept. The propagator was
# chosen on the validation splits with benchmarks/few_masks.py (workshop profile, 10 and 20
# masks, seeds 0-2); the weight and the confidence gate were not tuned: see docs/results.md.
PROPAGATION = "segmenter"
PROPAGATED_LAM = 3.0
MIN_CONFIDENCE = 0.0


def propagated_config(
    profile: Profile,
    seed: int = 0,
    annotated_ids=(),
    propagation: str = PROPAGATION,
    lam: float = PROPAGATED_LAM,
    min_confidence: float = MIN_CONFIDENCE,
    **changes,
) -> RunConfig:
    """Guided training on a few masks spread to every training image: ``annotated_ids``
    (or the images of ``masks_from``) keep the masks drawn for them, ``propagation``
    proposes the others (agkit.propagation), and every image trains with its mask."""
    return guided_config(
        profile,
        lam,
        seed,
        annotated_ids=tuple(annotated_ids),
        propagation=propagation,
        min_confidence=min_confidence,
        **changes,
    )


def your_masks_config(
    profile: Profile,
    lam: float | None = None,
    seed: int = 0,
    runs_dir="runs",
    *,
    propagation: str | None = None,
    strategy: str | None = None,
    n: int = FEW_MASKS,
    device=None,
) -> tuple[RunConfig, int, str]:
    """The run on the masks a student drew in notebook 02 for ``seed``'s images.

    propagation: None trains on the drawn masks alone, the annotated images oversampled
    (``few_mask_config``, lam default FEW_MASK_LAM); a propagator's name spreads them to
    every training image first (``propagated_config``, lam default PROPAGATED_LAM).

    Returns (config, number of masks, fallback). With masks in ``annotation_folder`` the
    run trains on them and fallback is "". Without any (notebook 02 was not run), it
    trains on the built-in masks of the first ``n`` images the kit proposes with
    ``strategy`` (None: the measured best, ``agkit.analysis.selection.DEFAULT_STRATEGY``) instead,
    and fallback says so, after NoMasksError's message on what was missing.
    """

    def config(**masks) -> RunConfig:
        return masks_config(profile, seed, lam, propagation, **masks)

    folder = annotation_folder(profile, runs_dir, seed)
    try:
        train_ids = make_splits(baseline_config(profile, seed))["train"].image_ids
        count = check_mask_store(folder, train_ids)
    except NoMasksError as error:
        if strategy is None:
            from agkit.analysis.selection import DEFAULT_STRATEGY as strategy
        proposed = annotation_proposal(profile, strategy, seed, runs_dir, device=device)[:n]
        fallback = (
            f"{error}\nSo this run trains on the built-in masks of the {len(proposed)} images "
            f"the kit proposes first (strategy {strategy!r}) instead of masks you drew."
        )
        return config(annotated_ids=proposed), len(proposed), fallback
    return config(**mask_changes("annotations", profile, runs_dir, seed)), count, ""


def annotation_proposal(
    profile: Profile,
    strategy: str,
    seed: int = 0,
    runs_dir="runs",
    *,
    device=None,
) -> list[str]:
    """The training image ids of ``seed`` in the order the kit proposes to annotate them.

    The course's baseline of that seed (trained first if it is not stored) ranks the
    images with ``agkit.analysis.selection.rank_for_annotation`` and ``strategy`` ("random": the
    control, which needs no baseline).
    """
    from agkit.analysis.selection import MODEL_FREE_STRATEGIES, rank_for_annotation  # scikit-learn

    config = baseline_config(profile, seed)
    train = make_datasets(config)["train"]
    model = (
        None if strategy in MODEL_FREE_STRATEGIES else load_model(config, runs_dir, device=device)
    )
    order = rank_for_annotation(model, train, strategy, seed=seed)
    return [train.image_ids[i] for i in order]


def _config(profile: Profile, seed: int, **changes) -> RunConfig:
    base = {
        "n_train": profile.n_train,
        "n_val": profile.n_val,
        "n_test": profile.n_test,
        "seed": seed,
        "size": profile.size,
        "backbone": profile.backbone,
        "epochs": profile.epochs,
        "batch_size": profile.batch_size,
        "lr": profile.lr,
        "lr_decay_at": profile.lr_decay_at,
        "time_limit": profile.time_limit,
        "data": tuple(sorted(profile.data.items())),
    }
    base.update(changes)
    return RunConfig(**base)


# ---------------------------------------------------------------------------------------
# Fingerprints: what a cache key hashes besides the config
# ---------------------------------------------------------------------------------------

# (folder, stats of its files) -> hash: a file is read again only when its stats change
_hash_memo: dict = {}


def _hash_files(files: list[Path], root: Path, *, text: bool = False) -> str:
    """SHA-1 over the names (relative to root) and bytes of ``files``; memoised on their stats.

    text=True reads Windows line ends as Unix ones, so one source hashes alike everywhere.
    """
    stats = []
    for path in files:
        stat = path.stat()
        stats.append((str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino))
    memo_key = (str(root), text, tuple(stats))
    if memo_key not in _hash_memo:
        digest = hashlib.sha1()
        for path in files:
            content = path.read_bytes()
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(content.replace(b"\r\n", b"\n") if text else content)
            digest.update(b"\0")
        _hash_memo[memo_key] = digest.hexdigest()[:12]
    return _hash_memo[memo_key]


def _imported_modules(path: Path) -> set[str]:
    """The ``agkit.*`` module names that the Python file ``path`` imports, anywhere in it
    (function-level imports and ``importlib.import_module("agkit...")`` included):
    ``from agkit.data import io`` gives ``agkit.data`` and ``agkit.data.io``, since either
    may be a module. The package itself (``agkit/__init__.py``) is left out: it only
    re-exports names from the modules that define them, and those are followed."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return {name for name in names if name.startswith("agkit.")}


def _module_file(name: str, root: Path) -> Path | None:
    """The file of agkit module ``name`` under the package folder ``root``, or None (a name
    such as ``agkit.data.make_loader`` is a function, not a module)."""
    folder = root.joinpath(*name.split(".")[1:])
    for candidate in (folder.with_suffix(".py"), folder / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def source_files(root=None, roots: Sequence[str] = TRAINING_ROOTS) -> list[str]:
    """The files (relative to the package folder ``root``) of ``roots`` and of every agkit
    module they import, directly or through each other: the code a run can execute."""
    root = Path(root) if root is not None else PACKAGE_ROOT
    todo = [root / name for name in roots]
    found: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in found or not path.is_file():
            continue
        found.add(path)
        for name in _imported_modules(path):
            module = _module_file(name, root)
            if module is not None:
                todo.append(module)
    return sorted(path.relative_to(root).as_posix() for path in found)


def source_fingerprint(root=None, roots: Sequence[str] = TRAINING_ROOTS) -> str:
    """A short hash of the source text of the modules that train and score a run.

    ``root``: the agkit package folder (default: the one this module was loaded from).
    Any edit to one of ``source_files(root, roots)`` (agkit/method/loss.py, the image reader in
    agkit/data/io.py, the mask store ...) changes the hash, and with it every cache key, so
    no stored result outlives the code that made it. ``roots``: other modules to start from
    (``agkit.experiments.zoo`` adds its own).
    """
    root = Path(root) if root is not None else PACKAGE_ROOT
    files = [root / name for name in source_files(root, roots)]
    return _hash_files(files, root, text=True)


_loaded_source: dict = {}  # package folder -> source hash when this process first used it


def check_source_loaded() -> None:
    """Raise SourceChangedError when agkit's source on disk is not the code this process runs.

    A cache key hashes the source on disk; training in a process that imported agkit
    before an edit would store the old code's result under the new code's key.
    """
    now = source_fingerprint()
    if _loaded_source.setdefault(str(PACKAGE_ROOT), now) != now:
        raise SourceChangedError(
            f"agkit's source in {PACKAGE_ROOT} changed after this process imported it, so "
            f"training here would run the old code. Restart the kernel (Kernel > Restart) "
            f"and run the notebook again; runs it has stored stay valid."
        )


check_source_loaded()  # records the source this process imported


def store_fingerprint(folder) -> str:
    """A short hash of a MaskStore's content: index.json and the bytes of every mask PNG.

    Drawing, redrawing or deleting a mask changes it; touching a file without changing it
    does not. A missing or empty folder gives the hash of nothing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return _hash_files([], folder)
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and (p.name == "index.json" or p.suffix == ".png")
    )
    return _hash_files(files, folder)


def check_mask_store(folder, image_ids=None) -> int:
    """The number of masks in the MaskStore ``folder`` (of ``image_ids`` when given).

    Raises NoMasksError, saying how many masks were found and where, when there are none:
    guided training with no mask would silently be the baseline with softmax pooling.
    """
    folder = Path(folder)
    found = set(MaskStore(folder).annotated_ids()) if (folder / "index.json").is_file() else set()
    usable = len(found if image_ids is None else found & set(image_ids))
    if usable == 0:
        where = f"{folder}" + ("" if folder.is_dir() else " (the folder does not exist)")
        matching = (
            ""
            if image_ids is None or not found
            else f", none of them for the {len(image_ids)} training images"
        )
        raise NoMasksError(
            f"found {len(found)} masks in {where}{matching}; guided training needs masks to "
            f"guide it. Draw some in notebook 02 (or run it with annotator='simulated'), or "
            f"train with the built-in masks (masks='builtin')."
        )
    return usable


def mask_changes(masks: str, profile: Profile, runs_dir="runs", seed: int = 0) -> dict:
    """The config changes for a notebook's ``masks`` parameter.

    "builtin": none (SynthFrac's own masks). "annotations": train on the masks drawn in
    notebook 02 (``runs_dir/annotations/synthfrac-<profile>-seed<seed>``), every run on the
    images of that seed so that the masks belong to the training images; raises
    NoMasksError when that store is missing or empty.
    """
    if masks == "builtin":
        return {}
    if masks != "annotations":
        raise ValueError(f"masks must be 'builtin' or 'annotations', got {masks!r}.")
    folder = annotation_folder(profile, runs_dir, seed)
    check_mask_store(folder)
    return {"masks_from": str(folder), "data_seed": seed}


def annotation_folder(profile: Profile, runs_dir="runs", seed: int = 0) -> Path:
    """Where notebook 02 stores the masks drawn for the training images of ``seed``."""
    return Path(runs_dir) / "annotations" / f"synthfrac-{profile.name}-seed{seed}"


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def make_splits(config: RunConfig) -> dict:
    """The SynthFrac splits of a run: train, val, test_id, test_shifted, and val_shifted:
    ``n_val`` images drawn like the shifted test split but from the run's own seed (never
    the test images), on which settings are chosen where the shortcut does not pay
    (group DRO's convention: tune on a validation split that has every group)."""
    data = dict(config.data)
    seed = config.seed if config.data_seed is None else config.data_seed
    return {
        "train": make_synthfrac(config.n_train, size=config.size, seed=seed, split="train", **data),
        "val": make_synthfrac(config.n_val, size=config.size, seed=seed, split="val", **data),
        "test_id": _test_split(config.n_test, config.size, "test_id", config.data),
        "test_shifted": _test_split(config.n_test, config.size, "test_shifted", config.data),
        "val_shifted": make_synthfrac(
            config.n_val, size=config.size, seed=seed, split="test_shifted", **data
        ),
    }


@functools.lru_cache(maxsize=8)
def _test_split(n: int, size: int, split: str, data: tuple):
    # Every run of a profile scores on the same test images: draw them once per process.
    return make_synthfrac(n, size=size, seed=TEST_SEED, split=split, **dict(data))


def training_masks(config: RunConfig, train) -> torch.Tensor | MaskStore:
    """The masks that guide a run: built-in ones (maybe degraded) or a user's MaskStore.

    Raises NoMasksError when ``masks_from`` holds no mask for any training image.
    """
    if config.masks_from is not None:
        check_mask_store(config.masks_from, train.image_ids)
        return MaskStore(config.masks_from)
    return degrade(train.masks, config.mask_quality, seed=config.seed)


def make_datasets(config: RunConfig, splits: dict | None = None) -> dict:
    """GuidedDatasets for every split; only the training split has degraded/partial masks."""
    splits = splits or make_splits(config)
    train = splits["train"]
    datasets = {
        "train": GuidedDataset(
            train.images,
            train.labels,
            training_masks(config, train),
            image_ids=train.image_ids,
            meta=train.meta,
            annotated_fraction=config.annotated_fraction,
            seed=config.seed,
        )
    }
    if config.annotated_ids:
        datasets["train"] = with_masks(
            datasets["train"], image_positions(datasets["train"], config.annotated_ids)
        )
    if config.propagation:
        propagated = propagated_masks(config, datasets["train"])
        datasets["train"] = with_propagated(datasets["train"], propagated, config.min_confidence)
    for name in ("val", "test_id", "test_shifted", "val_shifted"):
        datasets[name] = GuidedDataset.from_synthfrac(splits[name])
    return datasets


def cam_grid(config: RunConfig) -> tuple[int, int]:
    """(h, w) of the CAMs of a run's network on its images."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # leaves the global seed alone
        cams = build_model(config).eval()(torch.zeros(1, 1, config.size, config.size)).cams
    return int(cams.shape[-2]), int(cams.shape[-1])


_propagation_memo: dict[str, Propagated] = {}


def propagated_masks(config: RunConfig, train: GuidedDataset | None = None) -> Propagated:
    """The masks ``config.propagation`` draws from the training masks of ``config``
    (``train``: that training set before propagation; None: made here). Memoised on the
    run's key, which hashes the drawn masks too, so a run and its figures share one."""
    key = config.key()
    if key not in _propagation_memo:
        if train is None:
            unspread = dataclasses.replace(config, propagation=None)
            train = make_datasets(unspread)["train"]
        settings = {}
        if config.propagation == "self_training":  # the teacher trains like the run
            settings = {
                "backbone": config.backbone,
                "epochs": config.epochs,
                "lr": config.lr,
                "batch_size": config.batch_size,
            }
        _propagation_memo.clear()  # one at a time: a notebook looks at one run's masks
        _propagation_memo[key] = propagate(
            config.propagation, train, cam_grid(config), seed=config.seed, **settings
        )
    return _propagation_memo[key]


def propagation_scores(config: RunConfig, splits: dict) -> dict:
    """How good a run's propagated masks are, against SynthFrac's built-in masks of the
    same training images: propagated_images (proposals kept), propagated_iou (their mean
    IoU on the CAM grid) and propagated_marker_share (the share of their cells on the
    laterality marker: the shortcut copied into the masks)."""
    from agkit.analysis.diagnostics import synthfrac_marker_masks

    propagated = propagated_masks(config)
    grid = cam_grid(config)
    chosen = propagated.kept(config.min_confidence) & ~propagated.drawn
    train = splits["train"]
    masks = propagated.masks[chosen]
    return {
        "propagated_images": int(chosen.sum()),
        "propagated_iou": float(grid_iou(masks, train.masks[chosen], grid).nanmean()),
        "propagated_marker_share": marker_share(masks, synthfrac_marker_masks(train)[chosen], grid),
    }


def image_positions(dataset, image_ids) -> list[int]:
    """The dataset indices of ``image_ids``; ValueError naming the first id it lacks."""
    position = {image_id: i for i, image_id in enumerate(dataset.image_ids)}
    missing = [i for i in image_ids if i not in position]
    if missing:
        raise ValueError(
            f"annotated_ids names {len(missing)} image(s) that are not training images of "
            f"this run, e.g. {missing[0]!r}."
        )
    return [position[i] for i in image_ids]


def training_loader(config: RunConfig, train: GuidedDataset):
    """The training batches of a run: (images B x C x S x S, labels B, masks B x 1 x S x S,
    has_mask B), shuffled, or with ``config.annotated_share`` of the draws going to the
    images that have a mask (``few_masks.few_mask_loader``, with replacement)."""
    return few_mask_loader(train, config.batch_size, config.annotated_share, config.seed)


# ---------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------

SPLIT_TAGS = {
    "val": "val",
    "test_id": "id",
    "test_shifted": "shifted",
    "val_shifted": "val_shifted",
}
SCORES = ("accuracy", "auc", "mass_in_mask", "pointing_game", "iou")


def run_folder(config: RunConfig, runs_dir="runs") -> Path:
    return Path(runs_dir) / "experiments" / config.key()


def build_model(config: RunConfig) -> CAMNet:
    torch.manual_seed(config.seed)
    return CAMNet(config.backbone, num_classes=2, in_channels=1, pooling=config.pooling)


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
        return json.loads(result_file.read_text())

    check_source_loaded()
    device = torch.device(device) if device is not None else default_device()
    with _threads_for(device):
        return _train_and_store(config, folder, device, progress)


@contextlib.contextmanager
def _threads_for(device: torch.device):
    """One torch thread while a run trains on a CPU.

    The thread count changes the order of float sums and with it the last digits of every
    weight: one thread everywhere makes a run in a notebook's own process equal to the same
    run in run_many's one-thread workers.
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_settings(config: RunConfig) -> dict:
    """The arguments of ``fit`` that train a run of ``config`` (besides the model, the
    batches of ``training_loader`` and the device): the one recipe of every course run."""
    return {
        "lam": config.lam,
        "epochs": config.epochs,
        "lr": config.lr,
        "lr_step": decay_step(config.epochs, config.lr_decay_at),  # then lr / 10
        "lr_gamma": 0.1,
        "resolution": config.resolution,
        "seed": config.seed,
        "time_limit": config.time_limit,
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
                None,
                **fit_settings(config),
                device=device,
                progress=progress,
            )
        epochs_run = len(history)
        stopped = bool(history.attrs.get("stopped_by_time_limit"))
    except TimeoutError:  # the limit passed inside the first epoch
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
    temporary = folder / "result.json.tmp"
    temporary.write_text(json.dumps(result, indent=1, default=str))
    temporary.replace(folder / "result.json")  # the result appears once everything is saved
    return json.loads((folder / "result.json").read_text())  # the form of a stored result


def load_model(config: RunConfig, runs_dir="runs", device=None) -> CAMNet:
    """The trained model of a run, on the CPU (trains it first, on ``device``, if needed)."""
    folder = run_folder(config, runs_dir)
    if not (folder / "result.json").exists():
        run(config, runs_dir, device=device)
    model = build_model(config)
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def load_history(config: RunConfig, runs_dir="runs") -> pd.DataFrame:
    return pd.read_csv(run_folder(config, runs_dir) / "history.csv")


def _start_worker() -> None:
    torch.set_num_threads(1)  # two one-thread processes beat one two-thread process on small nets
    # Jupyter's stop button and kernel shutdown send SIGINT to the whole process group; the
    # notebook's process handles it (run_many cancels what has not started), the workers not.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# The worker processes outlive one run_many call: starting one (importing torch) takes
# seconds, and a notebook calls run_many once per figure. A new pool starts when the
# number of jobs or agkit's source changes, so a worker never runs code older than the key.
_pool: dict = {"key": None, "executor": None}


def _worker_pool(jobs: int) -> ProcessPoolExecutor:
    key = (jobs, source_fingerprint())
    if _pool["key"] != key:
        shutdown_workers()
        context = multiprocessing.get_context("spawn")  # safe with torch and inside Jupyter
        _pool.update(
            key=key,
            executor=ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker),
        )
    return _pool["executor"]


def shutdown_workers() -> None:
    """Stop run_many's worker processes (they stop by themselves when Python exits)."""
    if _pool["executor"] is not None:
        _pool["executor"].shutdown(wait=True, cancel_futures=True)
    _pool.update(key=None, executor=None)


atexit.register(shutdown_workers)


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
    """Rough relative training time of a run (input-resolution guidance costs about double)."""
    doubled = config.guided and config.resolution == "input"
    return config.n_train * config.epochs * (2 if doubled else 1)


def _train_in_workers(todo: dict, runs_dir, device, jobs: int, done) -> None:
    """Train the configs of ``todo`` (key -> config) in the worker processes.

    Calls ``done(key)`` as each run is stored. When a worker was killed (the pool is
    broken), new workers take over the runs not stored yet, once.
    """
    for attempt in (1, 2):
        pending = {k: c for k, c in todo.items() if not is_stored(c, runs_dir)}
        try:
            pool = _worker_pool(jobs)
            futures = {
                pool.submit(_run_quietly, config, str(runs_dir), device): key
                for key, config in pending.items()
            }
            try:
                for future in as_completed(futures):
                    future.result()  # re-raises a worker's error here
                    done(futures[future])
            except BaseException:  # an error, or a notebook's stop button
                for future in futures:
                    future.cancel()  # runs not started; a started one finishes and is stored
                raise
            return
        except BrokenProcessPool:
            shutdown_workers()
            if attempt == 2:
                raise


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
    todo = {
        key: config
        for key, config in zip(keys, configs, strict=True)
        if not is_stored(config, runs_dir)
    }
    # Longest runs first: the processes then finish at about the same time.
    todo = dict(sorted(todo.items(), key=lambda item: -_cost(item[1])))
    for config in todo.values():  # a missing mask store stops here, before any training
        if config.masks_from is not None:
            check_mask_store(config.masks_from)
    jobs = default_jobs(device) if jobs is None else jobs
    stored = len(set(keys)) - len(todo)
    if progress and not todo:
        print(f"{desc}: all {len(set(keys))} runs are stored in {runs_dir}; nothing to train.")
    # The bar counts only the runs trained now: stored ones would make its rate a fiction.
    label = f"{desc} ({stored} stored)" if stored else desc
    bar = tqdm(total=len(todo), desc=label, disable=not progress or not todo)
    if jobs > 1 and len(todo) > 1:
        _train_in_workers(todo, runs_dir, device, jobs, lambda key: bar.update(1))
    else:
        for config in todo.values():
            bar.set_postfix_str(config.label)
            run(config, runs_dir, progress=False, device=device)
            bar.update(1)
    bar.close()
    return pd.DataFrame([run(config, runs_dir) for config in configs])


def choose_lambda(
    profile: Profile,
    runs_dir="runs",
    *,
    progress: bool = True,
    device=None,
    jobs: int | None = None,
    **changes,
) -> tuple[float, pd.DataFrame]:
    """Pick lambda on the validation split (never on a test split).

    The validation split is drawn like the training split, shortcut included, so its
    accuracy alone cannot tell a shortcut from the fracture; ties within one point of
    accuracy go to the lambda whose CAMs keep more mass inside the validation masks.
    ``changes`` (e.g. masks_from) apply to every candidate.
    """
    configs = [
        guided_config(profile, lam, seed=profile.seeds[0], **changes) for lam in profile.lambdas
    ]
    table = run_many(
        configs, runs_dir, desc="choosing lambda", progress=progress, device=device, jobs=jobs
    )
    best = table["accuracy_val"].max()
    contenders = table[table["accuracy_val"] >= best - 0.01]
    chosen = float(contenders.sort_values("mass_in_mask_val", ascending=False)["lam"].iloc[0])
    return chosen, table[["lam", "accuracy_val", "mass_in_mask_val"]]


def main_comparison(
    profile: Profile, runs_dir="runs", *, progress: bool = True, device=None, **changes
) -> pd.DataFrame:
    """Baseline and guided training over the profile's seeds: one row per run.

    ``changes`` apply to the baseline and the guided runs alike (the baseline never uses
    masks, but it trains on the same images), so the two always see the same data.
    """
    lam, _ = choose_lambda(profile, runs_dir, progress=progress, device=device, **changes)
    configs = [baseline_config(profile, seed, **changes) for seed in profile.seeds]
    configs += [guided_config(profile, lam, seed, **changes) for seed in profile.seeds]
    table = run_many(configs, runs_dir, desc="baseline vs guided", progress=progress, device=device)
    table["method"] = np.where(table["lam"] > 0, "guided", "baseline")
    return table


SUMMARY_METRICS = ("accuracy_shifted", "accuracy_id", "auc_shifted", "mass_in_mask")


def summarize(table: pd.DataFrame, metrics=SUMMARY_METRICS) -> pd.DataFrame:
    """Mean over seeds per method (rows baseline, guided) of the summary metrics."""
    return table.groupby("method")[list(metrics)].mean().reindex(["baseline", "guided"])


# ---------------------------------------------------------------------------------------
# Which runs each notebook trains
# ---------------------------------------------------------------------------------------


def ablation_configs(profile: Profile, lam: float) -> dict[str, list[RunConfig]]:
    """Notebook 04's runs, by ablation: lambda, size, fraction, quality, design.

    ``lam`` is the weight chosen on validation (``choose_lambda``). The ablations other
    than the training-set size use ``profile.ablation_n_train`` images.
    """
    seeds, small = profile.ablation_seeds, {"n_train": profile.ablation_n_train}
    return {
        "lambda": [
            guided_config(profile, weight, s, **small)
            if weight > 0
            else baseline_config(profile, s, pooling="softmax", **small)
            for weight in profile.ablation_lambdas
            for s in seeds
        ],
        "size": [
            config
            for n in profile.ablation_sizes
            for s in seeds
            for config in (
                baseline_config(profile, s, n_train=n),
                guided_config(profile, lam, s, n_train=n),
            )
        ],
        "fraction": [
            guided_config(profile, lam, s, annotated_fraction=f, **small)
            for f in profile.ablation_fractions
            for s in seeds
        ],
        "quality": [
            guided_config(profile, lam, s, mask_quality=q, **small)
            for q in profile.ablation_qualities
            for s in seeds
        ],
        "design": [
            config
            for s in seeds
            for config in (
                baseline_config(profile, s, **small),
                baseline_config(profile, s, pooling="softmax", **small),
                guided_config(profile, lam, s, pooling="avg", **small),
                guided_config(profile, lam, s, **small),
                guided_config(profile, lam, s, resolution="input", **small),
            )
        ],
    }


def course_configs(profile: Profile, lam: float) -> dict[str, list[RunConfig]]:
    """The runs each notebook trains with the built-in masks, by notebook number.

    "01": the baseline shown; "03": the lambda candidates, the baseline-vs-guided
    comparison (with ``lam``, the chosen weight) and the random-choice control of the
    student's masks (FEW_MASKS built-in masks, propagated by PROPAGATION); "04": every
    ablation. A run that an earlier notebook trained is listed again where a later one
    uses it. (The run on the student's own masks depends on them, so it is not listed.)
    """
    seeds = profile.seeds
    return {
        "01": [baseline_config(profile, seeds[0])],
        "03": (
            [guided_config(profile, weight, seeds[0]) for weight in profile.lambdas]
            + [baseline_config(profile, s) for s in seeds]
            + [guided_config(profile, lam, s) for s in seeds]
            + [random_control_config(profile, seed=seeds[0], propagation=PROPAGATION)]
        ),
        "04": [config for group in ablation_configs(profile, lam).values() for config in group],
    }


# ---------------------------------------------------------------------------------------
# A shareable cache of trained runs
# ---------------------------------------------------------------------------------------

MANIFEST = "manifest.json"
RUN_FILES = ("result.json", "model.pt", "history.csv")


def pack_runs(
    configs, runs_dir="runs", archive="build/agkit-runs.tar.gz", *, profile: str = ""
) -> Path:
    """Pack the stored runs of ``configs`` into one .tar.gz archive for ``use_cache``.

    The archive holds ``experiments/<key>/`` (result.json, model.pt, history.csv) of every
    run and a manifest.json listing the keys, labels and the source hash they were made
    with. Raises FileNotFoundError naming the first run that was never trained.
    """
    archive = Path(archive)
    keys = list(dict.fromkeys(config.key() for config in configs))
    runs = {}
    for key in keys:
        folder = Path(runs_dir) / "experiments" / key
        if not (folder / "result.json").is_file():
            raise FileNotFoundError(
                f"run {key} is not stored in {runs_dir}; train it first (run_many) and pack again."
            )
        runs[key] = json.loads((folder / "result.json").read_text())["label"]
    manifest = {
        "format": "agkit runs",
        "version": CACHE_VERSION,
        "profile": profile,
        "source_hash": source_fingerprint(),
        "runs": runs,
    }
    archive.parent.mkdir(parents=True, exist_ok=True)
    temporary = archive.with_name(archive.name + ".tmp")
    try:
        with tarfile.open(temporary, "w:gz") as tar:
            data = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for key in keys:
                for name in RUN_FILES:
                    path = Path(runs_dir) / "experiments" / key / name
                    tar.add(path, f"experiments/{key}/{name}")
        temporary.replace(archive)
    except BaseException:  # a full disk, a run deleted meanwhile, Ctrl-C: no half archive
        temporary.unlink(missing_ok=True)
        raise
    return archive


def use_cache(archive_or_url, runs_dir="runs") -> dict:
    """Unpack runs packed by ``pack_runs`` (a file path or a URL) into ``runs_dir``.

    Runs already in ``runs_dir`` are kept. A run is reused only where its key matches, and
    keys hash the source of agkit and the mask files: runs packed from other source code
    are unpacked but never reused (the returned dict says how many match). Returns the
    manifest plus ``unpacked`` (runs added) and ``reusable`` (runs whose source matches).
    Raises ConnectionError with the URL when a download fails, ValueError when the
    archive is not one of ours.
    """
    source = str(archive_or_url)
    with tempfile.TemporaryDirectory() as scratch:
        if "://" in source:
            path = Path(scratch) / "runs.tar.gz"
            try:
                with urllib.request.urlopen(source, timeout=60) as response, open(path, "wb") as f:
                    shutil.copyfileobj(response, f)
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise ConnectionError(
                    f"could not download the runs archive {source} ({reason}). Without a "
                    f"network, copy the archive onto this machine and pass its path instead; "
                    f"or train the runs here (every notebook trains what it does not find)."
                ) from None
        else:
            path = Path(source).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"no runs archive at {path}; run `make cache` to build "
                    f"one or pass the archive's path or URL."
                )
        return _unpack(path, Path(runs_dir))


#: the largest size, in bytes, of each file of a run in an archive; larger entries (a
#: corrupt or hostile archive, a sparse file) are refused before anything is written.
#: A ResNet-18's weights take about 45 MB, the course's CPU models well under 1 MB.
MAX_RUN_FILE_BYTES = {"result.json": 1 << 20, "history.csv": 16 << 20, "model.pt": 256 << 20}


def _unpack(archive: Path, runs_dir: Path) -> dict:
    try:
        tar = tarfile.open(archive, "r:*")
    except tarfile.TarError as error:
        reason = str(error).splitlines()[0]
        raise ValueError(
            f"{archive} is not a runs archive made by `make cache` ({reason})."
        ) from None
    try:
        with tar:
            manifest, unpacked = _unpack_runs(tar, archive, runs_dir)
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise ValueError(
            f"{archive} is damaged ({error}): it may have been cut short while copying; copy "
            f"it again. Runs unpacked before the damage are complete; no half-written run "
            f"was left."
        ) from None
    manifest["unpacked"] = unpacked
    same_source = manifest.get("source_hash") == source_fingerprint()
    manifest["reusable"] = len(manifest["runs"]) if same_source else 0
    return manifest


def _read_manifest(tar: tarfile.TarFile, members: dict, archive: Path) -> dict:
    """The archive's manifest, checked: a regular JSON file listing runs by their keys."""
    entry = members.get(MANIFEST)
    if entry is None:
        raise ValueError(
            f"{archive} has no {MANIFEST}: it is not a runs archive made by `make cache`."
        )
    if not entry.isfile() or entry.size > MAX_RUN_FILE_BYTES["result.json"]:
        raise ValueError(
            f"{archive}: its {MANIFEST} is not a small regular file (a link, a folder or "
            f"{entry.size} bytes); make the archive again with `make cache`. Nothing was unpacked."
        )
    try:
        manifest = json.loads(tar.extractfile(entry).read().decode("utf-8"))  # type: ignore[union-attr]
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{archive}: its {MANIFEST} is not JSON ({error}); make the archive again with "
            f"`make cache`. Nothing was unpacked."
        ) from None
    runs = manifest.get("runs") if isinstance(manifest, dict) else None
    if not isinstance(runs, dict) or not all(re.fullmatch(r"[0-9a-f]{12}", k) for k in runs):
        raise ValueError(
            f"{archive}: {MANIFEST} does not list runs by their 12-digit keys; "
            f"nothing was unpacked."
        )
    return manifest


def _unpack_runs(tar: tarfile.TarFile, archive: Path, runs_dir: Path) -> tuple[dict, int]:
    """Check every entry of ``tar`` first, then unpack the runs not in ``runs_dir`` yet."""
    entries = tar.getmembers()  # reads the whole archive: a truncated one fails here
    members = {m.name: m for m in entries}
    if len(members) != len(entries):
        raise ValueError(f"{archive} lists an entry twice; nothing was unpacked.")
    manifest = _read_manifest(tar, members, archive)
    runs = manifest["runs"]
    wanted = {f"experiments/{key}/{name}": name for key in runs for name in RUN_FILES}
    odd = [
        m.name
        for m in entries
        if m.name != MANIFEST and (m.name not in wanted or not m.isfile() or m.issparse())
    ]
    if odd:
        raise ValueError(
            f"{archive} holds entries a runs archive never has (first: "
            f"{odd[0]!r}); nothing was unpacked."
        )
    missing = sorted(set(wanted) - set(members))
    if missing:
        raise ValueError(
            f"{archive}: {MANIFEST} lists {len(runs)} runs but {len(missing)} of their files "
            f"are not in the archive (first: {missing[0]!r}); make it again with "
            f"`make cache`. Nothing was unpacked."
        )
    too_big = [n for n, f in wanted.items() if members[n].size > MAX_RUN_FILE_BYTES[f]]
    if too_big:
        name = too_big[0]
        raise ValueError(
            f"{archive}: {name} is {members[name].size / 2**20:.0f} MiB, more than a run's "
            f"{wanted[name]} can be ({MAX_RUN_FILE_BYTES[wanted[name]] / 2**20:.0f} MiB, "
            f"agkit.experiments.MAX_RUN_FILE_BYTES); nothing was unpacked."
        )
    unpacked = 0
    for key in runs:
        target = runs_dir / "experiments" / key
        if (target / "result.json").exists():
            continue
        staging = runs_dir / "experiments" / f".{key}.unpacking"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            for name in RUN_FILES:  # staged, then renamed: a run appears only complete
                source = tar.extractfile(members[f"experiments/{key}/{name}"])
                with open(staging / name, "wb") as out:
                    shutil.copyfileobj(source, out)  # type: ignore[misc]
            shutil.rmtree(target, ignore_errors=True)
            staging.replace(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        unpacked += 1
    return manifest, unpacked
