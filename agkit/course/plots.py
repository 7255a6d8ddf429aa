"""Figures for the course: image grids, CAM galleries (also of a propagator's masks),
metric comparisons, ablation curves.

Each function returns the matplotlib Figure so a notebook can show it or save it. The
curves of a training run, epoch by epoch, are in ``agkit.course.training_curves``; single
runs side by side and the panels of one ablation in ``agkit.course.report_figures``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.lines import Line2D

from agkit.method import cams as cam_utils
from agkit.method.predict import classify

BASELINE_COLOUR, GUIDED_COLOUR = "#d1495b", "#00798c"
METHOD_PALETTE = {"baseline": BASELINE_COLOUR, "guided": GUIDED_COLOUR}
METRIC_NAMES = {
    "accuracy_id": "accuracy, in-distribution test",
    "accuracy_shifted": "accuracy, shifted test",
    "auc_shifted": "ROC AUC, shifted test",
    "mass_in_mask": "CAM mass inside the mask",
    "pointing_game_shifted": "pointing game, shifted test",
    "accuracy_val": "accuracy, validation",
}
CHANCE_STYLES = ("--", ":", "-.")  # one line style per chance level of a panel


def draw_chance(ax, levels: dict | None, orientation: str = "h", what: str = "chance") -> None:
    """Draw chance levels {label: value} as grey lines across a panel, named in its legend
    as "<what>: <label>".

    Levels closer than 0.03 share one line ("uniform attention ≈ random CAM").
    orientation "h" draws horizontal lines (the metric on the y axis), "v" vertical ones.
    """
    groups: list[list] = []
    for label, value in (levels or {}).items():
        if value is None or not np.isfinite(value):
            continue
        close = [g for g in groups if abs(g[1] - value) < 0.03]
        if close:
            close[0][0] += f" ≈ {label}"
        else:
            groups.append([label, float(value)])
    for (label, value), style in zip(groups, CHANCE_STYLES, strict=False):
        line = ax.axhline if orientation == "h" else ax.axvline
        line(value, color="grey", lw=0.9, ls=style, zorder=0, label=f"{what}: {label}")
    if groups:
        ax.legend(fontsize=7, loc="best", frameon=False)


def chance_lines(chance: dict | None) -> dict:
    """Chance levels for the plotting functions: {metric column: {label: value}}.

    Accuracy and AUC columns get a coin toss (0.5 for two balanced classes; any ranking by
    chance has an AUC of 0.5); with ``chance`` (what
    ``metrics.chance_levels`` returned for the test masks) the attention columns get the
    uniform-attention and random-CAM levels.
    """
    lines = {
        name: {"coin toss": 0.5}
        for name in (
            "accuracy_id",
            "accuracy_shifted",
            "accuracy_val",
            "accuracy",
            "auc_shifted",
            "auc",
        )
    }
    if chance:
        for metric, columns in (
            ("mass_in_mask", ("mass_in_mask",)),
            ("pointing_game", ("pointing_game", "pointing_game_shifted")),
        ):
            for column in columns:
                lines[column] = {
                    "uniform": chance["uniform"].get(metric),
                    "random CAM": chance["random_cam"].get(metric),
                }
    return lines


def _gray(image) -> np.ndarray:
    image = torch.as_tensor(image).detach().cpu().float()
    if image.ndim == 3:
        image = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
    return image.numpy()


def _outline(ax, mask, colour="lime") -> None:
    mask = _gray(mask)
    if mask.any():
        ax.contour(mask, levels=[0.5], colors=colour, linewidths=0.9)


def show_images(
    images, titles=None, masks=None, ncols: int = 8, size: float = 1.6, mask_colour: str = "lime"
):
    """A grid of grayscale images (n x 1 x H x W), optionally with mask outlines."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * size, nrows * size * 1.12), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(_gray(images[i]), cmap="gray", vmin=0, vmax=1)
        if masks is not None:
            _outline(ax, masks[i], mask_colour)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def review_masks(images, drawn, builtin, titles=None, ncols: int = 6, size: float = 1.6):
    """Drawn masks against the built-in ones: each image (n x 1 x H x W) with the drawn mask
    (n x 1 x H x W, green) and the built-in mask (orange) outlined, and a legend saying so."""
    fig = show_images(images, titles, masks=drawn, ncols=ncols, size=size)
    for ax, mask in zip(fig.axes, builtin, strict=False):
        _outline(ax, mask, "orange")
    handles = [
        Line2D([], [], color="lime", lw=1.5, label="the mask in your store"),
        Line2D([], [], color="orange", lw=1.5, label="the built-in mask"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.12)
    return fig


def cam_gallery(images, rows: dict, masks=None, titles=None, size: float = 1.7):
    """Rows of CAM overlays over the same images.

    Args:
        images: n x 1 x H x W radiographs in [0, 1].
        rows: {row name: n x h x w maps} (e.g. one CAM per model, of the predicted class).
        masks: optional n x 1 x H x W guidance masks, drawn as outlines.
        titles: optional n column titles.
    """
    n = len(images)
    fig, axes = plt.subplots(
        len(rows) + 1, n, figsize=(n * size, (len(rows) + 1) * size * 1.1), squeeze=False
    )
    for j in range(n):
        axes[0, j].imshow(_gray(images[j]), cmap="gray", vmin=0, vmax=1)
        if masks is not None:
            _outline(axes[0, j], masks[j])
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=8)
        for i, maps in enumerate(rows.values(), start=1):
            axes[i, j].imshow(
                cam_utils.overlay(_gray(images[j]), torch.as_tensor(maps[j]).detach().cpu())
            )
            if masks is not None:
                _outline(axes[i, j], masks[j], "white")
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=9)
    for i, name in enumerate(rows, start=1):
        axes[i, 0].set_ylabel(name, fontsize=9)
    fig.tight_layout()
    return fig


def predicted_cams(
    model, images: torch.Tensor, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run a model on n x C x H x W images, ``batch_size`` at a time: (CAM of the predicted
    class n x h x w, predicted class n, probability of class 1 n)."""
    probs, predicted, cams = classify(model, images, batch_size=batch_size)
    maps = cam_utils.select_class(cams, predicted)[:, 0]
    return maps, predicted, probs[:, 1]


def propagation_gallery(
    images, labels, propagated, models: dict, drawn: int = 1, proposed: int = 3
):
    """The masks a propagator drew, and where networks look on those images.

    Per class (0 normal, then 1 fractured) the first ``drawn`` images with a drawn mask,
    then per class the first ``proposed`` with a proposal: the mask outlined, titled by
    class and "drawn" or "proposed · <confidence>"; below, one row per model of the CAM of
    its predicted class (``predicted_cams``, ``cam_gallery``).

    Args:
        images: n x 1 x H x W training images; labels: n class indices.
        propagated: an ``agkit.propagation.Propagated`` for them (masks n x 1 x H x W,
            confidence n, drawn n bools).
        models: {row name: a CAMNet}.
    """
    picked = [
        i
        for was_drawn, first in ((True, drawn), (False, proposed))
        for label in (0, 1)
        for i in ((propagated.drawn == was_drawn) & (labels == label)).nonzero()[:first, 0].tolist()
    ]
    titles = [
        f"{('normal', 'fractured')[int(labels[i])]}\n"
        + ("drawn" if propagated.drawn[i] else f"proposed · {propagated.confidence[i]:.2f}")
        for i in picked
    ]
    rows = {name: predicted_cams(model, images[picked])[0] for name, model in models.items()}
    return cam_gallery(images[picked], rows, masks=propagated.masks[picked], titles=titles)


def plot_confusion(confusion, class_names=("normal", "fractured"), ax=None, title: str = ""):
    """A confusion matrix (rows = truth) as an annotated heat map."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 2.6))
    sns.heatmap(
        np.asarray(confusion),
        annot=True,
        fmt="d",
        cmap="Blues",
        cbar=False,
        ax=ax,
        xticklabels=class_names,
        yticklabels=class_names,
    )
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title, fontsize=10)
    return ax.figure


def _method_bars(ax, table: pd.DataFrame, metric: str, alpha: float = 1.0) -> None:
    """Baseline and guided side by side: the mean over seeds as a bar, each seed as a dot."""
    order = ["baseline", "guided"]
    sns.barplot(
        data=table,
        x="method",
        y=metric,
        hue="method",
        palette=METHOD_PALETTE,
        errorbar=None,
        ax=ax,
        alpha=alpha,
        order=order,
        legend=False,
    )
    sns.stripplot(data=table, x="method", y=metric, color="black", size=4, ax=ax, order=order)


def compare_methods(
    table: pd.DataFrame,
    metrics=("accuracy_id", "accuracy_shifted", "auc_shifted", "mass_in_mask"),
    chance: dict | None = None,
):
    """Baseline vs guided: bars = mean over seeds, dots = single seeds, one panel per metric.

    chance: {metric: {label: value}} chance levels drawn as grey lines (see chance_lines).
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        _method_bars(ax, table, metric, alpha=0.85)
        for patch in ax.patches:
            height = patch.get_height()
            if height > 0:  # the mean, written at the foot of its bar: the seed dots sit higher
                inside = height > 0.12
                ax.annotate(
                    f"{height:.2f}",
                    (patch.get_x() + patch.get_width() / 2, 0.02 if inside else height),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="white" if inside else "black",
                    fontweight="bold",
                    xytext=(0, 0 if inside else 2),
                    textcoords="offset points",
                )
        ax.set_ylim(0, 1.08), ax.set_xlabel(""), ax.set_ylabel("")
        ax.set_title(METRIC_NAMES.get(metric, metric), fontsize=9)
        draw_chance(ax, (chance or {}).get(metric))
    fig.tight_layout()
    return fig


def seed_range(values) -> tuple[float, float]:
    """The error bar of the ablation plots: the lowest and highest value over the seeds.

    Stretched to hold their mean: three equal seeds of 0.1 have a float mean one ulp above
    0.1, and matplotlib refuses the negative bar length that would give."""
    mean = float(np.mean(values))
    return min(float(np.min(values)), mean), max(float(np.max(values)), mean)


def ablation_plot(
    table: pd.DataFrame,
    x: str,
    y: str = "accuracy_shifted",
    hue: str | None = None,
    logx: bool = False,
    ax=None,
    title: str = "",
    xlabel: str | None = None,
    chance: dict | None = None,
):
    """Mean over seeds of ``y`` against ``x``, with the range (min to max) of the seeds.

    With three seeds a bootstrap "95 % confidence interval" of the mean is almost exactly
    this range (the resampled means cannot leave it), so the plot draws the range and
    says so. chance: {label: value} levels drawn as grey lines (for ``y``).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3))
    kind = table[x].dtype.kind in "if"
    if kind:
        sns.lineplot(
            data=table,
            x=x,
            y=y,
            hue=hue,
            marker="o",
            errorbar=seed_range,
            ax=ax,
            err_style="bars",
            err_kws={"capsize": 3},
            palette=METHOD_PALETTE if hue == "method" else None,
        )
        if logx:
            ax.set_xscale("symlog", linthresh=min(v for v in table[x].unique() if v > 0))
    else:
        sns.pointplot(
            data=table,
            x=x,
            y=y,
            hue=hue,
            errorbar=seed_range,
            ax=ax,
            capsize=0.1,
            linestyle="none",
            palette=METHOD_PALETTE if hue == "method" else None,
        )
    ax.set_ylim(*((0.3, 1.02) if y.startswith("acc") or y.startswith("auc") else (0, 1.02)))
    levels = dict(chance or {})
    if y.startswith("acc") and not levels:
        levels = {"coin toss": 0.5}  # two balanced classes
    draw_chance(ax, levels)
    ax.set_ylabel(METRIC_NAMES.get(y, y)), ax.set_xlabel(xlabel or x)
    ax.set_title(title, fontsize=10)
    ax.annotate(
        "dots: mean of the seeds · bars: lowest to highest seed",
        (0, -0.3),
        xycoords="axes fraction",
        fontsize=7,
        color="dimgrey",
    )
    return ax.figure


def summary_figure(table: pd.DataFrame, examples: dict | None = None, chance: dict | None = None):
    """The course's one-picture summary: the metric bars, and (optionally) CAM examples.

    chance: {metric: {label: value}} drawn as grey lines (see chance_lines).

    examples: {"images": n x 1 x H x W, "masks": n x 1 x H x W, "baseline": n x h x w,
    "guided": n x h x w}.
    """
    metrics = ("accuracy_id", "accuracy_shifted", "auc_shifted", "mass_in_mask")
    n = 0 if examples is None else len(examples["images"])
    fig = plt.figure(figsize=(max(11, 1.6 * n), 3.4 + (3.4 if n else 0)))
    grid = fig.add_gridspec(
        3 if n else 1, max(len(metrics), n), height_ratios=[1.3, 1, 1] if n else [1]
    )
    top = grid[0, :].subgridspec(1, len(metrics), wspace=0.35)
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(top[0, k])
        _method_bars(ax, table, metric)
        ax.set_ylim(0, 1.05), ax.set_xlabel(""), ax.set_ylabel("")
        ax.set_title(METRIC_NAMES[metric], fontsize=9)
        draw_chance(ax, (chance or chance_lines(None)).get(metric))
    for i, name in enumerate(("baseline", "guided"), start=1):
        for j in range(n):
            assert examples is not None  # n > 0 only with examples
            ax = fig.add_subplot(grid[i, j])
            ax.imshow(cam_utils.overlay(_gray(examples["images"][j]), examples[name][j]))
            _outline(ax, examples["masks"][j], "white")
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{name} CAM", fontsize=9, color=METHOD_PALETTE[name])
    fig.suptitle(
        "Attention guidance on SynthFrac: mean over seeds (dots: single seeds)", fontsize=11
    )
    fig.tight_layout()
    return fig
