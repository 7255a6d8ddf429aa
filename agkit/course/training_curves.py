"""The curves of training runs, epoch by epoch: the losses of each history, and the attention
loss with what it can and cannot reach.

A history is the per-epoch DataFrame a run records (epoch, loss, ce, att, ...). A run that
guides nothing (a baseline) records att = NaN; runs made before that recorded 0. Either way
its attention curve is left out rather than drawn as a value it never had.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from agkit.course.plots import METHOD_PALETTE, draw_chance


def attention_recorded(history) -> bool:
    """Whether a history's att column holds a value: not NaN (nothing guided) or 0 only."""
    att = history["att"]
    return bool((att.notna() & (att != 0)).any())


def plot_histories(histories: dict, columns=("loss", "att")):
    """Training curves: {name: history DataFrame} -> one panel per column.

    An attention-loss column that holds no value (a baseline trained with lam = 0 records NaN
    or, in older runs, zero: its attention loss was never computed) is left out, not drawn.
    """
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3), squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        for name, history in histories.items():
            if column == "att" and column in history and not attention_recorded(history):
                ax.plot([], [], ls="none", label=f"{name}: not computed (λ = 0)")
                continue
            if column in history:
                ax.plot(
                    history["epoch"],
                    history[column],
                    marker="o",
                    ms=3,
                    label=name,
                    color=METHOD_PALETTE.get(name.split()[0]),
                )
        ax.set_xlabel("epoch"), ax.set_title(column)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_attention_loss(
    histories: dict,
    floor: float | None = None,
    uniform: float | None = None,
    after_training: dict | None = None,
    ax=None,
):
    """The attention loss per epoch, with what it can and cannot reach.

    Args:
        histories: {name: history DataFrame with epoch and att}; a history whose att holds
            no value (all NaN or all zero: a baseline, whose attention loss was not
            computed) is not drawn.
        floor: the loss's lowest possible value on these masks (metrics.attention_loss_floor).
        uniform: the loss of uniform attention, log(h*w).
        after_training: {name: value} measured once after training (e.g. for a baseline),
            drawn as a point at the last epoch.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3))
    last = 1
    for name, history in histories.items():
        if "att" not in history or not attention_recorded(history):
            continue
        ax.plot(
            history["epoch"],
            history["att"],
            marker="o",
            ms=3,
            label=name,
            color=METHOD_PALETTE.get(name.split()[0]),
        )
        last = max(last, int(history["epoch"].max()))
    for name, value in (after_training or {}).items():
        ax.plot(
            [last],
            [value],
            marker="D",
            ms=6,
            ls="none",
            label=f"{name}, after training",
            color=METHOD_PALETTE.get(name.split()[0], "black"),
        )
    draw_chance(ax, {"uniform attention, log(h·w)": uniform})
    if floor is not None:  # not a chance level: the lowest value these masks allow
        ax.axhline(floor, color="black", lw=0.9, ls="-.", zorder=0, label="floor, log|S|")
        ax.legend(fontsize=7, loc="best", frameon=False)
    ax.set_xlabel("epoch"), ax.set_ylabel("attention loss")
    ax.legend(fontsize=8)
    return ax.figure


def plot_loss_panels(
    histories: dict,
    floor: float | None = None,
    uniform: float | None = None,
    after_training: dict | None = None,
):
    """A guided run's two losses per epoch: its cross-entropy (left) and its attention loss
    with the floor and uniform attention (right, ``plot_attention_loss``).

    Args:
        histories: {name: history DataFrame with epoch, ce and att}.
        floor, uniform, after_training: as for ``plot_attention_loss``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
    for name, history in histories.items():
        colour = METHOD_PALETTE.get(name.split()[0])
        axes[0].plot(history["epoch"], history["ce"], marker="o", ms=3, color=colour)
    axes[0].set_xlabel("epoch"), axes[0].set_title("cross-entropy")
    plot_attention_loss(histories, floor, uniform, after_training, ax=axes[1])
    axes[1].set_title("attention loss")
    fig.tight_layout()
    return fig
