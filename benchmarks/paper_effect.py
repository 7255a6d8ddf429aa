"""Does attention guidance fix a shortcut? The paper's effect on SynthFrac, on a CPU.

    python benchmarks/paper_effect.py                  # 3 seeds + size sweep: ~30 min
    python benchmarks/paper_effect.py --quick          # 1 seed, lam 3, 5000 passes: ~3 min
    python benchmarks/paper_effect.py --seeds 0 --sizes 250,2000

SynthFrac's training images carry a laterality marker that appears mostly on fractured
images (the default ``shortcut_strength``), so a network can score well by looking at
the marker instead of the bone. Two recipes are trained on the same data:

* baseline: ``CAMNet("tiny", pooling="avg")``, cross-entropy only (lam = 0);
* guided: ``CAMNet("tiny", pooling="softmax")``, cross-entropy + lam * attention loss,
  with lam chosen by accuracy on a validation split drawn like the training split.

Both are scored on "test_id" (marker still correlated with the label) and
"test_shifted" (marker independent of the label): a network that learned the shortcut
drops to chance on test_shifted, and its CAM mass lies outside the guiding mask.
A second table repeats baseline vs guided for growing training sets; with more data the
baseline learns more of the fracture and the gain of guidance shrinks, as in the
authors' CUB-200 table.

Each run trains for ``--passes`` image presentations (epochs = passes / training-set
size), so its result does not depend on how fast or busy the machine is, with one torch
thread: on a CPU shared with other people, two threads often run slower than one.
``--time-limit`` (seconds, default none) is a safety net: a run it stops is kept but shown
with ``epochs`` below the planned number and ``complete`` False, never as a full run.
"""

from __future__ import annotations

import argparse
import math
import time

import pandas as pd
import torch
from arguments import comma_list  # benchmarks/arguments.py

from agkit import CAMNet, evaluate, fit
from agkit.data import GuidedDataset, make_loader, make_synthfrac

SCORES = ("accuracy", "auc", "mass_in_mask")


def loaders(n_train: int, seed: int, batch_size: int, n_val: int):
    """Training and validation loaders for one seed (validation drawn like training)."""
    train = GuidedDataset.from_synthfrac(make_synthfrac(n_train, seed=seed, split="train"))
    val = GuidedDataset.from_synthfrac(make_synthfrac(n_val, seed=seed, split="val"))
    return (
        make_loader(train, batch_size=batch_size, shuffle=True, seed=seed),
        make_loader(val, batch_size=256),
    )


def train_one(train_loader, *, lam: float, seed: int, args) -> tuple[CAMNet, dict]:
    """Train one CAMNet; lam = 0 is the baseline (avg pooling), lam > 0 guided (softmax)."""
    torch.manual_seed(seed)
    model = CAMNet("tiny", pooling="avg" if lam == 0 else "softmax")
    epochs = max(1, math.ceil(args.passes / len(train_loader.dataset)))
    start = time.perf_counter()
    # One step decay (x0.1) late in training steadies the final weights that get evaluated.
    lr_step = max(1, round(args.decay_at * epochs)) if args.decay_at else None
    history = fit(
        model,
        train_loader,
        None,
        lam=lam,
        epochs=epochs,
        lr=args.lr,
        lr_step=lr_step,
        seed=seed,
        device="cpu",
        progress=False,
        time_limit=args.time_limit,
    )
    seconds = time.perf_counter() - start
    # fit stops at the first step past the limit: a run that took longer may be cut short.
    complete = len(history) == epochs and (args.time_limit is None or seconds <= args.time_limit)
    info = {"epochs": len(history), "complete": complete, "train_s": round(seconds, 1)}
    return model, info


def scores(model, loader, prefix: str) -> dict:
    s = evaluate(model, loader)
    return {f"{prefix}_{k}": s[k] for k in SCORES}


def compare(n_train: int, seed: int, lams: list[float], tests: dict, args) -> list[dict]:
    """Baseline and guided (lam picked on validation accuracy) for one seed: two rows."""
    train_loader, val_loader = loaders(n_train, seed, args.batch_size, args.n_val)
    candidates = {}
    for lam in [0.0, *lams]:
        model, info = train_one(train_loader, lam=lam, seed=seed, args=args)
        info["val_accuracy"] = evaluate(model, val_loader)["accuracy"]
        candidates[lam] = (model, info)
        print(
            f"  n={n_train} seed={seed} lam={lam:g}: val accuracy {info['val_accuracy']:.3f} "
            f"({info['epochs']} epochs, {info['train_s']} s)",
            flush=True,
        )
    chosen = max(lams, key=lambda lam: candidates[lam][1]["val_accuracy"])
    rows = []
    for method, lam in (("baseline", 0.0), ("guided", chosen)):
        model, info = candidates[lam]
        row = {"method": method, "n_train": n_train, "seed": seed, "lam": lam, **info}
        for name, loader in tests.items():
            row.update(scores(model, loader, name))
        rows.append(row)
    return rows


def summary(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    columns = ["id_accuracy", "shifted_accuracy", "shifted_auc", "shifted_mass_in_mask", "train_s"]
    return table.groupby(by, sort=False)[columns].mean().round(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds",
        type=comma_list(int, minimum=0),
        default="0,1,2",
        help="comma-separated seeds (data and model)",
    )
    parser.add_argument(
        "--n-train", type=int, default=500, help="training images for the main table"
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: comma_list(int, minimum=1)(text) if text else [],
        default="250,500,1000,2000",
        help="training-set sizes for the sweep ('' to skip)",
    )
    parser.add_argument(
        "--lams",
        type=comma_list(float, minimum=0),
        default="1,3,10",
        help="lambda grid for guided training (chosen on validation)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="safety net: stop a run after this many seconds (shown as incomplete)",
    )
    parser.add_argument(
        "--passes", type=int, default=12000, help="image presentations per run at most"
    )
    parser.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate")
    parser.add_argument(
        "--decay-at",
        type=float,
        default=0.75,
        help="divide the learning rate by 10 after this share of the epochs (0: never)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, lam 3 only, 5000 image presentations, sizes 250,2000",
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.lams, args.passes = [0], [3.0], 5000
        if args.sizes == [250, 500, 1000, 2000]:  # the default
            args.sizes = [250, 2000]
    torch.set_num_threads(args.threads)
    seeds, lams, sizes = args.seeds, args.lams, args.sizes
    started = time.perf_counter()

    # Fixed test sets, the same for every seed and size (their own seed, far from the others).
    tests = {
        split.removeprefix("test_"): make_loader(
            GuidedDataset.from_synthfrac(make_synthfrac(args.n_test, seed=10_000, split=split)),
            batch_size=256,
        )
        for split in ("test_id", "test_shifted")
    }

    pd.set_option("display.width", 200)
    print(f"== baseline vs guided, {args.n_train} training images, seeds {seeds}, lam grid {lams}")
    main_rows = [row for seed in seeds for row in compare(args.n_train, seed, lams, tests, args)]
    table = pd.DataFrame(main_rows)
    print(table.drop(columns=["n_train"]).round(3).to_string(index=False))
    print("\nmeans over seeds:")
    means = summary(table, ["method"])
    print(means.to_string())
    gain = means.loc["guided"] - means.loc["baseline"]
    print(
        f"guided - baseline: shifted accuracy {gain['shifted_accuracy']:+.3f}, "
        f"mass in mask {gain['shifted_mass_in_mask']:+.3f}"
    )

    if sizes:
        # One lambda for the sweep: the one validation chose most often above (saves runs).
        sweep_lam = float(table.loc[table.method == "guided", "lam"].mode().min())
        print(f"\n== size sweep {sizes}, seeds {seeds}, lam {sweep_lam:g}")
        sweep = pd.concat(
            [
                table[table.n_train == n]
                if n == args.n_train
                else pd.DataFrame(
                    [r for seed in seeds for r in compare(n, seed, [sweep_lam], tests, args)]
                )
                for n in sizes
            ],
            ignore_index=True,
        )
        by_size = summary(sweep, ["n_train", "method"])["shifted_accuracy"].unstack("method")
        by_size["gain"] = by_size["guided"] - by_size["baseline"]
        print("shifted accuracy, means over seeds:")
        print(by_size.round(3).to_string())
    cut = int((~table["complete"]).sum())
    if cut:
        print(f"\n{cut} run(s) of the main table hit the time limit: their rows are not full runs.")
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
