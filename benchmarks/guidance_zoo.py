"""Every guidance term side by side, on SynthFrac and on Decoy-MNIST.

For each method (the baseline and every term of ``agkit.guidance``) and each seed:

* SynthFrac (a course profile): accuracy and worst-group accuracy (label x marker) on the
  shifted test split, and the "wrong reason" score, the share of attribution on the lead
  marker, from the CAM and from Integrated Gradients;
* Decoy-MNIST: test accuracy;
* the training-step time as a ratio to the baseline's: from the runs themselves, and from
  steps of every method taking turns on one batch (the fair number on a shared machine).

Then the mean and standard deviation over seeds, beside Ross et al.'s published Decoy-MNIST
figures. With ``--tune``, each term's lam is first chosen on the first seed from
``zoo_settings.LAMBDA_GRIDS`` by its validation score (``zoo_settings.VALIDATION_SCORE``:
SynthFrac's worst-group accuracy on a shifted validation split, Decoy-MNIST's accuracy on held-out
training digits with the test rule); the other seeds then use that lam. The test splits
take no part in the choice. Without it, ``zoo.LAMBDAS`` (the last tuned values) are used.
Example (MNIST's raw files under ROOT/MNIST/raw; --download fetches them):

    python benchmarks/guidance_zoo.py --mnist-root ROOT --seeds 0 1 2 --tune
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from arguments import at_least  # benchmarks/arguments.py

from agkit import experiments
from agkit.data.decoy_mnist import decoy_mnist_splits
from agkit.engine.guards import TrainingDiverged
from agkit.experiments import zoo, zoo_settings
from agkit.method.camnet import CAMNet

# Ross, Hughes and Doshi-Velez (IJCAI 2017), Decoy-MNIST test accuracy of their MLP.
PAPER_DECOY_MNIST = {"baseline": 0.52, "rrr": 0.96}


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mnist-root", help="folder holding MNIST/raw (Decoy-MNIST is skipped without it)"
    )
    parser.add_argument("--download", action="store_true", help="let torchvision fetch MNIST")
    parser.add_argument("--profile", default="workshop", help="SynthFrac course profile")
    parser.add_argument("--seeds", type=at_least(0), nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=zoo.METHODS, default=list(zoo.METHODS))
    parser.add_argument("--synthfrac-epochs", type=at_least(1), help="default: the profile's")
    parser.add_argument(
        "--ig-images",
        type=int,
        default=64,
        help="shifted test images with a marker scored by Integrated Gradients",
    )
    parser.add_argument(
        "--tune", action="store_true", help="choose each term's lam on the first seed (see above)"
    )
    parser.add_argument(
        "--decoy-train", type=int, help="first n training digits (default all but --decoy-val)"
    )
    parser.add_argument(
        "--decoy-val", type=int, default=10_000, help="held-out training digits for choosing lam"
    )
    parser.add_argument("--decoy-test", type=int, help="first n test digits (default all)")
    parser.add_argument("--decoy-epochs", type=at_least(1), default=12)
    parser.add_argument(
        "--decoy-lr-decay-at",
        type=float,
        default=0.75,
        help="divide Decoy-MNIST's learning rate by 10 after this share of the epochs (0: never)",
    )
    parser.add_argument("--skip", choices=["synthfrac", "decoy_mnist"], nargs="*", default=[])
    parser.add_argument(
        "--timing-repeats",
        type=int,
        default=20,
        help="interleaved steps per method for the step-time ratios (0: skip)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="runs/results/guidance_zoo.csv")
    return parser.parse_args(argv)


def main(argv=None) -> pd.DataFrame:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    started = time.perf_counter()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def record(row):  # the table is rewritten after every run: a stopped benchmark keeps its rows
        rows.append(row)
        pd.DataFrame(rows).to_csv(out, index=False)
        print(_row_text(row), flush=True)

    if "synthfrac" not in args.skip:
        profile = experiments.get_profile(args.profile)

        def synthfrac(method, seed, data, lam, region=None):
            return zoo.synthfrac_run(
                profile,
                method,
                seed,
                data,
                lam=lam,
                region=region,
                device=device,
                epochs=args.synthfrac_epochs,
                ig_images=args.ig_images,
            )

        data = None
        for seed in args.seeds:
            data = zoo.synthfrac_data(profile, seed)
            run_methods("synthfrac", synthfrac, seed, data, args, record)
    if "decoy_mnist" not in args.skip:
        if args.mnist_root is None:
            print("no --mnist-root: Decoy-MNIST skipped", file=sys.stderr)
        else:

            def decoy(method, seed, splits, lam):
                return zoo.decoy_run(
                    splits["train"],
                    splits["test"],
                    method,
                    seed,
                    val_set=splits["val"],
                    lam=lam,
                    epochs=args.decoy_epochs,
                    lr_decay_at=args.decoy_lr_decay_at or None,
                    device=device,
                )

            for seed in args.seeds:
                digits = decoy_mnist_splits(
                    args.mnist_root,
                    n_val=args.decoy_val,
                    n_train=args.decoy_train,
                    n_test=args.decoy_test,
                    seed=seed,
                    download=args.download,
                )
                run_methods("decoy_mnist", decoy, seed, digits, args, record)

    ratios = {}
    if args.timing_repeats and "synthfrac" not in args.skip:
        radiographs, forbidden = data["train"]
        n = profile.batch_size
        batch = (
            radiographs.images[:n],
            radiographs.labels[:n],
            radiographs.masks[:n],
            radiographs.masks[:n].flatten(1).amax(1) > 0,
            forbidden[:n],
        )
        ratios["synthfrac"] = zoo.step_ratios(
            lambda pooling: CAMNet(profile.backbone, 2, 1, pooling).to(device),
            batch,
            args.methods,
            lams=zoo.LAMBDAS["synthfrac"],
            repeats=args.timing_repeats,
        )
    if args.timing_repeats and "decoy_mnist" not in args.skip and args.mnist_root is not None:
        batch = tuple(t[:64] for t in digits["train"].tensors())
        ratios["decoy_mnist"] = zoo.step_ratios(
            lambda pooling: zoo.digit_model(pooling).to(device),
            batch,
            args.methods,
            lams=zoo.LAMBDAS["decoy_mnist"],
            repeats=args.timing_repeats,
        )

    table = pd.DataFrame(rows)
    if args.tune:
        print("\nlam chosen on seed", args.seeds[0], "by the validation score (test shown too):")
        tuning = table[table["tuning"]].dropna(axis=1, how="all")
        shown = [c for c in ("dataset", "method", "lam", "region", "selected") if c in tuning]
        shown += [c for c in tuning if c.startswith(("worst_group", "accuracy"))]
        print(tuning[shown].to_string(index=False))
    table = table[table["selected"]]
    pd.set_option("display.width", 160)
    pd.set_option("display.precision", 3)
    for dataset, part in table.groupby("dataset", sort=False):
        print(
            f"\n{dataset}: mean and std over seeds {args.seeds}; step_ratio = step time over the "
            f"baseline's, the steps taking turns (agkit.engine.timing; device {device}, "
            f"{torch.get_num_threads()} threads)"
        )
        summary = zoo.summarize(part.dropna(axis=1, how="all"), ratios.get(dataset))
        if dataset == "decoy_mnist":
            summary["paper_mlp (Ross et al. 2017)"] = [
                PAPER_DECOY_MNIST.get(m, float("nan")) for m in summary.index
            ]
        print(summary.to_string())
    print(f"\n{len(table)} runs in {(time.perf_counter() - started) / 60:.1f} min; table in {out}")
    return table


def run_methods(dataset: str, run_one, seed: int, data, args, record) -> None:
    """Every method on one seed's data: ``run_one(method, seed, data, **setting) -> row``.

    A setting is the term's lam, and on SynthFrac for the terms in ``zoo.REGION`` also its
    "don't look here" region. With ``--tune`` on the first seed, a term runs once per
    setting of its grid (``zoo_settings.LAMBDA_GRIDS`` x ``zoo.REGIONS``) and the setting with the
    best validation score is kept (``CHOSEN``) for the later seeds; every row is recorded,
    with ``tuning`` and ``selected`` columns saying which is which.
    """
    tuning = args.tune and seed == args.seeds[0]
    for method in args.methods:
        settings = _settings(dataset, method, tuning)
        rows = []
        for setting in settings:
            try:
                rows.append(run_one(method, seed, data, **setting))
            except TrainingDiverged as error:  # a lam too large for the term: recorded as such
                rows.append(dict(dataset=dataset, method=method, seed=seed, **setting))
                print(f"{dataset} {method} {setting} diverged: {error}", file=sys.stderr)
        score = zoo_settings.VALIDATION_SCORE[dataset]
        best = max(rows, key=lambda row: _finite(row.get(score)))
        if tuning and method != "baseline":
            CHOSEN[(dataset, method)] = settings[rows.index(best)]
        for row in rows:
            record(dict(row, tuning=tuning and method != "baseline", selected=row is best))


def _settings(dataset: str, method: str, tuning: bool) -> list[dict]:
    """The settings a method runs with: its grid when tuning, else the chosen one."""
    if method == "baseline":
        return [dict(lam=0.0)]
    if not tuning:  # untuned, synthfrac_run takes the region from zoo.REGION
        return [CHOSEN.get((dataset, method), dict(lam=zoo.LAMBDAS[dataset][method]))]
    grid = [dict(lam=lam) for lam in zoo_settings.LAMBDA_GRIDS[dataset][method]]
    if dataset == "synthfrac" and method in zoo.REGION:
        return [dict(s, region=r) for r in zoo.REGIONS for s in grid]
    return grid


CHOSEN: dict = {}  # (dataset, method) -> the setting chosen with --tune


def _finite(value) -> float:
    return float(value) if value is not None and value == value else float("-inf")


def _row_text(row: dict) -> str:
    return "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


if __name__ == "__main__":
    main()
