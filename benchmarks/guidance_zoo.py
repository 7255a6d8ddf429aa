"""Every guidance term side by side, on SynthFrac and on Decoy-MNIST.

For each method (the baseline and every term of ``agkit.guidance``) and each seed:

* SynthFrac (a course profile): accuracy and worst-group accuracy (label x marker) on the
  shifted test split, and the "wrong reason" score, the share of attribution on the lead
  marker, from the CAM and from Integrated Gradients;
* Decoy-MNIST: test accuracy;
* the training-step time as a ratio to the baseline's: from the runs themselves, and from
  steps of every method taking turns on one batch (the fair number on a shared machine).

Then the mean and standard deviation over seeds, beside Ross et al.'s published Decoy-MNIST
figures. Example (MNIST's raw files under ROOT/MNIST/raw; --download fetches them):

    python benchmarks/guidance_zoo.py --mnist-root ROOT --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from agkit import course, zoo
from agkit.data.decoy_mnist import make_decoy_mnist
from agkit.models import CAMNet

# Ross, Hughes and Doshi-Velez (IJCAI 2017), Decoy-MNIST test accuracy of their MLP.
PAPER_DECOY_MNIST = {"baseline": 0.52, "rrr": 0.96}


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mnist-root", help="folder holding MNIST/raw (Decoy-MNIST is skipped without it)"
    )
    parser.add_argument("--download", action="store_true", help="let torchvision fetch MNIST")
    parser.add_argument("--profile", default="workshop", help="SynthFrac course profile")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(zoo.METHODS))
    parser.add_argument("--synthfrac-epochs", type=int, help="default: the profile's")
    parser.add_argument(
        "--ig-images",
        type=int,
        default=64,
        help="shifted test images with a marker scored by Integrated Gradients",
    )
    parser.add_argument("--decoy-train", type=int, help="first n training digits (default all)")
    parser.add_argument("--decoy-test", type=int, help="first n test digits (default all)")
    parser.add_argument("--decoy-epochs", type=int, default=2)
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
        profile = course.get_profile(args.profile)
        for seed in args.seeds:
            data = zoo.synthfrac_data(profile, seed)
            for method in args.methods:
                record(
                    zoo.synthfrac_run(
                        profile,
                        method,
                        seed,
                        data,
                        device=device,
                        epochs=args.synthfrac_epochs,
                        ig_images=args.ig_images,
                    )
                )
    if "decoy_mnist" not in args.skip:
        if args.mnist_root is None:
            print("no --mnist-root: Decoy-MNIST skipped", file=sys.stderr)
        else:
            for seed in args.seeds:
                digits = make_decoy_mnist(
                    args.mnist_root, "train", n=args.decoy_train, seed=seed, download=args.download
                )
                test = make_decoy_mnist(
                    args.mnist_root, "test", n=args.decoy_test, seed=seed, download=args.download
                )
                for method in args.methods:
                    record(
                        zoo.decoy_run(
                            digits, test, method, seed, epochs=args.decoy_epochs, device=device
                        )
                    )

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
        ratios["synthfrac"] = zoo.interleaved_step_ratios(
            lambda pooling: CAMNet(profile.backbone, 2, 1, pooling).to(device),
            batch,
            args.methods,
            lams=zoo.LAMBDAS["synthfrac"],
            repeats=args.timing_repeats,
        )
    if args.timing_repeats and "decoy_mnist" not in args.skip and args.mnist_root is not None:
        batch = tuple(t[:64] for t in digits.tensors())
        ratios["decoy_mnist"] = zoo.interleaved_step_ratios(
            lambda pooling: zoo.digit_model(pooling).to(device),
            batch,
            args.methods,
            lams=zoo.LAMBDAS["decoy_mnist"],
            repeats=args.timing_repeats,
        )

    table = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    pd.set_option("display.precision", 3)
    for dataset, part in table.groupby("dataset", sort=False):
        print(
            f"\n{dataset}: mean and std over seeds {args.seeds}; step ratios = median step time "
            f"/ baseline's, in the runs and with steps taking turns (device {device}, "
            f"{torch.get_num_threads()} threads)"
        )
        summary = zoo.summarize(part.dropna(axis=1, how="all"))
        summary = summary.rename(columns={"step_ratio": "step_ratio_runs"})
        if dataset in ratios:  # the same steps taking turns: robust to a drifting machine load
            summary["step_ratio_interleaved"] = ratios[dataset]
        if dataset == "decoy_mnist":
            summary["paper_mlp (Ross et al. 2017)"] = [
                PAPER_DECOY_MNIST.get(m, float("nan")) for m in summary.index
            ]
        print(summary.to_string())
    print(f"\n{len(table)} runs in {(time.perf_counter() - started) / 60:.1f} min; table in {out}")
    return table


def _row_text(row: dict) -> str:
    return "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


if __name__ == "__main__":
    main()
