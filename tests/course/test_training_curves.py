"""The curves of training runs (agkit.course.training_curves): a baseline's attention loss,
recorded as NaN (nothing guided) or, in older runs, as 0, is left out rather than drawn."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from agkit.course import training_curves

NAN = math.nan


@pytest.mark.parametrize("att", [[NAN, NAN], [0.0, 0.0], [NAN, 0.0]])
def test_a_baseline_without_attention_loss_is_left_out_of_the_histories(att):
    baseline = pd.DataFrame({"epoch": [1, 2], "ce": [0.7, 0.5], "att": att})
    guided = pd.DataFrame({"epoch": [1, 2], "ce": [0.7, 0.6], "att": [3.9, 2.6]})
    fig = training_curves.plot_histories(
        {"baseline": baseline, "guided": guided}, columns=("ce", "att")
    )
    drawn = [line for line in fig.axes[1].get_lines() if len(line.get_ydata())]
    assert [list(line.get_ydata()) for line in drawn] == [[3.9, 2.6]]
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "baseline: not computed (λ = 0)" in labels
    assert len(fig.axes[0].get_lines()) == 2  # cross-entropy: both drawn
    plt.close(fig)


def test_the_attention_loss_plot_skips_an_all_nan_history():
    baseline = pd.DataFrame({"epoch": [1, 2, 3], "att": [NAN, NAN, NAN]})
    guided = pd.DataFrame({"epoch": [1, 2, 3], "att": [4.0, 3.0, 2.0]})
    fig = training_curves.plot_attention_loss(
        {"baseline": baseline, "guided": guided}, after_training={"baseline": 4.2}
    )
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert "baseline" not in lines and list(lines["guided"].get_ydata()) == [4.0, 3.0, 2.0]
    assert list(lines["baseline, after training"].get_xdata()) == [3]  # at the last epoch
    plt.close(fig)


def test_a_guided_history_with_a_missing_epoch_is_still_drawn():
    history = pd.DataFrame({"epoch": [1, 2, 3], "att": [4.0, NAN, 2.0]})
    assert training_curves.attention_recorded(history)
    fig = training_curves.plot_attention_loss({"guided": history})
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["guided"]
    plt.close(fig)


def test_the_loss_panels_draw_the_cross_entropy_and_the_attention_loss_with_its_floor():
    history = pd.DataFrame({"epoch": [1, 2, 3], "ce": [0.7, 0.5, 0.4], "att": [4.0, 3.0, 2.5]})
    fig = training_curves.plot_loss_panels(
        {"guided (the loop above)": history},
        floor=2.0,
        uniform=4.16,
        after_training={"baseline": 4.3},
    )
    ce, att = fig.axes
    assert ce.get_title() == "cross-entropy" and att.get_title() == "attention loss"
    assert [list(line.get_ydata()) for line in ce.get_lines()] == [[0.7, 0.5, 0.4]]
    lines = {line.get_label(): line for line in att.get_lines()}
    assert list(lines["guided (the loop above)"].get_ydata()) == [4.0, 3.0, 2.5]
    assert list(lines["baseline, after training"].get_ydata()) == [4.3]
    assert list(lines["floor, log|S|"].get_ydata()) == [2.0, 2.0]
    assert list(lines["chance: uniform attention, log(h·w)"].get_ydata()) == [4.16, 4.16]
    plt.close(fig)
