"""Sentences that state a result come from the numbers: each rule against a hand example."""

import pandas as pd
import pytest

from agkit.analysis import claims


def test_spread_is_the_mean_and_the_range_of_the_seeds():
    s = claims.spread([0.5, 0.7, 0.6])
    assert (s.mean, s.low, s.high, s.n) == pytest.approx((0.6, 0.5, 0.7, 3))
    assert str(s) == "0.60 (0.50 to 0.70)"
    assert s.format(claims.in_points) == "+60.0 (+50.0 to +70.0)"
    assert str(claims.spread([0.25])) == "0.25"
    with pytest.raises(ValueError, match="no run for this setting"):
        claims.spread([])


def test_two_settings_differ_only_when_their_ranges_do_not_overlap():
    low, high = claims.spread([0.50, 0.55, 0.52]), claims.spread([0.56, 0.80, 0.70])
    assert claims.order(high, low) == 1 and claims.order(low, high) == -1
    touching = claims.spread([0.55, 0.90, 0.90])  # its lowest seed is the other's highest
    assert claims.order(touching, low) == 0
    assert claims.order(claims.spread([0.9]), claims.spread([0.1])) == 0  # one seed: no spread


def test_compare_says_outside_or_within_the_spread():
    outside = claims.compare("guided", [0.80, 0.85, 0.82], "baseline", [0.50, 0.55, 0.52])
    assert outside == (
        "guided 0.82 (0.80 to 0.85) against baseline 0.52 (0.50 to 0.55): higher by 30.0 points, "
        "outside the spread between seeds"
    )
    within = claims.compare("box", [0.70, 0.80, 0.75], "exact", [0.74, 0.79, 0.78])
    assert within.endswith("-2.0 points, within the spread between seeds (the ranges overlap)")
    assert "lower by" in claims.compare("shifted", [0.5, 0.52], "exact", [0.7, 0.8])


def test_a_trend_is_read_from_its_two_ends():
    # the gains of notebook 4's first draft: +3.4, +10.2, +37.1 points "shrink as data grow"
    growing = {125: [0.02, 0.04, 0.04], 250: [0.08, 0.10, 0.13], 500: [0.35, 0.37, 0.39]}
    said = claims.trend(growing, "the gain", claims.in_points)
    assert said.startswith("the gain grows steadily from 125 to 500 (+3.3 (+2.0 to +4.0) at 125")
    assert "shrinks" not in said
    shrinking = {1: [0.5, 0.6], 2: [0.55, 0.62], 3: [0.1, 0.2]}
    assert claims.trend(shrinking, "x").startswith("x shrinks from 1 to 3")  # not steadily
    flat = {1: [0.5, 0.6], 2: [0.55, 0.65]}
    assert claims.trend(flat, "x").startswith("x stays within the spread between seeds")


def test_versus_chance_uses_the_margin():
    assert claims.versus_chance(0.31, 0.25) == "0.31, above chance (0.25)"
    assert claims.versus_chance(0.27, 0.25) == "0.27, at chance (0.25)"
    assert claims.versus_chance(0.05, 0.13) == "0.05, below chance (0.13)"


def test_paired_gain_subtracts_the_baseline_of_the_same_seed():
    table = pd.DataFrame(
        {
            "method": ["baseline", "guided"] * 4,
            "seed": [0, 0, 1, 1, 0, 0, 1, 1],
            "n_train": [100] * 4 + [200] * 4,
            "accuracy_shifted": [0.5, 0.6, 0.4, 0.7, 0.5, 0.9, 0.6, 0.8],
        }
    )
    gains = claims.paired_gain(table, "n_train")
    assert gains[100] == pytest.approx([0.1, 0.3]) and gains[200] == pytest.approx([0.4, 0.2])


def test_against_reference_compares_every_other_setting():
    table = pd.DataFrame(
        {
            "mask_quality": ["exact"] * 3 + ["box"] * 3 + ["shifted"] * 3,
            "accuracy_shifted": [0.8, 0.82, 0.84, 0.79, 0.81, 0.85, 0.5, 0.55, 0.6],
        }
    )
    box, shifted = claims.against_reference(table, "mask_quality", "accuracy_shifted", "exact")
    assert box.startswith("box 0.82") and "within the spread" in box
    assert shifted.startswith("shifted 0.55") and "lower by 27.0 points, outside" in shifted
    with pytest.raises(ValueError, match="no run with mask_quality = 'dilated'"):
        claims.against_reference(table, "mask_quality", "accuracy_shifted", "dilated")


def test_gain_story_states_each_share_and_direction_from_the_numbers():
    accuracy = {
        "baseline": 0.50,
        "your 20 masks alone": 0.60,
        "20 random masks, propagated": 0.80,
        "your 20 masks, propagated": 0.86,
        "all 500 masks": 0.90,
    }
    said = claims.gain_story(accuracy, "baseline", "all 500 masks", "your 20 masks, propagated")
    assert said[0] == "The baseline reaches 0.50 on the shifted test split, all 500 masks 0.90."
    assert "Your 20 masks, propagated reach 0.86: 90% of that gain." in said[1]
    assert "Your 20 masks alone: 25%." in said[1] and "20 random masks, propagated: 75%." in said[1]
    assert said[2] == (
        "Your 20 masks, propagated recover 65% of the gain more than your 20 masks alone in "
        "this run."
    )
    assert said[3].endswith("15% of the gain more than 20 random masks, propagated in this run.")
    worse = dict(accuracy, **{"your 20 masks, propagated": 0.70})
    text = claims.gain_story(worse, "baseline", "all 500 masks", "your 20 masks, propagated")
    assert "25% of the gain less than 20 random masks" in text[3]


def test_gain_story_gives_no_share_of_a_gain_too_small_to_share():
    accuracy = {"baseline": 0.60, "yours": 0.70, "all": 0.63}
    said = claims.gain_story(accuracy, "baseline", "all", "yours")
    assert "+3.0 points here: too little to share out" in said[1]
    assert "%" not in " ".join(said)
    assert claims.share_of_gain(0.7, 0.6, 0.6) != claims.share_of_gain(0.7, 0.6, 0.6)  # NaN


def test_compare_pairs_compares_each_named_pair_in_its_order():
    table = pd.DataFrame(
        {
            "design": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
            "accuracy_shifted": [0.8, 0.82, 0.84, 0.5, 0.55, 0.6, 0.79, 0.81, 0.85],
        }
    )
    a_b, b_a, c_a = claims.compare_pairs(
        table, "design", "accuracy_shifted", [("a", "b"), ("b", "a"), ("c", "a")]
    )
    assert a_b == claims.compare("a", [0.8, 0.82, 0.84], "b", [0.5, 0.55, 0.6])
    assert "higher by 27.0 points, outside" in a_b and "lower by 27.0 points, outside" in b_a
    assert c_a.startswith("c 0.82") and "within the spread" in c_a
    with pytest.raises(ValueError, match="no run with design = 'd'"):
        claims.compare_pairs(table, "design", "accuracy_shifted", iter([("a", "d")]))
