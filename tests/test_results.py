"""docs/results.md states what the runs behind it measured: its sentences are checked
against the stored tables (docs/measurements/), so an edit of either cannot drift."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from agkit.analysis import claims

ROOT = Path(__file__).resolve().parents[1]
RESULTS = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
ABLATIONS = pd.read_csv(ROOT / "docs" / "measurements" / "ablations_workshop.csv")


def _points(table, by, reference, value, metric="accuracy_shifted"):
    means = table.groupby(by)[metric].mean()
    return round(100 * abs(means[value] - means[reference]))


LAM = 3.0  # the lambda notebook 03 chose on validation for these runs


def _guided(table):
    return table[table["lam"] == LAM]


def test_the_ablation_paragraph_matches_the_stored_runs():
    unique = ABLATIONS.drop_duplicates("key")
    n = unique["n_train"].max()
    at_n = unique[unique["n_train"] == n]
    design = at_n[at_n["annotated_fraction"] == 1.0]
    exact = design[design["mask_quality"] == "exact"]
    by_lam = exact[(exact["pooling"] == "softmax") & (exact["resolution"] == "feature")]
    fractions = _guided(
        at_n[
            (at_n["mask_quality"] == "exact")
            & (at_n["pooling"] == "softmax")
            & (at_n["resolution"] == "feature")
        ]
    )
    qualities = _guided(
        design[(design["pooling"] == "softmax") & (design["resolution"] == "feature")]
    )
    said = {
        "λ = 3 gains {} points": [_points(by_lam, "lam", 0.0, 3.0)],
        "10 % of the images annotated loses {} points": [
            _points(fractions, "annotated_fraction", 1.0, 0.1)
        ],
        "boxes lose {} points against exact masks and masks shifted by an eighth of the image {}": [
            _points(qualities, "mask_quality", "exact", quality) for quality in ("box", "shifted")
        ],
    }
    for sentence, numbers in said.items():
        assert sentence.format(*numbers) in RESULTS.replace("\n", " "), sentence.format(*numbers)


def test_the_size_trend_stated_is_the_one_the_runs_show():
    unique = ABLATIONS.drop_duplicates("key")
    size = unique[unique["lam"].isin([0.0, LAM])].copy()
    size = size[
        (size["pooling"] == size["lam"].map(lambda x: "softmax" if x else "avg"))
        & (size["annotated_fraction"] == 1.0)
        & (size["mask_quality"] == "exact")
        & (size["resolution"] == "feature")
    ].copy()
    size["method"] = ["guided" if lam > 0 else "baseline" for lam in size["lam"]]
    gains = claims.paired_gain(size, "n_train")
    verdict = claims.trend(gains, "gain", claims.in_points)
    assert verdict.startswith("gain grows")
    stated = ", ".join(f"{claims.spread(gains[n]).mean * 100:+.1f}" for n in sorted(gains))
    assert stated == "+3.4, +38.9"
    assert "gain in shifted accuracy *grows*: +3.4 and +38.9 points" in RESULTS.replace("\n", " ")


@pytest.mark.parametrize(
    "strategy, row_name",
    [
        ("random", "random images (the control)"),
        ("balanced", "both classes in turn (the default)"),
        ("uncertainty", "proposed by uncertainty"),
        ("clusters", "proposed by CAM clusters"),
        ("coverage", "proposed by coverage"),
        ("outlier", "proposed by CAM outliers"),
    ],
)
def test_the_few_mask_table_is_the_stored_measurement(strategy, row_name):
    stored = json.loads((ROOT / "docs" / "measurements" / "few_masks.json").read_text())[strategy]
    row = next(line for line in RESULTS.splitlines() if line.startswith(f"| {row_name}"))
    cells = [c.strip().replace("−", "-") for c in row.strip("|").split("|")[1:]]
    assert [float(c) for c in cells] == pytest.approx(
        [stored[n] for n in ("5", "10", "20", "50")], abs=0.006
    )


def test_results_name_no_number_without_its_source():
    # every table of this page says where it comes from: a notebook, a benchmark or a file
    for heading, body in re.findall(r"^## (.+)\n(.*?)(?=^## |\Z)", RESULTS, re.S | re.M):
        if "|---" in body:
            assert re.search(r"notebook|benchmarks/|docs/measurements|make course", body), heading


def test_the_course_time_stated_is_the_measured_one():
    measured = json.loads((ROOT / "docs" / "timings.json").read_text())
    text = RESULTS.replace("\n", " ")
    for key, words in (("cold_s", "minutes on 2 idle cores"), ("loaded_s", "minutes with one")):
        minutes = sum(measured[key].values()) / 60
        assert f"{minutes:.1f} {words}" in text, (key, minutes)
    assert f"{sum(measured['cached_s'].values()) / 60:.1f} minutes from the cache" in text
    cold = measured["cold_s"]
    slowest = max(cold, key=cold.get)
    verdict = "within" if cold[slowest] <= 5 * 60 else "over"
    assert (
        f"Notebook {slowest[:2]} takes most of it: at {cold[slowest]:.0f} s it is {verdict} the "
        "5 minutes a notebook should take" in text
    )


def test_the_default_strategy_is_the_one_the_validation_splits_chose():
    import importlib.util

    from agkit.analysis.selection import DEFAULT_STRATEGY

    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "few_masks.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = pd.read_csv(ROOT / "docs" / "measurements" / "few_masks_workshop.csv")
    rows["n_masks"] = rows["n_masks"].astype(str)
    chosen = rows[(rows["recipe"] == "segmenter") & rows["seed"].isin([0, 1, 2])]
    assert f"choose {DEFAULT_STRATEGY!r} at 20 masks" in bench.chosen_strategy(chosen, "x")
    for path in ("notebooks/02_mask_annotation.ipynb", "notebooks/03_guided_training.ipynb"):
        assert f'strategy = \\"{DEFAULT_STRATEGY}\\"' in (ROOT / path).read_text(), path


@pytest.mark.parametrize(
    "recipe, row_name",
    [
        ("scratch", "the masks alone, oversampled"),
        ("self_training", "self-training from the guided model's CAMs"),
        ("segmenter", "the label-conditioned segmenter"),
    ],
)
def test_the_recipe_table_is_the_stored_measurement(recipe, row_name):
    rows = pd.read_csv(ROOT / "docs" / "measurements" / "few_masks_workshop.csv")
    rows = rows[
        (rows["recipe"] == recipe)
        & rows["seed"].isin([0, 1, 2])
        & rows["strategy"].isin(["random", "balanced"])
    ]
    mean = rows.groupby(rows["n_masks"].astype(str)).mean(numeric_only=True)
    row = next(line for line in RESULTS.splitlines() if line.startswith(f"| {row_name}"))
    cells = [float(c) for c in row.strip("|").split("|")[1:]]
    expected = [
        mean.loc["10", "share_of_gain"],
        mean.loc["20", "share_of_gain"],
        mean.loc["20", "accuracy_val_shifted"],
    ]
    assert cells == pytest.approx(expected, abs=0.006)


def test_the_simulated_annotator_numbers_are_the_stored_ones():
    stored = json.loads((ROOT / "docs" / "measurements" / "simulated_annotator.json").read_text())
    text = RESULTS.replace("\n", " ")
    assert f"with a grid IoU of {stored['iou_drawn']:.2f}, and its proposals" in text
    assert f"its proposals {stored['iou_proposed']:.2f}." in text
    per_seed = ", ".join(f"{v['share_propagated']:.2f}" for v in stored["seeds"].values())
    assert (
        f"they recover {stored['share_propagated']:.2f} of the gain (seeds 0-2: {per_seed})" in text
    )
    assert f"{abs(stored['share_alone']):.2f} for its 20 masks alone" in text


def test_the_held_out_seeds_stated_are_the_stored_ones():
    """The shares on seeds that chose nothing, per set of seeds and pooled, as the text says,
    and the verdicts (which sets fall by more than 0.1) as the numbers give them."""
    rows = pd.read_csv(ROOT / "docs" / "measurements" / "few_masks_workshop.csv")
    rows = rows[rows["recipe"] == "segmenter"]
    rows = rows.assign(n_masks=rows["n_masks"].astype(str))
    text = RESULTS.replace("\n", " ")
    held_out = {"seeds 3-5": [3, 4, 5], "seeds 6-8": [6, 7, 8], "seeds 9-11": [9, 10, 11]}
    everything = sorted(s for seeds in held_out.values() for s in seeds)
    assert sorted(set(rows["seed"]) - {0, 1, 2}) == everything  # no stored set left unsaid

    def shares(seeds, strategy, n):
        chosen = rows[rows["seed"].isin(seeds) & (rows["strategy"] == strategy)]
        chosen = chosen[chosen["n_masks"] == n].set_index("seed")["share_of_gain"]
        assert sorted(chosen.index) == sorted(seeds)  # one row per seed
        return chosen.loc[seeds]

    def share(seeds, strategy, n):
        return shares(seeds, strategy, n).mean()

    for name, seeds in held_out.items():
        per_seed = ", ".join(f"{v:.2f}" for v in shares(seeds, "balanced", "20"))
        mean = share(seeds, "balanced", "20")
        said = f"on {name}, 20 balanced masks recovered {mean:.2f} ({per_seed})"
        assert said in text, said
        assert f"10 recovered {share(seeds, 'balanced', '10'):.2f}" in text
        assert f"20 random ones {share(seeds, 'random', '20'):.2f}" in text
    pooled = (
        f"Over all nine held-out seeds 20 balanced masks recover "
        f"{share(everything, 'balanced', '20'):.2f}, 10 recover "
        f"{share(everything, 'balanced', '10'):.2f} and 20 random ones "
        f"{share(everything, 'random', '20'):.2f}: within 0.1 of seeds 0-2's figures at both counts"
    )
    assert pooled in text, pooled
    chosen_on = {n: share([0, 1, 2], "balanced", n) for n in ("10", "20")}
    assert all(chosen_on[n] - share(everything, "balanced", n) <= 0.1 for n in chosen_on)
    fall = {
        name: {n: chosen_on[n] - share(seeds, "balanced", n) for n in chosen_on}
        for name, seeds in held_out.items()
    }
    assert f"on seeds 3-5 the one at 20 masks falls by {fall['seeds 3-5']['20']:.2f}" in text
    assert fall["seeds 3-5"]["10"] <= 0.1 < fall["seeds 3-5"]["20"]
    holding = [name for name in held_out if all(f <= 0.1 for f in fall[name].values())]
    assert holding == ["seeds 6-8", "seeds 9-11"]
    assert "On seeds 6-8 and 9-11 no figure falls by more than 0.1" in text
    rises = [share(held_out[name], "balanced", "10") for name in holding]
    assert all(r > chosen_on["10"] for r in rises)
    assert (
        f"at 10 masks both rise: {rises[0]:.2f} and {rises[1]:.2f} against {chosen_on['10']:.2f}"
        in text
    )
    set_means = [share(seeds, "balanced", "20") for seeds in ([0, 1, 2], *held_out.values())]
    assert (
        f"at 20 balanced masks ranges from {min(set_means):.2f} to {max(set_means):.2f} over "
        "the four sets of seeds" in text
    )
