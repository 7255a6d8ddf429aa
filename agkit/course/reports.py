"""The tables and sentences under the course's figures, so that a notebook cell shows its
experiment and not its formatting.

Each function takes the table of runs a notebook section made and returns what the section
displays or prints: a DataFrame with the columns it shows, or sentences computed from the
numbers by the rules of ``agkit.analysis.claims`` (seeds, chance). No sentence states a
result that its numbers do not give.

A table of runs is a pandas DataFrame with one row per run, as ``experiments.run_many`` (or
``experiments.main_comparison``) returns it: columns seed, lam, pooling, resolution,
n_train, accuracy_id, accuracy_shifted, auc_shifted, mass_in_mask, pointing_game_shifted,
train_seconds and, for runs on propagated masks, propagated_images, propagated_iou and
propagated_marker_share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from agkit import experiments
from agkit.analysis import claims
from agkit.course.plots import chance_lines
from agkit.method import metrics
from agkit.propagation import Propagated, grid_iou

# --------------------------------------------------------------------------------------
# notebook 3, section 5: baseline against guided over seeds

#: the columns of the table of runs, one row per run
COMPARISON_COLUMNS = (
    "method",
    "seed",
    "accuracy_id",
    "accuracy_shifted",
    "auc_shifted",
    "mass_in_mask",
    "pointing_game_shifted",
    "train_seconds",
)
#: the panels of the comparison figure (``plots.compare_methods``)
COMPARED_METRICS = ("accuracy_id", "accuracy_shifted", "mass_in_mask", "pointing_game_shifted")


def comparison_table(table: pd.DataFrame) -> pd.DataFrame:
    """The runs of ``experiments.main_comparison`` (a table of runs with a method column,
    "baseline" or "guided"): the COMPARISON_COLUMNS, sorted by method and seed."""
    return table[list(COMPARISON_COLUMNS)].sort_values(["method", "seed"])


def attention_against_chance(table: pd.DataFrame, chance: dict) -> pd.DataFrame:
    """The mean over seeds of each method's attention scores beside their chance levels.

    Args:
        table: runs with columns method ("baseline", "guided"), mass_in_mask and
            pointing_game_shifted.
        chance: ``metrics.chance_levels`` of the shifted test split's masks.

    Returns:
        ``metrics.attention_table``: rows baseline, guided, "uniform attention (chance)" and
        "random CAM (chance)"; columns mass_in_mask and pointing_game.
    """
    means = experiments.summarize(table, metrics=("mass_in_mask", "pointing_game_shifted"))
    scores = {
        method: {
            "mass_in_mask": means.loc[method, "mass_in_mask"],
            "pointing_game": means.loc[method, "pointing_game_shifted"],
        }
        for method in ("baseline", "guided")
    }
    return metrics.attention_table(scores, chance)


def comparison_story(table: pd.DataFrame, chance: dict) -> list[str]:
    """What the comparison shows: for each method, which of its mean scores are above
    chance (``metrics.chance_headline``), then the accuracy of guided against baseline
    training on the shifted test split over the seeds (``claims.compare``).

    Args:
        table: runs with columns method ("baseline", "guided"), seed, accuracy_shifted,
            mass_in_mask and pointing_game_shifted.
        chance: ``metrics.chance_levels`` of the shifted test split's masks.
    """
    summary = experiments.summarize(
        table, metrics=("accuracy_shifted", "mass_in_mask", "pointing_game_shifted")
    )
    accuracy = {method: rows["accuracy_shifted"] for method, rows in table.groupby("method")}
    comparison = claims.compare("guided", accuracy["guided"], "baseline", accuracy["baseline"])
    return [
        *metrics.chance_headline(summary, chance),
        f"Shifted-test accuracy over {table['seed'].nunique()} seeds: {comparison}.",
    ]


# --------------------------------------------------------------------------------------
# notebook 3, section 7: where the attention loss ended


def attention_loss_story(
    histories: Mapping[str, pd.DataFrame],
    floor: float,
    uniform: float,
    after_training: Mapping[str, float] | None = None,
) -> list[str]:
    """Where each attention loss ended, between its floor and uniform attention.

    Args:
        histories: {name: per-epoch DataFrame with column att}; each gets its first and
            last epoch's value.
        floor: the loss's lowest value on the training masks, log|S|
            (``metrics.attention_loss_floor``).
        uniform: the loss of uniform attention, log(h·w).
        after_training: {name: attention loss measured once after training}.
    """

    def where(value: float) -> str:
        side = "above" if value > uniform else "below"
        return f"{value:.2f} ({value - floor:+.2f} from the floor, {side} uniform attention)"

    said = [
        f"floor log|S| on the training masks {floor:.2f}, uniform attention log(h·w) {uniform:.2f}."
    ]
    for name, history in histories.items():
        att = history["att"]
        said.append(f"{name}: epoch 1 {att.iloc[0]:.2f}, last epoch {where(att.iloc[-1])}.")
    said += [f"{name} after training: {where(v)}." for name, v in (after_training or {}).items()]
    return said


# --------------------------------------------------------------------------------------
# notebook 3, section 8: a few masks, alone and propagated


@dataclass(frozen=True)
class FewMaskNames:
    """The names of section 8's five runs, as its table, bars and sentences write them.

    n_masks: how many masks were drawn; n_train: the training images (every one has a
    built-in mask); proposed: the masks are the built-in masks of the images the kit
    proposes (no one drew any), not a person's.
    """

    n_masks: int
    n_train: int
    proposed: bool = False
    baseline: str = "baseline"

    @property
    def yours(self) -> str:
        return (
            f"the {self.n_masks} proposed masks" if self.proposed else f"your {self.n_masks} masks"
        )

    @property
    def alone(self) -> str:
        return f"{self.yours} alone"

    @property
    def random(self) -> str:
        return f"{self.n_masks} random masks, propagated"

    @property
    def spread(self) -> str:
        return f"{self.yours}, propagated"

    @property
    def full(self) -> str:
        return f"all {self.n_train} masks"


#: the columns of section 8's table
FEW_MASK_COLUMNS = (
    "run",
    "accuracy_shifted",
    "share_of_gain",
    "mass_in_mask",
    "pointing_game_shifted",
    "propagated_images",
    "propagated_iou",
)


def with_share_of_gain(
    results: pd.DataFrame, runs: Sequence[str], baseline: str, full: str
) -> pd.DataFrame:
    """A copy of ``results`` (a table of runs, one row per name of ``runs``, in that order)
    with the names as a first column ``run`` and a last column ``share_of_gain``: how far
    each run's accuracy_shifted gets from the run ``baseline``'s towards the run ``full``'s
    (``claims.share_of_gain``)."""
    named = results.copy()
    named.insert(0, "run", list(runs))
    accuracy = dict(zip(named["run"], named["accuracy_shifted"], strict=True))
    named["share_of_gain"] = [
        claims.share_of_gain(a, accuracy[baseline], accuracy[full])
        for a in named["accuracy_shifted"]
    ]
    return named


def few_mask_table(few: pd.DataFrame) -> pd.DataFrame:
    """Section 8's table: the FEW_MASK_COLUMNS of ``few`` (``with_share_of_gain``'s table),
    rounded to three decimals."""
    return few[list(FEW_MASK_COLUMNS)].round(3)


def few_mask_story(few: pd.DataFrame, names: FewMaskNames) -> list[str]:
    """What section 8's bars show: the coin toss of the accuracy panel, the share of the
    full-annotation gain each run recovers (``claims.gain_story``, the propagated masks
    against the other runs) and the one seed the runs share.

    few: a table of runs with columns run (named by ``names``), seed and accuracy_shifted.
    """
    coin = chance_lines(None)["accuracy_shifted"]["coin toss"]
    accuracy = dict(zip(few["run"], few["accuracy_shifted"], strict=True))
    seeds = ", ".join(str(s) for s in sorted(few["seed"].unique()))
    return [
        f"(a coin toss gets {coin:.2f} on the shifted test split)",
        *claims.gain_story(accuracy, names.baseline, names.full, names.spread),
        f"One seed ({seeds}); benchmarks/few_masks.py and docs/results.md give three.",
    ]


def proposal_story(
    scores: Mapping[str, float],
    propagated: Propagated,
    builtin: torch.Tensor,
    grid: tuple[int, int],
    proposed: bool = False,
) -> str:
    """How good the propagator's proposals are, against SynthFrac's built-in masks.

    Args:
        scores: the propagated run's row of the table (propagated_images, propagated_iou,
            propagated_marker_share: ``experiments.propagation_scores``).
        propagated: the masks that run trained with (n x 1 x H x W, drawn n bools).
        builtin: the built-in masks of the same n training images, n x 1 x H x W.
        grid: the CAM grid (h, w) the IoU is measured on.
        proposed: the "drawn" masks are built-in masks the kit proposed (no one drew any),
            so their IoU is that of the built-in masks with themselves.
    """
    drawn = propagated.drawn
    iou_drawn = grid_iou(propagated.masks[drawn], builtin[drawn], grid).nanmean()
    which = "the built-in masks themselves" if proposed else "the drawn masks"
    return (
        f"{int(scores['propagated_images'])} proposals; their overlap (IoU on the CAM grid) with "
        f"the built-in masks: {scores['propagated_iou']:.2f}, against {iou_drawn:.2f} for "
        f"{which}; {scores['propagated_marker_share']:.1%} of their cells touch the marker."
    )


# --------------------------------------------------------------------------------------
# notebook 4: the ablations


def lambda_findings(by_lambda: pd.DataFrame, mass_chance: float) -> list[str]:
    """What the λ panels show: the shifted-test accuracy of every λ against λ = 0's over
    the seeds, then λ = 0's mean mass in mask against its chance level.

    by_lambda: a table of runs with columns lam, accuracy_shifted and mass_in_mask, with
    runs at lam 0; mass_chance: the chance level of mass in mask (the higher of uniform
    attention and random CAMs).
    """
    at_zero = by_lambda.loc[by_lambda["lam"] == 0, "mass_in_mask"].mean()
    against = claims.against_reference(
        by_lambda, "lam", "accuracy_shifted", 0.0, label=lambda v: f"λ = {v:g}"
    )
    return [*against, f"mass in mask at λ = 0: {claims.versus_chance(at_zero, mass_chance)}"]


def few_shot_table(by_size: pd.DataFrame, metric: str = "accuracy_shifted") -> pd.DataFrame:
    """The authors' few-shot table on SynthFrac: rows baseline, guided and gain (guided
    minus baseline), one column per training-set size ("training images"), values the mean
    of ``metric`` over the seeds in percent, to one decimal.

    by_size: a table of runs with columns method ("baseline", "guided"), n_train and metric.
    """
    means = by_size.pivot_table(index="method", columns="n_train", values=metric, aggfunc="mean")
    means.loc["gain"] = means.loc["guided"] - means.loc["baseline"]
    return (100 * means).round(1).rename_axis(columns="training images")


def design_label(lam: float, pooling: str, resolution: str) -> str:
    """A design of section 6 in words: ``guided · softmax pooling · input res.``."""
    loss = "guided" if lam > 0 else "no loss"
    return f"{loss} · {pooling} pooling" + (" · input res." if resolution == "input" else "")


def design_labels(table: pd.DataFrame) -> list[str]:
    """``design_label`` of every run of a table with columns lam, pooling and resolution."""
    return [
        design_label(lam, pooling, resolution)
        for lam, pooling, resolution in zip(
            table["lam"], table["pooling"], table["resolution"], strict=True
        )
    ]


#: the comparisons of section 6: the loss with each pooling, its resolution, pooling alone
DESIGN_PAIRS = (
    ("guided · softmax pooling", "guided · avg pooling"),
    ("guided · softmax pooling · input res.", "guided · softmax pooling"),
    ("no loss · softmax pooling", "no loss · avg pooling"),
)
