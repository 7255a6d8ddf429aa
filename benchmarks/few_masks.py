"""How far do a few masks go? Shifted accuracy against the number of masks, per strategy.

    python benchmarks/few_masks.py                        # workshop profile, 3 seeds
    python benchmarks/few_masks.py --seeds 0 --n-masks 20 --strategies random,clusters
    python benchmarks/few_masks.py --json few_masks.json  # also {"strategy": {"n": share}}

For every seed: the course's baseline (no masks) and the course's guided run with every
training image annotated are trained (or fetched from ``--runs-dir``). The baseline
ranks the training images with each strategy of ``agkit.analysis.selection`` ("random" is the
control); the first k images of a ranking get their (built-in SynthFrac) masks, and a
guided network is trained with those k masks only. Each cell reports the shifted test
accuracy and the share of the full-annotation gain it recovers:

    share = (acc_k - acc_baseline) / (acc_all - acc_baseline)

where acc_all is the course's guided run with all masks. The row "all" trains the chosen
recipe with every mask, to show what the recipe itself gives.

The recipe (``--recipe``, a comma list to compare several in one run): a propagator of
``agkit.propagation`` ("segmenter", the course's default, or "self_training") spreads the
k drawn masks to every training image and trains like full annotation
(``course.propagated_config``; ``--min-confidence`` leaves out the less sure proposals),
and the table adds the grid IoU of the proposals with the built-in masks and the share of
their cells on the marker; "scratch" trains on the k masks alone, the annotated images
oversampled (``course.few_mask_config``); both are ordinary cached course runs, so the
notebooks reuse what this script trained. "finetune" switches guidance on in the trained
baseline and trains on for ``--finetune-epochs`` (cached in ``<runs-dir>/few_masks/``).
``--share`` oversamples annotated images to that share of the draws (0 = plain
shuffling); ``--balance-lam`` divides lambda by the chance that a batch holds a mask.
The validation scores are printed too: a recipe is chosen on them, never on the test
splits (``accuracy_val_shifted`` is scored on a validation split drawn like the shifted
test; the plain validation split carries the marker, so its accuracy rewards the
shortcut, and its mass in mask does not). Runs have no time limit and use one torch
thread each, ``--jobs`` at a time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch
from arguments import comma_list  # benchmarks/arguments.py

from agkit.analysis.claims import share_of_gain
from agkit.analysis.selection import STRATEGIES
from agkit.data import make_loader
from agkit.experiments import (
    FEW_MASKS,
    MIN_CONFIDENCE,
    PROPAGATED_LAM,
    PROPAGATION,
    annotation_proposal,
    baseline_config,
    few_mask_config,
    get_profile,
    guided_config,
    image_positions,
    load_model,
    make_datasets,
    propagated_config,
    run_many,
)
from agkit.experiments.few_masks import (
    ANNOTATED_SHARE,
    FEW_MASK_LAM,
    balanced_lam,
    train_with_few_masks,
    with_masks,
)
from agkit.method.train import evaluate
from agkit.propagation import PROPAGATORS, check_min_confidence

ALL = "all"
RECIPES = (*PROPAGATORS, "scratch", "finetune")
# the columns each course-run cell reports (run_many's names -> this table's)
COLUMNS = {
    "accuracy_val": "accuracy_val",
    "accuracy_val_shifted": "accuracy_val_shifted",
    "accuracy_shifted": "accuracy_test_shifted",
    "mass_in_mask_val": "mass_in_mask_val",
    "mass_in_mask_shifted": "mass_in_mask_test_shifted",
    "propagated_iou": "propagated_iou",
    "propagated_marker_share": "propagated_marker_share",
}


def finetune_run(job: dict) -> dict:
    """Train one (seed, strategy, k) cell of the finetune recipe; cached as JSON."""
    cache = Path(job["runs_dir"]) / "few_masks" / f"{job['key']}.json"
    labels = {k: job[k] for k in ("seed", "strategy", "n_masks")}
    if cache.exists():  # the same images may be chosen by two strategies: relabel
        return {**json.loads(cache.read_text()), **labels}
    torch.set_num_threads(1)
    profile = get_profile(job["profile"])
    base = baseline_config(profile, job["seed"])
    datasets = make_datasets(base)
    train = with_masks(datasets["train"], job["chosen"])
    recipe = job["recipe"]
    started = time.perf_counter()
    model, _ = train_with_few_masks(
        train,
        baseline=load_model(base, job["runs_dir"]),
        epochs=recipe["epochs"],
        lam=recipe["lam"],
        lr=recipe["lr"],
        batch_size=profile.batch_size,
        seed=job["seed"],
        annotated_share=recipe["share"] or None,
        balance_lam=recipe["balance_lam"],
        device="cpu",
    )
    result = dict(labels, recipe=recipe)
    result["train_seconds"] = round(time.perf_counter() - started, 1)
    for split in ("val", "test_shifted"):
        scores = evaluate(model, make_loader(datasets[split], 256))
        result[f"accuracy_{split}"] = scores["accuracy"]
        result[f"mass_in_mask_{split}"] = scores["mass_in_mask"]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    return result


def scratch_config(profile, seed: int, ids: list, n_images: int, recipe: dict, every: bool):
    """The course run of one scratch or propagated cell: ``ids`` keep their masks
    (``every``: all do, and a propagator has nothing to add)."""
    lam = recipe["lam"]
    if recipe["name"] in PROPAGATORS:
        if every:
            return guided_config(profile, lam, seed, lr=recipe["lr"], epochs=recipe["epochs"])
        return propagated_config(
            profile,
            seed,
            annotated_ids=ids,
            propagation=recipe["name"],
            lam=lam,
            min_confidence=recipe["min_confidence"],
            lr=recipe["lr"],
            epochs=recipe["epochs"],
            time_limit=None,
        )
    if recipe["balance_lam"] and not every:
        lam = balanced_lam(lam, len(ids), n_images, profile.batch_size)
    return few_mask_config(
        profile,
        lam,
        seed,
        annotated_ids=() if every else ids,
        share=None if every or not recipe["share"] else recipe["share"],
        lr=recipe["lr"],
        epochs=recipe["epochs"],
        time_limit=None,
    )


def recipe_rows(args, profile, name: str, seeds, strategies, sizes) -> pd.DataFrame:
    """Train (or fetch) every (seed, strategy, k) cell of recipe ``name``: one row each."""
    propagating = name in PROPAGATORS
    recipe = dict(
        name=name,
        lam=args.lam if args.lam is not None else PROPAGATED_LAM if propagating else FEW_MASK_LAM,
        lr=args.lr or profile.lr,
        share=0.0 if propagating else args.share,
        balance_lam=args.balance_lam and not propagating,
        min_confidence=args.min_confidence if propagating else 0.0,
        epochs=args.finetune_epochs if name == "finetune" else args.epochs or profile.epochs,
    )
    jobs = []
    for seed in seeds:
        train = make_datasets(baseline_config(profile, seed))["train"]
        for strategy in strategies:
            order = annotation_proposal(profile, strategy, seed, args.runs_dir)
            for k in sizes:
                if k == ALL and strategy != strategies[0]:
                    continue  # every strategy chooses the same images when all are chosen
                chosen = order if k == ALL else order[:k]
                job = dict(seed=seed, strategy=strategy, n_masks=k)
                if name != "finetune":
                    job["config"] = scratch_config(
                        profile, seed, chosen, len(train), recipe, k == ALL
                    )
                else:
                    key = hashlib.sha1(
                        json.dumps(
                            [profile.name, seed, sorted(chosen), recipe], sort_keys=True
                        ).encode()
                    ).hexdigest()[:12]
                    job.update(
                        profile=profile.name,
                        chosen=image_positions(train, chosen),
                        recipe=recipe,
                        key=key,
                        runs_dir=args.runs_dir,
                    )
                jobs.append(job)
    started = time.perf_counter()
    if name != "finetune":
        configs = [job["config"] for job in jobs]
        table = run_many(configs, args.runs_dir, desc=f"{name} runs", jobs=args.jobs)
        rows = [
            {
                "seed": job["seed"],
                "strategy": job["strategy"],
                "n_masks": job["n_masks"],
                **{mine: getattr(row, theirs, float("nan")) for theirs, mine in COLUMNS.items()},
            }
            for job, row in zip(jobs, table.itertuples(), strict=True)
        ]
    elif args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            rows = list(pool.map(finetune_run, jobs))
    else:
        rows = [finetune_run(job) for job in jobs]
    print(
        f"recipe {name}: {recipe}; {len(jobs)} runs in {time.perf_counter() - started:.0f} s "
        "(cached runs count as 0)"
    )
    results = pd.DataFrame(rows)
    everything = results[results["n_masks"] == ALL]  # the same run for every strategy
    results = pd.concat([results] + [everything.assign(strategy=s) for s in strategies[1:]])
    return results.assign(recipe=name)


TIE = 0.01  # within one point of shifted validation accuracy: decided by mass in mask


def chosen_strategy(results: pd.DataFrame, recipe: str, n_masks: int = FEW_MASKS) -> str:
    """The sentence naming the strategy the validation splits choose for ``recipe`` at
    ``n_masks`` masks: the best mean accuracy on the shifted validation split, ties within
    TIE going to the most mass in the validation masks (the rule that chooses lambda);
    "random" is the control and is not a candidate. The test splits play no part."""
    cells = results[(results["n_masks"] == str(n_masks)) & (results["strategy"] != "random")]
    if cells.empty:
        return f"{recipe}: no strategy but random was run at {n_masks} masks; none chosen."
    means = cells.groupby("strategy")[["accuracy_val_shifted", "mass_in_mask_val"]].mean()
    best = means["accuracy_val_shifted"].max()
    tied = means[means["accuracy_val_shifted"] >= best - TIE]
    winner = tied["mass_in_mask_val"].idxmax()
    return (
        f"{recipe}: the validation splits choose {winner!r} at {n_masks} masks (shifted "
        f"validation accuracy within {TIE:.2f} of the best {best:.3f}: "
        f"{', '.join(tied.index)}; the most mass in the validation masks among them, "
        f"{tied.loc[winner, 'mass_in_mask_val']:.3f})."
    )


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="workshop")
    parser.add_argument("--seeds", type=comma_list(int, minimum=0), default="0,1,2")
    parser.add_argument(
        "--n-masks", type=comma_list(int, minimum=1, extra=(ALL,)), default="5,10,20,50,all"
    )
    parser.add_argument(
        "--strategies", type=comma_list(str, choices=STRATEGIES), default=",".join(STRATEGIES)
    )
    parser.add_argument(
        "--recipe",
        default=PROPAGATION,
        help=f"one or more of {', '.join(RECIPES)}, comma-separated (default: the course's)",
    )
    parser.add_argument("--finetune-epochs", type=int, default=12)
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs of a course-run recipe (the profile's)"
    )
    parser.add_argument(
        "--lam",
        type=float,
        default=None,
        help="lambda of the few-mask runs (default: the course's, PROPAGATED_LAM for a "
        "propagator and FEW_MASK_LAM otherwise)",
    )
    parser.add_argument(
        "--full-lam",
        type=float,
        default=3.0,
        help="lambda of the full-annotation reference (the course's choice)",
    )
    parser.add_argument("--lr", type=float, default=None, help="default: the profile's")
    parser.add_argument(
        "--share",
        type=float,
        default=ANNOTATED_SHARE,
        help="scratch and finetune: oversample annotated images to this share of draws; 0 = off",
    )
    parser.add_argument("--balance-lam", action="store_true")
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=MIN_CONFIDENCE,
        help="a propagator's proposals below this confidence train without a mask",
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument(
        "--json", default=None, help="write {strategy: {n_masks: share}} of the first recipe"
    )
    parser.add_argument("--csv", default=None, help="write every row (all recipes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    recipes = args.recipe.split(",")
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe {unknown[0]!r}; choose from {', '.join(RECIPES)}")
    try:  # every argument is checked before anything trains
        profile = get_profile(args.profile)
        check_min_confidence(args.min_confidence)
    except ValueError as error:
        parser.error(str(error))
    seeds, sizes, strategies = args.seeds, args.n_masks, args.strategies
    too_many = [n for n in sizes if n != ALL and n > profile.n_train]
    if too_many:
        parser.error(
            f"--n-masks {too_many[0]} asks for more masks than the profile's {profile.n_train} "
            "training images"
        )
    if "random" not in strategies:
        strategies.insert(0, "random")

    # the course's own runs: baseline (no masks) and guided with every mask
    references = [baseline_config(profile, s, time_limit=None) for s in seeds]
    references += [guided_config(profile, args.full_lam, s, time_limit=None) for s in seeds]
    table = run_many(references, args.runs_dir, desc="baseline and full", jobs=args.jobs)
    reference = {(row.lam > 0, row.seed): row.accuracy_shifted for row in table.itertuples()}

    results = pd.concat(
        [recipe_rows(args, profile, r, seeds, strategies, sizes) for r in recipes],
        ignore_index=True,
    )
    results["baseline"] = [reference[(False, s)] for s in results["seed"]]
    results["full"] = [reference[(True, s)] for s in results["seed"]]
    results["share_of_gain"] = [
        share_of_gain(r.accuracy_test_shifted, r.baseline, r.full) for r in results.itertuples()
    ]
    print(
        f"shifted accuracy, mean of seeds {seeds}: baseline "
        f"{results.groupby('seed')['baseline'].first().mean():.3f}, full annotation "
        f"(course's guided run) {results.groupby('seed')['full'].first().mean():.3f}"
    )
    results["n_masks"] = results["n_masks"].astype(str)
    columns = [str(k) for k in sizes]
    values = ["accuracy_test_shifted", "share_of_gain", "accuracy_val_shifted", "mass_in_mask_val"]
    if results["propagated_iou"].notna().any():
        values += ["propagated_iou", "propagated_marker_share"]
    for value in values:
        pivot = results.pivot_table(
            index=["recipe", "strategy"], columns="n_masks", values=value, aggfunc="mean"
        ).reindex(columns=[c for c in columns if value.startswith("accuracy") or c != ALL])
        print(f"\n{value} (mean over seeds)\n{pivot.round(3).to_string()}")
    per_seed = results.pivot_table(
        index=["recipe", "n_masks", "strategy"], columns="seed", values="share_of_gain"
    )
    references_by_seed = {s: (reference[(False, s)], reference[(True, s)]) for s in seeds}
    print(
        f"\nshare_of_gain per seed (baseline, full by seed: {references_by_seed})\n"
        f"{per_seed.round(3).to_string()}"
    )
    for name in recipes:
        print(chosen_strategy(results[results["recipe"] == name], name))
    if args.csv:
        results.to_csv(args.csv, index=False)
    if args.json:
        first = results[results["recipe"] == recipes[0]]
        shares = first.pivot_table(
            index="strategy",
            columns="n_masks",
            values="share_of_gain",
            aggfunc="mean",
            dropna=False,
        )
        # null where full annotation gained nothing over the baseline (no share to give)
        data = {
            s: {k: None if math.isnan(v) else round(float(v), 4) for k, v in row.items()}
            for s, row in shares.iterrows()
        }
        Path(args.json).write_text(json.dumps(data, indent=1))
    return results


if __name__ == "__main__":
    main()
