"""What the masks a person draws give after propagation, against the exact built-in masks.

    python benchmarks/simulated_annotator.py                  # workshop profile, seeds 0-2
    python benchmarks/simulated_annotator.py --json docs/measurements/simulated_annotator.json

For every seed this does what notebooks 2 and 3 do under papermill: the simulated annotator
(``agkit.widgets.simulated``: a box around each break, brush strokes along each intact
bone, a hand ``--jitter`` pixels off) marks the first ``--n`` images of the kit's proposal
(``--strategy``, default the notebooks' own) through the annotation widget into a fresh
mask store, and notebook 3's runs train on them: the drawn masks alone (the few-mask
recipe) and spread by the course's propagator. The baseline and the run with every
built-in mask give the share of the gain, in shifted-test accuracy; the grid IoU of the
drawn and of the proposed masks with the built-in ones say how far each is from exact.
The masks go to ``<runs-dir>/simulated-<strategy>/``; trained runs are cached in
``--runs-dir`` like every course run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from arguments import at_least, comma_list  # benchmarks/arguments.py

from agkit import experiments
from agkit.analysis.claims import share_of_gain
from agkit.analysis.selection import DEFAULT_STRATEGY, STRATEGIES
from agkit.data import MaskStore
from agkit.propagation import grid_iou
from agkit.widgets import MaskAnnotator
from agkit.widgets.simulated import simulate_annotator


def draw_masks(profile, seed: int, strategy: str, n: int, jitter: float, runs_dir) -> Path:
    """Notebook 2 under papermill: the simulated annotator marks the first n proposed
    images of ``seed`` into the store notebook 3 reads; returns the runs folder it uses."""
    annotated = Path(runs_dir) / f"simulated-{strategy}"
    train = experiments.make_splits(experiments.baseline_config(profile, seed))["train"]
    proposal = experiments.annotation_proposal(profile, strategy, seed, runs_dir)
    order = experiments.image_positions(train, proposal)
    store = MaskStore(experiments.annotation_folder(profile, annotated, seed))
    widget = MaskAnnotator(train, store, order=order)
    simulate_annotator(widget, train.masks, train.labels, order, n, jitter, seed)
    return annotated


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="workshop")
    parser.add_argument("--seeds", type=comma_list(int, minimum=0), default="0,1,2")
    parser.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY)
    parser.add_argument("--n", type=at_least(1), default=experiments.FEW_MASKS)
    parser.add_argument("--jitter", type=float, default=2)
    parser.add_argument("--full-lam", type=float, default=3.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--json", default=None, help="write the shares and IoUs here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:  # every argument is checked before anything trains
        profile = experiments.get_profile(args.profile)
    except ValueError as error:
        parser.error(str(error))
    if args.n > profile.n_train:
        parser.error(f"--n {args.n} is more masks than the profile's {profile.n_train} images")
    seeds = args.seeds

    runs = {}
    for seed in seeds:
        annotated = draw_masks(profile, seed, args.strategy, args.n, args.jitter, args.runs_dir)
        spread, count, fallback = experiments.your_masks_config(
            profile, seed=seed, runs_dir=annotated, propagation=experiments.PROPAGATION
        )
        alone, _, _ = experiments.your_masks_config(profile, seed=seed, runs_dir=annotated)
        if fallback or count != args.n:
            raise RuntimeError(f"the simulated annotator drew {count} masks: {fallback}")
        runs[seed] = {
            "baseline": experiments.baseline_config(profile, seed, time_limit=None),
            "alone": alone,
            "propagated": spread,
            "all": experiments.guided_config(profile, args.full_lam, seed, time_limit=None),
        }
    flat = [config for seed in seeds for config in runs[seed].values()]
    table = experiments.run_many(flat, args.runs_dir, desc="simulated annotator", jobs=args.jobs)
    rows = iter(table.to_dict("records"))
    results = {"strategy": args.strategy, "n": args.n, "jitter": args.jitter, "seeds": {}}
    for seed in seeds:
        scores = {name: next(rows) for name in runs[seed]}
        accuracy = {name: row["accuracy_shifted"] for name, row in scores.items()}
        propagated = experiments.load_propagated(runs[seed]["propagated"], args.runs_dir)
        train = experiments.make_splits(runs[seed]["propagated"])["train"]
        drawn = propagated.drawn
        grid = experiments.cam_grid(runs[seed]["propagated"])
        results["seeds"][seed] = {
            "share_alone": share_of_gain(accuracy["alone"], accuracy["baseline"], accuracy["all"]),
            "share_propagated": share_of_gain(
                accuracy["propagated"], accuracy["baseline"], accuracy["all"]
            ),
            "iou_drawn": float(grid_iou(propagated.masks[drawn], train.masks[drawn], grid).mean()),
            "iou_proposed": scores["propagated"]["propagated_iou"],
        }
        print(seed, {k: round(v, 3) for k, v in results["seeds"][seed].items()})
    for key in ("share_alone", "share_propagated", "iou_drawn", "iou_proposed"):
        results[key] = float(np.mean([results["seeds"][s][key] for s in seeds]))
        print(f"{key}, mean of seeds {seeds}: {results[key]:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
