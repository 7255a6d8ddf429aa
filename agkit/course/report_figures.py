"""Figures that set runs side by side: one bar per run, the panels of one ablation, and
settings with long names read across.

Each function draws from a table of runs (a pandas DataFrame, one row per run, as
``experiments.run_many`` returns it) and returns the matplotlib Figure. Chance levels are
``{metric column: {label: value}}``, as ``plots.chance_lines`` returns them, and drawn by
``plots.draw_chance``; the error bars are ``plots.seed_range``, as in ``plots.ablation_plot``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from agkit.course.plots import (
    BASELINE_COLOUR,
    GUIDED_COLOUR,
    METRIC_NAMES,
    ablation_plot,
    chance_lines,
    draw_chance,
    seed_range,
)

#: the bars of notebook 3's five runs: the baseline, two controls in grey, the propagated
#: masks in a light guided colour, every mask in the guided colour
RUN_COLOURS = (BASELINE_COLOUR, "#bbbbbb", "#888888", "#66b2bc", GUIDED_COLOUR)


def run_bars(
    table: pd.DataFrame,
    metrics: Sequence[str] = ("accuracy_shifted", "mass_in_mask", "pointing_game_shifted"),
    chance: dict | None = None,
    colours: Sequence[str] = RUN_COLOURS,
    names: str = "run",
):
    """One panel per metric, one bar per row of ``table`` (a single run each, no seeds to
    spread), its value written on top, the panel's chance levels as grey lines.

    Args:
        table: one row per run, a column ``names`` (the tick labels) and every metric.
        chance: {metric: {label: value}} (``plots.chance_lines``).
        colours: the bars' colours, in the order of the rows.
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.8 * len(metrics), 3.4), squeeze=False)
    positions = range(len(table))
    for ax, metric in zip(axes[0], metrics, strict=True):
        ax.bar(positions, table[metric], color=list(colours))
        for x, value in zip(positions, table[metric], strict=True):
            ax.annotate(f"{value:.2f}", (x, value), ha="center", va="bottom", fontsize=8)
        draw_chance(ax, (chance or {}).get(metric))
        ax.set_xticks(positions, table[names], rotation=25, ha="right", fontsize=8)
        ax.set_ylim(0, 1.08), ax.set_title(METRIC_NAMES.get(metric, metric), fontsize=9)
    fig.tight_layout()
    return fig


def ablation_panels(
    table: pd.DataFrame, x: str, metrics: Sequence[str], chance: dict | None = None, **options
):
    """``plots.ablation_plot`` of each metric against column ``x``, side by side, each
    titled by ``plots.METRIC_NAMES``.

    Args:
        table: one row per run (several seeds per setting), columns ``x`` and every metric.
        chance: {metric: {label: value}} (``plots.chance_lines``); a metric without levels
            gets ``ablation_plot``'s default (a coin toss for accuracy).
        options: passed to every ``ablation_plot`` (logx, hue, xlabel).
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        ablation_plot(
            table,
            x,
            metric,
            ax=ax,
            title=METRIC_NAMES.get(metric, metric),
            chance=(chance or {}).get(metric),
            **options,
        )
    fig.tight_layout()
    return fig


def design_plot(
    table: pd.DataFrame,
    by: str = "design",
    metric: str = "accuracy_shifted",
    chance: dict | None = None,
):
    """One row per setting of column ``by`` (long names, read across): the mean of
    ``metric`` over the seeds as a dot, the lowest to the highest seed as a bar.

    Args:
        table: one row per run (several seeds per setting), columns ``by`` and ``metric``.
        chance: {metric: {label: value}} drawn as vertical grey lines; default
            ``plots.chance_lines(None)`` (a coin toss for accuracy).
    """
    fig, ax = plt.subplots(figsize=(7, 3))
    sns.pointplot(
        data=table,
        y=by,
        x=metric,
        errorbar=seed_range,
        ax=ax,
        linestyle="none",
        capsize=0.2,
    )
    name = METRIC_NAMES.get(metric, metric)
    ax.set_xlabel(f"{name} (dots: mean · bars: lowest to highest seed)"), ax.set_ylabel("")
    draw_chance(ax, (chance_lines(None) if chance is None else chance).get(metric), "v")
    return fig
