"""The `full` profile on one GPU: step-time ratios of the speed options, then baseline vs
guided for one seed. Finishes within 5 minutes on one recent GPU.

1. Training steps of the full profile (ResNet-18, 128 px, batch 64, guided with the paper's
   CAM loss) in fp32, bf16, fp32 channels-last and bf16 channels-last, measured alternately
   in one process (fp32, bf16, ..., fp32, bf16, ...) so that machine noise hits every
   setting alike; the script prints each setting's median step time and the median of its
   per-round ratios to fp32 (as benchmarks/step_ratio.py does).
2. ``agkit train configs/full.toml`` for the baseline (lam 0) and the guided network (the
   config's lam), seed 0, fp32, as the course's full profile trains them: accuracy on the
   shifted and in-distribution test splits, mass in mask, training seconds.

    python benchmarks/gpu_check.py                     # on the GPU (needs CUDA)
    python benchmarks/gpu_check.py --device cpu --quick  # a smoke test in seconds
    python benchmarks/gpu_check.py --json gpu_check.json # also write the numbers

``--quick`` shrinks everything (tiny backbone, 32 px, a few steps, a one-epoch ci run): it
checks that the script works, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from agkit import cli
from agkit.engine.precision import Precision
from agkit.engine.timing import step_times
from agkit.experiments import get_profile
from agkit.method.camnet import CAMNet
from agkit.method.train import training_step

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "fp32": ("fp32", False),
    "bf16": ("bf16", False),
    "fp32 channels-last": ("fp32", True),
    "bf16 channels-last": ("bf16", True),
}
NO_CUDA = (
    "gpu_check: no CUDA device is present (torch.cuda.is_available() is False); run it on a "
    "machine with a GPU, or pass --device cpu --quick for a smoke test."
)


def precision_steps(device: torch.device, quick: bool, repeats: int) -> dict:
    """Median seconds per step of each setting and median ratios to fp32 (interleaved)."""
    profile = get_profile("ci" if quick else "full")
    size, batch = (32, 8) if quick else (profile.size, profile.batch_size)
    backbone = "tiny" if quick else profile.backbone
    torch.manual_seed(0)
    images = torch.rand(batch, 1, size, size, device=device)
    labels = (torch.arange(batch) % 2).to(device)
    masks = torch.zeros(batch, 1, size, size, device=device)
    masks[:, :, size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = 1
    data = (images, labels, masks, torch.ones(batch, dtype=torch.bool, device=device))
    start = CAMNet(backbone, 2, pooling="softmax").to(device)
    runs = {}
    for name, (amp, channels_last) in SETTINGS.items():
        precision = Precision(amp, channels_last, device)
        model = precision.model(copy.deepcopy(start))
        optimiser = torch.optim.AdamW(model.parameters(), lr=profile.lr)
        runs[name] = (model, optimiser, precision)

    steps = {
        name: functools.partial(training_step, model, data, optimiser, lam=1.0, precision=precision)
        for name, (model, optimiser, precision) in runs.items()
    }
    times = step_times(steps, repeats=repeats, warmup=2 if quick else 10, device=device)
    medians, ratios = times.medians(), times.ratios()
    return {
        "backbone": backbone,
        "size": size,
        "batch": batch,
        "repeats": repeats,
        "settings": {
            name: {
                "ms_per_step": 1e3 * medians[name],
                "images_per_s": batch / medians[name],
                "ratio_to_fp32": ratios[name],
            }
            for name in SETTINGS
        },
    }


def comparison(device: torch.device, quick: bool) -> dict:
    """Baseline and guided runs of configs/full.toml (seed 0) through ``agkit train``."""
    config = cli.read_config(ROOT / "configs" / "full.toml")
    config.update(device=device.type, progress=False, seed=0)
    if quick:
        config.update(profile="ci", backbone="tiny", size=32, n_train=64, n_val=32, n_test=32)
        config.update(epochs=1, batch_size=16)
    lam = config["lam"]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, weight in (("baseline", 0.0), ("guided", lam)):
            began = time.perf_counter()
            metrics = cli.train(cli.resolve({**config, "lam": weight}), Path(scratch) / name)
            results[name] = {
                "lam": weight,
                "accuracy_shifted": metrics["accuracy_shifted"],
                "accuracy_id": metrics["accuracy_id"],
                "mass_in_mask_shifted": metrics["mass_in_mask_shifted"],
                "seconds": time.perf_counter() - began,
            }
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="a smoke test in seconds")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (30; quick 3)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 1
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 30)
    began = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name} · torch {torch.__version__}{' · QUICK (smoke test)' * args.quick}")

    steps = precision_steps(device, args.quick, repeats)
    print(
        f"\n1. training steps, guided, {steps['backbone']} {steps['size']} px, batch "
        f"{steps['batch']}, {steps['repeats']} interleaved rounds"
    )
    for setting, row in steps["settings"].items():
        print(
            f"   {setting:20s} {row['ms_per_step']:8.2f} ms/step  "
            f"{row['images_per_s']:8.0f} images/s  ratio to fp32 {row['ratio_to_fp32']:.3f}"
        )

    runs = comparison(device, args.quick)
    print("\n2. configs/full.toml, seed 0, fp32: baseline vs guided")
    for method, row in runs.items():
        print(
            f"   {method:8s} lam {row['lam']:<4g} accuracy shifted {row['accuracy_shifted']:.3f}"
            f"  in-distribution {row['accuracy_id']:.3f}  mass in mask "
            f"{row['mass_in_mask_shifted']:.3f}  ({row['seconds']:.0f} s)"
        )
    total = time.perf_counter() - began
    print(f"\ntotal {total:.0f} s")
    if args.json:
        report = {"device": name, "quick": args.quick, "steps": steps, "runs": runs}
        Path(args.json).write_text(json.dumps({**report, "seconds": total}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
