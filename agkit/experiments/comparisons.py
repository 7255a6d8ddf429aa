"""What the notebooks compare: lambda chosen on validation, baseline against guided over
seeds, their summary, and the runs each notebook trains (ablations included)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from agkit.experiments.configs import PROPAGATION, RunConfig, baseline_config, guided_config
from agkit.experiments.parallel import run_many
from agkit.experiments.profiles import Profile
from agkit.experiments.proposals import random_control_config


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

    The baselines of ``main_comparison`` train in the same call: they do not depend on
    lambda, and beside them no core waits idle for the last candidate to finish.
    """
    configs = [
        guided_config(profile, lam, seed=profile.seeds[0], **changes) for lam in profile.lambdas
    ]
    baselines = [baseline_config(profile, seed, **changes) for seed in profile.seeds]
    table = run_many(
        configs + baselines,
        runs_dir,
        desc="choosing lambda (and training the baselines)",
        progress=progress,
        device=device,
        jobs=jobs,
    ).iloc[: len(configs)]
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
