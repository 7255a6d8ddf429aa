"""The tables and sentences under the course's figures (agkit.course.reports): each against
a hand computation, and every sentence in both directions of the numbers it reads."""

import math

import pandas as pd
import pytest
import torch

from agkit.course import reports
from agkit.propagation import Propagated

CHANCE = {
    "uniform": {"mass_in_mask": 0.13, "pointing_game": 0.13},
    "random_cam": {"mass_in_mask": 0.12, "pointing_game": 0.11},
}


def comparison(baseline, guided, mass=(0.15, 0.9), pointing=(0.10, 0.95)):
    """A main_comparison table: seeds 0..n-1 of each method, guided rows first."""
    rows = []
    for method, accuracies, m, p in (
        ("guided", guided, mass[1], pointing[1]),
        ("baseline", baseline, mass[0], pointing[0]),
    ):
        for seed, accuracy in enumerate(accuracies):
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "accuracy_id": 0.99,
                    "accuracy_shifted": accuracy,
                    "auc_shifted": 0.5,
                    "mass_in_mask": m + 0.01 * seed,
                    "pointing_game_shifted": p,
                    "train_seconds": 3.0,
                    "lam": 1.0 if method == "guided" else 0.0,
                }
            )
    return pd.DataFrame(rows)


def test_the_comparison_table_shows_its_columns_by_method_and_seed():
    shown = reports.comparison_table(comparison([0.5, 0.6], [0.9, 0.8]))
    assert list(shown.columns) == list(reports.COMPARISON_COLUMNS) and "lam" not in shown
    assert list(zip(shown["method"], shown["seed"], strict=True)) == [
        ("baseline", 0),
        ("baseline", 1),
        ("guided", 0),
        ("guided", 1),
    ]


def test_attention_scores_are_the_seed_means_above_their_chance_rows():
    table = reports.attention_against_chance(comparison([0.5, 0.6], [0.9, 0.8]), CHANCE)
    assert list(table.columns) == ["mass_in_mask", "pointing_game"]
    assert table.loc["baseline", "mass_in_mask"] == pytest.approx((0.15 + 0.16) / 2)
    assert table.loc["guided", "pointing_game"] == pytest.approx(0.95)
    assert table.loc["random CAM (chance)", "pointing_game"] == 0.11
    assert table.loc["uniform attention (chance)", "mass_in_mask"] == 0.13


def test_the_comparison_story_reads_chance_and_the_seeds_from_the_numbers():
    apart = reports.comparison_story(comparison([0.6, 0.7, 0.65], [0.9, 0.8, 0.85]), CHANCE)
    assert apart[0].startswith("guided: above chance: accuracy 0.85 (chance 0.50)")
    assert "at or near chance: mass in mask 0.16 (chance 0.13)" in apart[1]
    assert apart[2] == "guided - baseline accuracy on the shifted test split: +20.0 points."
    assert apart[3] == (
        "Shifted-test accuracy over 3 seeds: guided 0.85 (0.80 to 0.90) against baseline 0.65 "
        "(0.60 to 0.70): higher by 20.0 points, outside the spread between seeds."
    )
    overlapping = reports.comparison_story(comparison([0.5, 0.7], [0.6, 0.56]), CHANCE)
    assert overlapping[-1].startswith("Shifted-test accuracy over 2 seeds: guided 0.58")
    assert overlapping[-1].endswith(
        "-2.0 points, within the spread between seeds (the ranges overlap)."
    )


def test_the_attention_loss_story_places_each_loss_between_floor_and_uniform():
    history = pd.DataFrame({"epoch": [1, 2, 3], "att": [4.2, 3.0, 2.5]})
    said = reports.attention_loss_story({"guided loop": history}, 2.0, 4.16, {"baseline": 4.3})
    assert said == [
        "floor log|S| on the training masks 2.00, uniform attention log(h·w) 4.16.",
        "guided loop: epoch 1 4.20, last epoch 2.50 (+0.50 from the floor, below uniform "
        "attention).",
        "baseline after training: 4.30 (+2.30 from the floor, above uniform attention).",
    ]


def few_runs(accuracies=(0.5, 0.6, 0.8, 0.86, 0.9)):
    names = reports.FewMaskNames(20, 500)
    order = [names.baseline, names.alone, names.random, names.spread, names.full]
    results = pd.DataFrame(
        {
            "seed": [0] * 5,
            "accuracy_shifted": list(accuracies),
            "mass_in_mask": [0.1, 0.3, 0.5, 0.6, 0.9],
            "pointing_game_shifted": [0.1, 0.2, 0.3, 0.4, 0.5],
            "propagated_images": [0, 0, 480, 480, 0],
            "propagated_iou": [math.nan, math.nan, 0.41234, 0.61234, math.nan],
            "train_seconds": [1.0] * 5,
        }
    )
    return names, reports.with_share_of_gain(results, order, names.baseline, names.full)


def test_the_five_runs_are_named_by_whose_masks_they_train_on():
    names = reports.FewMaskNames(20, 500)
    assert (names.alone, names.random, names.spread, names.full) == (
        "your 20 masks alone",
        "20 random masks, propagated",
        "your 20 masks, propagated",
        "all 500 masks",
    )
    assert reports.FewMaskNames(12, 80, proposed=True).spread == "the 12 proposed masks, propagated"


def test_the_share_of_gain_is_the_way_from_the_baseline_to_every_mask():
    names, few = few_runs()
    assert list(few.columns[:2]) == ["run", "seed"] and few.columns[-1] == "share_of_gain"
    assert list(few["run"]) == [names.baseline, names.alone, names.random, names.spread, names.full]
    # (accuracy - 0.5) / (0.9 - 0.5)
    assert list(few["share_of_gain"]) == pytest.approx([0.0, 0.25, 0.75, 0.9, 1.0])
    shown = reports.few_mask_table(few)
    assert list(shown.columns) == list(reports.FEW_MASK_COLUMNS)
    assert shown.loc[3, "propagated_iou"] == 0.612


def test_the_few_mask_story_comes_from_the_accuracies_of_the_runs():
    names, few = few_runs()
    said = reports.few_mask_story(few, names)
    assert said[0] == "(a coin toss gets 0.50 on the shifted test split)"
    assert said[1] == "The baseline reaches 0.50 on the shifted test split, all 500 masks 0.90."
    assert "Your 20 masks, propagated reach 0.86: 90% of that gain." in said[2]
    assert "recover 15% of the gain more than 20 random masks" in said[4]
    assert said[-1] == "One seed (0); benchmarks/few_masks.py and docs/results.md give three."
    names, worse = few_runs((0.5, 0.6, 0.8, 0.7, 0.9))
    assert (
        "recover 25% of the gain less than 20 random masks"
        in reports.few_mask_story(worse, names)[4]
    )


def test_the_proposal_story_scores_the_drawn_masks_on_the_cam_grid():
    builtin = torch.zeros(3, 1, 8, 8)
    builtin[:, :, :4, :4] = 1  # one cell of a 2 x 2 grid
    masks = builtin.clone()
    masks[0, :, :4, 4:] = 1  # the first drawn mask covers two cells: IoU 1/2
    propagated = Propagated(masks, torch.ones(3), torch.tensor([True, True, False]))
    scores = {"propagated_images": 1.0, "propagated_iou": 0.4, "propagated_marker_share": 0.031}
    said = reports.proposal_story(scores, propagated, builtin, (2, 2))
    assert said == (
        "1 proposals; their overlap (IoU on the CAM grid) with the built-in masks: 0.40, "
        "against 0.75 for the drawn masks; 3.1% of their cells touch the marker."
    )
    proposed = reports.proposal_story(scores, propagated, builtin, (2, 2), proposed=True)
    assert "0.75 for the built-in masks themselves;" in proposed


def test_lambda_findings_compare_with_no_loss_and_with_chance():
    table = pd.DataFrame(
        {
            "lam": [0.0] * 3 + [1.0] * 3 + [10.0] * 3,
            "accuracy_shifted": [0.5, 0.55, 0.6, 0.8, 0.85, 0.9, 0.5, 0.58, 0.62],
            "mass_in_mask": [0.10, 0.11, 0.12, 0.8, 0.8, 0.8, 0.9, 0.9, 0.9],
        }
    )
    one, ten, chance = reports.lambda_findings(table, 0.13)
    assert one.startswith("λ = 1 0.85 (0.80 to 0.90) against λ = 0 0.55")
    assert one.endswith("higher by 30.0 points, outside the spread between seeds")
    assert ten.startswith("λ = 10 0.57") and "within the spread" in ten
    assert chance == "mass in mask at λ = 0: 0.11, at chance (0.13)"
    above = reports.lambda_findings(table.assign(mass_in_mask=0.3), 0.13)[-1]
    assert above == "mass in mask at λ = 0: 0.30, above chance (0.13)"


def test_the_few_shot_table_gives_means_and_gain_in_percent():
    table = pd.DataFrame(
        {
            "method": ["baseline", "guided"] * 4,
            "n_train": [50, 50, 50, 50, 200, 200, 200, 200],
            "accuracy_shifted": [0.5, 0.7, 0.6, 0.9, 0.8, 0.85, 0.7, 0.75],
        }
    )
    shown = reports.few_shot_table(table)
    assert list(shown.index) == ["baseline", "guided", "gain"]
    assert shown.columns.name == "training images" and list(shown.columns) == [50, 200]
    assert shown[50].tolist() == pytest.approx([55.0, 80.0, 25.0])
    assert shown[200].tolist() == pytest.approx([75.0, 80.0, 5.0])


def test_design_labels_name_every_compared_design():
    designs = pd.DataFrame(
        {
            "lam": [0.0, 0.0, 1.0, 1.0, 1.0],
            "pooling": ["avg", "softmax", "avg", "softmax", "softmax"],
            "resolution": ["feature", "feature", "feature", "feature", "input"],
        }
    )
    labels = reports.design_labels(designs)
    assert labels == [
        "no loss · avg pooling",
        "no loss · softmax pooling",
        "guided · avg pooling",
        "guided · softmax pooling",
        "guided · softmax pooling · input res.",
    ]
    assert {name for pair in reports.DESIGN_PAIRS for name in pair} <= set(labels)
