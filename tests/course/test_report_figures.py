"""Runs side by side (agkit.course.report_figures): the bars, dots and chance lines drawn are
the numbers of the table, and every line is named in its panel's legend."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from agkit.course import plots, report_figures

CHANCE = {
    "uniform": {"mass_in_mask": 0.13, "pointing_game": 0.30},
    "random_cam": {"mass_in_mask": 0.12, "pointing_game": 0.11},
}


def legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def chance_values(ax, orientation="h") -> list[float]:
    """Where the straight grey lines of a panel lie."""
    lines = [line for line in ax.get_lines() if line.get_color() == "grey"]
    return [
        float((line.get_ydata() if orientation == "h" else line.get_xdata())[0]) for line in lines
    ]


def test_run_bars_draw_one_labelled_bar_per_run_over_its_chance_lines():
    runs = pd.DataFrame(
        {
            "run": ["baseline", "a", "b", "c", "all"],
            "accuracy_shifted": [0.55, 0.6, 0.8, 0.861, 0.9],
            "mass_in_mask": [0.1, 0.3, 0.5, 0.6, 0.9],
        }
    )
    fig = report_figures.run_bars(
        runs, ("accuracy_shifted", "mass_in_mask"), chance=plots.chance_lines(CHANCE)
    )
    accuracy, mass = fig.axes
    assert [p.get_height() for p in accuracy.patches] == pytest.approx(runs["accuracy_shifted"])
    assert [t.get_text() for t in accuracy.texts] == ["0.55", "0.60", "0.80", "0.86", "0.90"]
    assert [t.xy for t in mass.texts] == list(zip(range(5), runs["mass_in_mask"], strict=True))
    assert [t.get_text() for t in mass.get_xticklabels()] == list(runs["run"])
    colours = [to_hex(p.get_facecolor()) for p in accuracy.patches]
    assert colours == list(report_figures.RUN_COLOURS)
    assert chance_values(accuracy) == [0.5] and legend(accuracy) == ["chance: coin toss"]
    # uniform 0.13 and random CAM 0.12 are one line
    assert chance_values(mass) == [0.13] and legend(mass) == ["chance: uniform ≈ random CAM"]
    assert mass.get_title() == plots.METRIC_NAMES["mass_in_mask"]
    plt.close(fig)


def test_run_bars_without_chance_levels_draw_no_line():
    runs = pd.DataFrame({"run": ["x", "y"], "mass_in_mask": [0.2, 0.4]})
    fig = report_figures.run_bars(runs, ("mass_in_mask",))
    assert chance_values(fig.axes[0]) == [] and fig.axes[0].get_legend() is None
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.20", "0.40"]
    plt.close(fig)


def ablation(x, values, metric="accuracy_shifted"):
    return pd.DataFrame(
        {
            x: [v for v in values for _ in range(3)],
            "seed": [0, 1, 2] * len(values),
            metric: [0.5 + 0.1 * i + 0.01 * s for i in range(len(values)) for s in (0, 1, 2)],
            "mass_in_mask": [
                0.1 + 0.2 * i + 0.01 * s for i in range(len(values)) for s in (0, 1, 2)
            ],
        }
    )


def test_ablation_panels_draw_each_metric_with_its_own_chance_levels():
    table = ablation("lam", [0.0, 1.0, 10.0])
    fig = report_figures.ablation_panels(
        table, "lam", ("accuracy_shifted", "mass_in_mask"), plots.chance_lines(CHANCE), xlabel="λ"
    )
    accuracy, mass = fig.axes
    assert [ax.get_title() for ax in fig.axes] == [
        plots.METRIC_NAMES["accuracy_shifted"],
        plots.METRIC_NAMES["mass_in_mask"],
    ]
    assert accuracy.get_xlabel() == mass.get_xlabel() == "λ"
    assert chance_values(accuracy) == [0.5] and chance_values(mass) == [0.13]
    means = [line for line in accuracy.get_lines() if line.get_color() != "grey"][0]
    assert list(means.get_ydata()) == pytest.approx([0.51, 0.61, 0.71])  # the seeds' means
    plt.close(fig)


def test_ablation_panels_give_accuracy_a_coin_toss_without_chance_levels():
    fig = report_figures.ablation_panels(ablation("q", ["a", "b"]), "q", ("accuracy_shifted",))
    assert chance_values(fig.axes[0]) == [0.5]
    plt.close(fig)


def test_the_design_plot_reads_across_with_a_vertical_coin_toss():
    designs = ["no loss · avg pooling", "guided · softmax pooling · input res."]
    table = ablation("design", designs)
    fig = report_figures.design_plot(table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == designs
    assert chance_values(ax, "v") == [0.5] and legend(ax) == ["chance: coin toss"]
    assert ax.get_xlabel().startswith(plots.METRIC_NAMES["accuracy_shifted"])
    dots, *bars = [line for line in ax.get_lines() if line.get_color() != "grey"]
    assert list(dots.get_xdata()) == pytest.approx([0.51, 0.61])  # the means of the seeds
    assert list(dots.get_ydata()) == [0, 1]  # one row each
    for bar, (low, high) in zip(bars, [(0.5, 0.52), (0.6, 0.62)], strict=True):
        xs = [x for x in bar.get_xdata() if x == x]  # the bar and its caps, NaN between
        assert (min(xs), max(xs)) == pytest.approx((low, high))  # lowest to highest seed
    plt.close(fig)


def test_the_design_plot_of_mass_in_mask_takes_its_chance_levels():
    fig = report_figures.design_plot(
        ablation("design", ["a", "b"]), metric="mass_in_mask", chance=plots.chance_lines(CHANCE)
    )
    assert chance_values(fig.axes[0], "v") == [0.13]
    plt.close(fig)
