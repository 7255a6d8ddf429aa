"""The config file of ``agkit train``: its keys, reading and checking it, and resolving it
against the recipe it names into the full configuration a run stores (``config.toml``).

A config file is a flat list of ``key = value`` lines (``KEYS`` lists them all with their
types and meanings) plus an ``[options]`` table passed to the dataset's loader; ``--set
key=value`` on the command line changes one key (``apply_set``). ``resolve`` fills what a
file does not say from its recipe and refuses an unknown key, a wrong type or a bad choice
with ``ConfigError``, one sentence naming the key.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from agkit.data.real import LOADERS, open_dataset
from agkit.experiments import get_profile
from agkit.experiments.recipes import cub_recipe
from agkit.guidance import TERMS

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


def read_toml(path: Path, what: str = "", fix: str = "") -> dict[str, Any]:
    """The table of the TOML file ``path``; ConfigError "<path><what> is not valid TOML
    (<why>)<fix>." when it is not UTF-8 or not TOML (the file is left as it is)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}{what} is not valid TOML ({error}){fix}.") from None


def read_config(path: str | Path) -> dict[str, Any]:
    """The keys of a TOML config file, type-checked (ConfigError naming the key or path)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no config file at {path}; pass the path of a .toml file (configs/).")
    data = read_toml(path)
    if not data:  # a truncated or blank file would otherwise train the default recipe
        raise ConfigError(
            f"{path} holds no settings ({path.stat().st_size} bytes); a config names at least "
            'its dataset, e.g. dataset = "synthfrac" (configs/ holds one file per recipe).'
        )
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
    counts: tuple[str, ...] = ("epochs", "batch_size", "eval_batch_size", "size")
    if c["dataset"] == "synthfrac":  # a run scores its validation and both test splits
        counts += ("n_train", "n_val", "n_test")
    for key in counts:
        if c[key] < 1:
            raise ConfigError(f"{key} must be at least 1, got {c[key]}.")
    for key in ("lam", "lr", "workers", "lr_step", "weight_decay", "seed"):
        if c[key] < 0 or (isinstance(c[key], float) and not math.isfinite(c[key])):
            raise ConfigError(f"{key} must be a finite number >= 0, got {c[key]}.")
    for key, high in (("annotated_fraction", 1), ("lr_decay_at", 1), ("momentum", 1)):
        if not 0 <= c[key] <= high:  # NaN fails this test too
            raise ConfigError(f"{key} must be a number from 0 to {high}, got {c[key]}.")
    if not (math.isfinite(c["lr_gamma"]) and c["lr_gamma"] > 0):
        raise ConfigError(f"lr_gamma must be a finite number above 0, got {c['lr_gamma']}.")
    if c["in_channels"] not in (0, 1, 3):
        raise ConfigError(
            "in_channels must be 1 (gray), 3 (RGB) or 0 (the dataset's own), "
            f"got {c['in_channels']}."
        )
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
