"""``agkit train CONFIG``: one training run from a TOML file, on one or several GPUs.

    agkit train configs/ci.toml                                   # SynthFrac, the ci profile
    agkit train configs/fracatlas.toml --set root=~/data/FracAtlas --lam 3 --epochs 10
    torchrun --standalone --nproc-per-node 2 -m agkit train configs/ci.toml

A config file is a flat list of ``key = value`` lines plus an ``[options]`` table passed to
the dataset's loader (``agkit.train_config``: its keys, reading and resolving it). Every key
can be changed on the command line, ``--lam 3`` or ``--set lam=3`` (``--set
options.images_per_class=10`` for a loader option). What a key does not say comes from the
recipe the config names: ``agkit.experiments``'s profile for SynthFrac (``profile = "ci"``,
"workshop" or "full"), ``agkit.experiments.recipes.cub_recipe`` for CUB, notebook 05's settings for
the radiograph collections. The run then goes through the same functions as the notebooks:
``course.make_datasets`` / ``build_model`` / ``training_loader`` or ``open_dataset`` and
``recipes.cub_datasets``, and ``agkit.method.train.fit``.

The run folder (``--out``, default ``runs/train/<config name>``) holds:

    config.toml     the resolved configuration (every key; a valid config file itself)
    checkpoint.pt   fit's checkpoint, written after every epoch
    history.json    one record per epoch (losses, learning rate, validation scores)
    metrics.json    the final scores on every evaluation split

``--resume`` continues the run in ``--out``; it is refused, naming the difference, when
the configuration is not the one stored there (``epochs`` may grow; the keys of
``RUNTIME`` may change). A bad config stops with one sentence naming the key or the path
(exit code 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from agkit.analysis.diagnostics import synthfrac_marker_masks
from agkit.data import make_loader, open_dataset
from agkit.engine import distributed
from agkit.engine.callback_list import run_callbacks
from agkit.engine.callbacks import Callback
from agkit.engine.checkpoint import ResumeMismatch, UnreadableCheckpoint, check_resume_config
from agkit.engine.device import resolve_device
from agkit.engine.precision import Precision
from agkit.experiments import (
    NoMasksError,
    RunConfig,
    build_model,
    check_mask_store,
    make_datasets,
    make_splits,
    training_loader,
)
from agkit.experiments.recipes import cub_datasets
from agkit.guidance import TERMS, CAMGuidance, get_term
from agkit.method.camnet import CAMNet
from agkit.method.predict import evaluate
from agkit.method.train import decay_step, fit
from agkit.train_config import (
    FORBIDDEN_TERMS,
    KEYS,
    ConfigError,
    apply_set,
    compared,
    read_config,
    read_toml,
    resolve,
    to_toml,
)

# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------


def run_config(c: dict[str, Any]) -> RunConfig:
    """The course's RunConfig of a resolved synthfrac config (what the notebooks train)."""
    return RunConfig(
        lam=c["lam"],
        pooling=_pooling(c),
        resolution=c["resolution"],
        n_train=c["n_train"],
        n_val=c["n_val"],
        n_test=c["n_test"],
        annotated_fraction=c["annotated_fraction"],
        mask_quality=c["mask_quality"],
        seed=c["seed"],
        size=c["size"],
        backbone=c["backbone"],
        epochs=c["epochs"],
        batch_size=c["batch_size"],
        lr=c["lr"],
        lr_decay_at=c["lr_decay_at"] or None,
        time_limit=None,
    )


def _pooling(c: dict[str, Any]) -> str:
    """avg for the baseline; softmax for the paper's loss; a term's own pooling."""
    if c["pooling"] != "auto":
        return str(c["pooling"])
    if c["lam"] == 0:
        return "avg"
    if c["guidance"] == "paper":
        return "softmax"

    return str(getattr(TERMS[c["guidance"]], "pooling", "softmax"))


def build(c: dict[str, Any]) -> dict[str, Any]:
    """Model, training loader and evaluation datasets of a resolved config.

    Returns {model, train_loader, val (dataset or None), evaluate {tag: dataset},
    lr_step, images (a few training images for the CAM overlays)}.
    """

    lr_step = c["lr_step"] or decay_step(c["epochs"], c["lr_decay_at"] or None)
    if c["dataset"] == "synthfrac":
        config = run_config(c)
        splits = make_splits(config)
        datasets = make_datasets(config, splits)
        model = build_model(config)
        train_loader = training_loader(config, datasets["train"])
        if c["guidance"] in FORBIDDEN_TERMS and c["lam"] > 0:
            train_loader = with_forbidden(train_loader, synthfrac_marker_masks(splits["train"]))
        val = datasets["val"]
        scored = {"val": val, "id": datasets["test_id"], "shifted": datasets["test_shifted"]}
    else:
        common = dict(size=c["size"], seed=c["seed"], annotated_fraction=c["annotated_fraction"])
        if c["in_channels"]:
            common["in_channels"] = c["in_channels"]
        if c["dataset"] == "cub":
            splits = {s: cub_datasets(c["root"], s, **common, **c["options"]) for s in _cub(c)}
        else:
            splits = {
                s: open_dataset(c["dataset"], c["root"], s, **common, **c["options"])
                for s in ("train", "val", "test")
            }
        train = splits["train"]
        _check_masks(c, train)
        torch.manual_seed(c["seed"])
        model = CAMNet(
            c["backbone"],
            num_classes=len(train.class_names),
            in_channels=train.in_channels,
            pooling=_pooling(c),
            pretrained=c["pretrained"],
        )
        train_loader = make_loader(train, c["batch_size"], shuffle=True, seed=c["seed"])
        val = splits.get("val") if splits.get("val") is not None and len(splits["val"]) else None
        scored = {tag: ds for tag, ds in splits.items() if tag != "train" and len(ds)}
    shown = val if val is not None else train_loader.dataset
    images = torch.stack([shown[i][0] for i in range(min(8, len(shown)))])
    eval_loaders = {
        tag: make_loader(ds, c["eval_batch_size"], num_workers=c["workers"])
        for tag, ds in scored.items()
    }
    return {
        "model": model,
        "train_loader": train_loader,
        "val_loader": eval_loaders.get("val"),
        "eval_loaders": eval_loaders,
        "lr_step": lr_step,
        "images": images,
    }


class WithForbidden(Dataset):
    """A dataset's items with a fifth part, the image's "don't look here" region
    (1 x S x S, 0/1); the index may be a GuidedDataset's (index, augmentation seed) pair."""

    def __init__(self, dataset: Any, forbidden: torch.Tensor):
        self.dataset, self.forbidden = dataset, forbidden

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Any) -> tuple:
        position = index[0] if isinstance(index, tuple) else index
        return (*self.dataset[index], self.forbidden[position])


def with_forbidden(loader: DataLoader, forbidden: torch.Tensor) -> DataLoader:
    """``loader`` with five-part batches: the same batches plus their forbidden regions."""
    return DataLoader(
        WithForbidden(loader.dataset, forbidden),
        batch_size=loader.batch_size,
        sampler=loader.sampler,
        drop_last=loader.drop_last,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
    )


def _check_masks(c: dict[str, Any], train: Any) -> None:
    """Guided training on a real dataset needs masks: refuse a split without any."""
    store = c["options"].get("mask_store")
    if c["lam"] == 0:
        return
    if store is not None:
        try:
            check_mask_store(Path(store).expanduser(), train.image_ids)
        except NoMasksError as error:
            raise ConfigError(f"options.mask_store: {str(error).split('; ')[0]}.") from None
    elif getattr(train, "_masks", None) is None and getattr(train, "_mask_tensor", None) is None:
        raise ConfigError(
            f"lam = {c['lam']:g} trains with masks, but the {c['dataset']} training split has "
            f"none; set options.mask_store to a MaskStore of masks you drew, or lam = 0."
        )


def _cub(c: dict[str, Any]) -> tuple[str, ...]:
    return ("train", "val", "test") if c["options"].get("val_per_class", 0) else ("train", "test")


def _device(c: dict[str, Any]) -> torch.device:

    wanted = c["device"]
    if wanted == "auto":
        wanted = resolve_device("auto").type
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but torch sees no CUDA device; use --device cpu.")
    if c["sync_bn"] and wanted != "cuda":
        raise ConfigError("sync_bn needs CUDA (SyncBatchNorm has no CPU kernel); drop --sync-bn.")
    if distributed.launched():
        return distributed.setup(wanted)
    return torch.device(wanted)


def train(c: dict[str, Any], out: Path, *, resume: bool = False) -> dict[str, Any]:
    """Run a resolved config into the folder ``out``; returns the final metrics (process 0;
    the other processes of a torchrun return {})."""
    out = Path(out)
    _check_out(out)
    stored_file, checkpoint = out / "config.toml", out / "checkpoint.pt"
    if resume and stored_file.is_file():
        stored = read_toml(
            stored_file,
            ", the configuration the run was started with,",
            "; restore it, or start the run again in another --out",
        )
        check_resume_config(checkpoint, compared(stored), compared(c))
    elif not resume and checkpoint.exists():
        raise ConfigError(
            f"{out} already holds a run; pass --resume to continue it, or another --out."
        )
    device = _device(c)
    main = distributed.is_main()
    try:
        parts = build(c)
    except (FileNotFoundError, ValueError) as error:  # the data or the model refused a setting
        raise ConfigError(str(error)) from None
    precision = Precision(c["amp"], c["channels_last"], device)
    net = precision.model(parts["model"].to(device))
    model = distributed.wrap(net, device, sync_bn=c["sync_bn"])
    if c["compile"]:
        model = cast(nn.Module, torch.compile(model))
    try:
        train_loader = distributed.shard_loader(
            parts["train_loader"], num_workers=c["workers"], pin_memory=device.type == "cuda"
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        temporary = stored_file.with_suffix(".toml.tmp")
        temporary.write_text(to_toml(c), encoding="utf-8")
        temporary.replace(stored_file)  # other processes may be reading the old one
    history = fit(
        model,
        train_loader,
        parts["val_loader"],
        lam=c["lam"],
        epochs=c["epochs"],
        lr=c["lr"],
        weight_decay=c["weight_decay"],
        optimizer=c["optimizer"],
        momentum=c["momentum"],
        lr_step=parts["lr_step"],
        lr_gamma=c["lr_gamma"],
        guidance=guidance_term(c),
        seed=c["seed"],
        device=device,
        recalibrate_bn=c["recalibrate_bn"],
        precision=precision,
        callbacks=callbacks(c, checkpoint, resume, parts["images"]),
    )
    metrics: dict[str, Any] = {}
    if main:
        net = distributed.unwrap(model)
        for tag, loader in parts["eval_loaders"].items():
            scores = evaluate(net, loader, device)
            for name in ("accuracy", "balanced_accuracy", "auc", "mass_in_mask", "iou", "n"):
                metrics[f"{name}_{tag}"] = _plain(scores.get(name))
        metrics["epochs_run"] = len(history)
        records = [{k: _plain(v) for k, v in row.items()} for row in history.to_dict("records")]
        (out / "history.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    distributed.barrier()
    return metrics


def _check_out(out: Path) -> None:
    """Refuse a run folder that cannot be made or written, before anything is built (the
    folder itself is made only once the run starts, so a refused config leaves nothing)."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == out else f"cannot be created: {existing} is a file"
        raise ConfigError(f"--out {out} {where}; pass a folder for the run.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {existing} is not writable; pass a folder you can write.")


def guidance_term(c: dict[str, Any]) -> Any:
    """The guidance term of a resolved config: the paper's CAM loss at its resolution and
    class maps, or a term of agkit.guidance by name."""
    if c["guidance"] == "paper":
        return CAMGuidance(resolution=c["resolution"], class_maps=c["class_maps"])
    return get_term(c["guidance"])


def callbacks(c: dict[str, Any], checkpoint: Path, resume: bool, images: Any) -> list[Callback]:
    """fit's callbacks for a run of the command line: bars, the checkpoint (resumed with
    --resume) and, with --tensorboard, a log (process 0 only)."""
    main = distributed.is_main()
    log = None
    if c["tensorboard"] and main:
        from agkit.engine.tensorboard import TensorBoardLog

        log = TensorBoardLog(Path(c["tensorboard"]).expanduser(), images)
    progress = bool(c["progress"] and main)
    return run_callbacks(progress=progress, checkpoint=checkpoint, resume=resume, log=log)


def _plain(value: Any) -> Any:
    """A JSON value: floats (NaN as null), ints, strings."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="agkit", description="agkit's command line.")
    commands = top.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "train",
        help="train one run from a TOML config file",
        description="Train one run from a TOML config file (configs/README.md).",
    )
    p.add_argument("config", help="a .toml file, e.g. configs/ci.toml")
    p.add_argument("--out", help="the run folder (default: runs/train/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change any key (options.NAME=VALUE for a loader option); repeatable",
    )
    for key, spec in KEYS.items():
        if spec.type is dict:
            continue
        flag = "--" + key.replace("_", "-")
        if spec.type is bool:
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=spec.help
            )
        else:
            p.add_argument(flag, type=spec.type, default=None, help=spec.help, dest=key)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """``agkit train ...``; returns the exit code (2 for a bad config, with one sentence)."""
    args = parser().parse_args(argv)
    try:
        config = read_config(args.config)
        for key in KEYS:
            value = getattr(args, key, None)
            if value is not None:
                config[key] = value
        for item in args.set:
            apply_set(config, item)
        resolved = resolve(config)
        out = Path(args.out) if args.out else Path("runs") / "train" / Path(args.config).stem
        metrics = train(resolved, out, resume=args.resume)
        if distributed.is_main():
            print(json.dumps(metrics, indent=1))
            print(f"written to {out}")
    # ResumeMismatch: the checkpoint's own record is checked too, when config.toml is gone
    except (ConfigError, UnreadableCheckpoint, ResumeMismatch) as error:
        print(f"agkit train: {error}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown()
    return 0
