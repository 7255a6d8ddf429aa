"""``agkit train CONFIG``: one training run from a TOML file, on one or several GPUs.

    agkit train configs/ci.toml                                   # SynthFrac, the ci profile
    agkit train configs/fracatlas.toml --set root=~/data/FracAtlas --lam 3 --epochs 10
    torchrun --standalone --nproc-per-node 2 -m agkit train configs/ci.toml

A config file is a flat list of ``key = value`` lines (``KEYS`` lists them all with their
types and meanings) plus an ``[options]`` table passed to the dataset's loader. Every key
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
import inspect
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from agkit.analysis.diagnostics import synthfrac_marker_masks
from agkit.data import make_loader, open_dataset
from agkit.data.real import LOADERS
from agkit.engine import distributed
from agkit.engine.callbacks import Callback
from agkit.engine.checkpoint import Checkpoint, check_resume_config
from agkit.engine.device import resolve_device
from agkit.engine.precision import Precision
from agkit.engine.progress import Progress
from agkit.experiments import (
    NoMasksError,
    RunConfig,
    build_model,
    check_mask_store,
    get_profile,
    make_datasets,
    make_splits,
    training_loader,
)
from agkit.experiments.recipes import cub_datasets, cub_recipe
from agkit.guidance import TERMS, CAMGuidance, get_term
from agkit.method.camnet import CAMNet
from agkit.method.predict import evaluate
from agkit.method.train import decay_step, fit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATASETS = ("synthfrac", "fracatlas", "grazpedwri", "mura", "cub", "folder")
# Terms that differentiate twice (torch.autograd.grad with create_graph=True inside the loss)
DOUBLE_BACKWARD = ("rrr", "gradcam")
# Terms that train on a "don't look here" region: on SynthFrac the lead marker's box (as
# agkit.experiments.zoo trains them); the real datasets carry none.
FORBIDDEN_TERMS = ("forbidden", "forbidden+cam", "rrr")


class ConfigError(ValueError):
    """A config that cannot run; the message is one sentence naming the key or path."""


@dataclass(frozen=True)
class Key:
    type: type
    help: str


# Every key of a config file. A value the file and the command line leave out is None
# until ``resolve`` fills it from the recipe.
KEYS: dict[str, Key] = {
    "dataset": Key(str, f"one of {', '.join(DATASETS)}"),
    "root": Key(str, "the dataset's folder (not for synthfrac); see data/README.md"),
    "profile": Key(str, "synthfrac: the course profile, ci, workshop or full"),
    "lam": Key(float, "weight of the guidance term; 0 trains the baseline"),
    "guidance": Key(str, 'the term: "paper" (the paper\'s CAM loss) or a name in agkit.guidance'),
    "pooling": Key(str, '"auto" (avg for the baseline, the term\'s for guided), avg, softmax'),
    "resolution": Key(str, "feature or input (the paper's CAM loss)"),
    "class_maps": Key(str, "all or label: the class maps the paper's CAM loss pulls"),
    "backbone": Key(str, "tiny, resnet18, resnet50, ... (agkit.list_backbones())"),
    "pretrained": Key(bool, "start the backbone from ImageNet weights (downloads once)"),
    "size": Key(int, "side of the square training images in pixels"),
    "in_channels": Key(int, "1 (gray) or 3 (RGB); 0: the dataset's own"),
    "n_train": Key(int, "synthfrac: training images"),
    "n_val": Key(int, "synthfrac: validation images"),
    "n_test": Key(int, "synthfrac: images of each test split"),
    "mask_quality": Key(str, "synthfrac: exact, box, dilated or shifted masks"),
    "annotated_fraction": Key(float, "keep masks for only this share of the training images"),
    "epochs": Key(int, "training epochs"),
    "batch_size": Key(int, "images per step, over all processes together"),
    "lr": Key(float, "learning rate"),
    "optimizer": Key(str, "adam (AdamW) or sgd (with momentum)"),
    "momentum": Key(float, "sgd's momentum"),
    "weight_decay": Key(float, "weight decay"),
    "lr_step": Key(int, "multiply lr by lr_gamma every lr_step epochs; 0: never"),
    "lr_gamma": Key(float, "the factor of lr_step"),
    "lr_decay_at": Key(float, "divide lr by 10 after this share of the epochs; 0: never"),
    "seed": Key(int, "seeds the data, the model and the batches"),
    "recalibrate_bn": Key(bool, "re-measure BatchNorm statistics after training"),
    "eval_batch_size": Key(int, "images per batch when scoring"),
    "options": Key(dict, "table of the dataset loader's own options"),
    # runtime: how the run is executed, not what it computes
    "device": Key(str, "auto, cpu, cuda or mps"),
    "amp": Key(str, "fp32, bf16 or fp16 (mixed precision on the forward pass)"),
    "channels_last": Key(bool, "channels-last memory format (faster convolutions on GPUs)"),
    "compile": Key(bool, "torch.compile the model (not with the double-backward terms)"),
    "sync_bn": Key(bool, "SyncBatchNorm across processes (GPU only)"),
    "workers": Key(int, "data-loading worker processes (pinned memory on CUDA)"),
    "tensorboard": Key(str, 'TensorBoard log folder; "": none'),
    "progress": Key(bool, "progress bars"),
}
#: Keys that may differ when a run is resumed: they do not change what it computes.
RUNTIME = ("epochs", "device", "channels_last", "compile", "workers", "tensorboard", "progress")

FIT_DEFAULTS = {
    "guidance": "paper",
    "pooling": "auto",
    "resolution": "feature",
    "class_maps": "all",
    "optimizer": "adam",
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "lr_step": 0,
    "lr_gamma": 0.1,
    "lr_decay_at": 0.0,
    "seed": 0,
    "recalibrate_bn": True,
    "annotated_fraction": 1.0,
    "in_channels": 0,
    "pretrained": False,
    "eval_batch_size": 64,
    "options": {},
    "root": "",
    "device": "auto",
    "amp": "fp32",
    "channels_last": False,
    "compile": False,
    "sync_bn": False,
    "workers": 0,
    "tensorboard": "",
    "progress": True,
}
# The radiograph collections: notebook 05's settings for a GPU (resnet18, 224 px).
REAL_DEFAULTS = {
    "backbone": "resnet18",
    "pretrained": True,
    "size": 224,
    "epochs": 20,
    "batch_size": 32,
    "lr": 1e-3,
    "lam": 1.0,
}


# ---------------------------------------------------------------------------------------
# Reading and checking a config
# ---------------------------------------------------------------------------------------


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        kind, "a table"
    )


def check_value(key: str, value: Any, where: str) -> Any:
    """``value`` as the type of ``key`` (an integer is a valid float); ConfigError naming
    the key otherwise."""
    if key not in KEYS:
        raise ConfigError(
            f"unknown key {key!r} in {where}; the keys are {', '.join(KEYS)} "
            f"(loader options go in the [options] table)."
        )
    kind = KEYS[key].type
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(
            f"{key} in {where} must be {_type_name(kind)}, got {value!r} ({type(value).__name__})."
        )
    return value


def read_config(path: str | Path) -> dict[str, Any]:
    """The keys of a TOML config file, type-checked (ConfigError naming the key or path)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no config file at {path}; pass the path of a .toml file (configs/).")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML ({error}).") from None
    return {key: check_value(key, value, str(path)) for key, value in data.items()}


def parse_set(item: str) -> tuple[str, Any]:
    """``key=value`` of ``--set``: value read as TOML (3, 1e-3, true, "x"), else a string."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r} must look like key=value, e.g. --set lam=3.")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return key.strip(), value


def apply_set(config: dict[str, Any], item: str) -> None:
    key, value = parse_set(item)
    if key.startswith("options."):
        config["options"] = {**config.get("options", {}), key[len("options.") :]: value}
    else:
        config[key] = check_value(key, value, "--set")


# ---------------------------------------------------------------------------------------
# Filling in a config from its recipe
# ---------------------------------------------------------------------------------------


def _profile_values(name: str) -> dict[str, Any]:
    """What a course profile sets (agkit.experiments.PROFILES), as config keys."""
    try:
        profile = get_profile(name)
    except ValueError:
        raise ConfigError(
            f"profile {name!r} is not a course profile; choose ci, workshop or full."
        ) from None
    return {
        "size": profile.size,
        "backbone": profile.backbone,
        "n_train": profile.n_train,
        "n_val": profile.n_val,
        "n_test": profile.n_test,
        "epochs": profile.epochs,
        "batch_size": profile.batch_size,
        "lr": profile.lr,
        "lr_decay_at": profile.lr_decay_at or 0.0,
        "lam": 3.0,  # what notebook 03 chose on validation for the workshop profile
        "mask_quality": "exact",
    }


def _cub_values() -> dict[str, Any]:
    """The authors' CUB protocol: the defaults of ``recipes.cub_recipe``."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(cub_recipe).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    # what the recipe computes with (device, progress: how it runs; None: chosen from lam)
    values = {
        key: value
        for key, value in defaults.items()
        if key in KEYS and value is not None and key not in ("device", "progress")
    }
    values["optimizer"] = "sgd"
    values["lr_gamma"] = 0.1
    values["options"] = {k: defaults[k] for k in ("images_per_class", "radius", "val_per_class")}
    return values


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """Every key of ``config`` with a value: the given ones, then the recipe's, then fit's.

    Raises ConfigError naming the key for values no run can use (an unknown dataset,
    profile, term, a missing root, ...).
    """
    dataset = config.get("dataset", "synthfrac")
    if dataset not in DATASETS:
        raise ConfigError(f"dataset {dataset!r} is unknown; choose one of {', '.join(DATASETS)}.")
    recipe: dict[str, Any] = {}
    if dataset == "synthfrac":
        recipe = _profile_values(config.get("profile", "ci"))
        recipe["profile"] = config.get("profile", "ci")
    elif dataset == "cub":
        recipe = _cub_values()
    else:
        recipe = dict(REAL_DEFAULTS)
    given = {k: v for k, v in config.items() if v is not None}
    options = {**recipe.get("options", {}), **given.get("options", {})}
    resolved = {**FIT_DEFAULTS, **recipe, **given, "dataset": dataset, "options": options}
    synthfrac_only = ("profile", "n_train", "n_val", "n_test", "mask_quality")
    if dataset != "synthfrac":
        for key in synthfrac_only:
            if key in given:
                raise ConfigError(f"{key} is a synthfrac key; {dataset} does not take it.")
    skipped = () if dataset == "synthfrac" else synthfrac_only
    missing = [key for key in KEYS if key not in resolved and key not in skipped]
    if missing:
        raise ConfigError(f"{missing[0]} is not set; give it in the config file or as --set.")
    _check_choices(resolved)
    return {key: resolved[key] for key in KEYS if key in resolved}


def _check_choices(c: dict[str, Any]) -> None:

    choices = {
        "guidance": ("paper", *TERMS),
        "pooling": ("auto", "avg", "softmax"),
        "resolution": ("feature", "input"),
        "class_maps": ("all", "label"),
        "optimizer": ("adam", "sgd"),
        "amp": ("fp32", "bf16", "fp16"),
        "device": ("auto", "cpu", "cuda", "mps"),
        "mask_quality": ("exact", "box", "dilated", "shifted"),
    }
    for key, allowed in choices.items():
        if key in c and c[key] not in allowed:
            raise ConfigError(f"{key} = {c[key]!r} is not one of {', '.join(allowed)}.")
    for key in ("epochs", "batch_size", "eval_batch_size", "size"):
        if c[key] < 1:
            raise ConfigError(f"{key} must be at least 1, got {c[key]}.")
    for key in ("lam", "lr", "workers", "lr_step", "lr_decay_at", "weight_decay"):
        if c[key] < 0 or (isinstance(c[key], float) and not math.isfinite(c[key])):
            raise ConfigError(f"{key} must be a finite number >= 0, got {c[key]}.")
    if c["lr_step"] and c["lr_decay_at"]:
        raise ConfigError("lr_step and lr_decay_at both set a schedule; set one of them to 0.")
    if c["dataset"] != "synthfrac":
        if not c["root"]:
            raise ConfigError(
                f"root is not set; set root to the folder of the {c['dataset']} download "
                f"(data/README.md), e.g. --set root=~/data/{c['dataset']}."
            )
        root = Path(c["root"]).expanduser()
        if not root.exists():
            raise ConfigError(
                f"root {str(root)!r} does not exist; download {c['dataset']} (data/README.md) "
                f"and set root to its folder."
            )
        _check_options(c["dataset"], c["options"])
    elif c["options"]:
        raise ConfigError(
            f"[options] {', '.join(c['options'])}: synthfrac takes no loader options."
        )
    if c["dataset"] != "synthfrac" and c["guidance"] in FORBIDDEN_TERMS and c["lam"] > 0:
        raise ConfigError(
            f'guidance {c["guidance"]!r} trains on "don\'t look here" regions, which '
            f"{c['dataset']} does not provide; choose paper, cam, gradcam or gain."
        )
    if c["compile"] and c["guidance"] in DOUBLE_BACKWARD and c["lam"] > 0:
        raise ConfigError(
            f"--compile cannot train guidance {c['guidance']!r}: it differentiates twice "
            f"(torch.autograd.grad with create_graph=True), which compiled autograd does not "
            f"support; drop --compile (or compile = false)."
        )
    if c["amp"] == "fp16" and c["guidance"] in DOUBLE_BACKWARD and c["lam"] > 0:
        raise ConfigError(
            f"amp = 'fp16' cannot train guidance {c['guidance']!r}: its input gradients are "
            f"taken without loss scaling and underflow in 16 bits; use --amp bf16 instead."
        )


def _loader_parameters(dataset: str) -> dict[str, inspect.Parameter]:
    """The options a dataset's loader takes beyond those the config sets by its own keys."""
    parameters = {
        **inspect.signature(cast(Callable[..., Any], LOADERS[dataset])).parameters,
        **inspect.signature(open_dataset).parameters,
    }
    # set by the config's own keys (seed, size, ...), by the run (split, and augment for
    # CUB, whose recipe augments the training split its own way) or deprecated
    taken = {"seed", "size", "in_channels", "annotated_fraction", "split", "channels"}
    if dataset == "cub":
        taken.add("augment")
    return {
        name: p for name, p in parameters.items() if p.kind == p.KEYWORD_ONLY and name not in taken
    }


def _check_options(dataset: str, options: dict[str, Any]) -> None:
    allowed = _loader_parameters(dataset)
    for key, value in options.items():
        if key not in allowed:
            raise ConfigError(
                f"unknown key options.{key} for {dataset}; its loader takes "
                f"{', '.join(sorted(allowed))}."
            )
        default = allowed[key].default
        if isinstance(default, (bool, int, float, str)) and default is not None:
            kind = type(default)
            ok = isinstance(value, kind) and (kind is not int or not isinstance(value, bool))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                raise ConfigError(
                    f"options.{key} must be {_type_name(kind)} like its default "
                    f"{default!r}, got {value!r}."
                )


# ---------------------------------------------------------------------------------------
# Writing and comparing resolved configs
# ---------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def to_toml(config: dict[str, Any]) -> str:
    """A resolved config as a config file (flat keys, then the [options] table)."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in config.items() if key != "options"]
    lines += ["", "[options]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in config.get("options", {}).items()]
    return "\n".join(lines) + "\n"


def compared(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that a resume must repeat."""
    return {k: v for k, v in config.items() if k not in RUNTIME}


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
        try:
            if c["dataset"] == "cub":
                splits = {s: cub_datasets(c["root"], s, **common, **c["options"]) for s in _cub(c)}
            else:
                splits = {
                    s: open_dataset(c["dataset"], c["root"], s, **common, **c["options"])
                    for s in ("train", "val", "test")
                }
        except (FileNotFoundError, ValueError) as error:
            raise ConfigError(str(error)) from None
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
    stored_file, checkpoint = out / "config.toml", out / "checkpoint.pt"
    if resume and stored_file.is_file():
        stored = tomllib.loads(stored_file.read_text(encoding="utf-8"))
        try:
            check_resume_config(checkpoint, compared(stored), compared(c))
        except ValueError as error:
            raise ConfigError(str(error)) from None
    elif not resume and checkpoint.exists():
        raise ConfigError(
            f"{out} already holds a run; pass --resume to continue it, or another --out."
        )
    device = _device(c)
    main = distributed.is_main()
    parts = build(c)
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
    chosen: list[Callback] = [Progress()] if c["progress"] and main else []
    chosen.append(Checkpoint(checkpoint, resume=resume))
    if c["tensorboard"] and main:
        from agkit.engine.tensorboard import TensorBoardLog

        chosen.append(TensorBoardLog(Path(c["tensorboard"]).expanduser(), images))
    return chosen


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
    except ConfigError as error:
        print(f"agkit train: {error}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown()
    return 0
