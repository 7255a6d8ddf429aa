"""The course's figures say what they draw: legends for every outline and line."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from agkit.course import plots


def test_the_review_figure_names_both_outlines():
    images = torch.rand(3, 1, 16, 16)
    drawn = torch.zeros(3, 1, 16, 16)
    drawn[:, :, 4:8, 4:8] = 1
    builtin = torch.zeros(3, 1, 16, 16)
    builtin[:, :, 6:12, 6:12] = 1
    fig = plots.review_masks(images, drawn, builtin, titles=["a", "b", "c"], ncols=3)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["the mask in your store", "the built-in mask"]
    # each image carries both outlines, in the legend's colours
    colours = [
        {tuple(round(v, 2) for v in coll.get_edgecolor()[0][:3]) for coll in ax.collections}
        for ax in fig.axes[:3]
    ]
    lime, orange = (0.0, 1.0, 0.0), (1.0, 0.65, 0.0)
    assert all(c == {lime, orange} for c in colours)


def test_bar_values_sit_below_the_seed_dots():
    import pandas as pd

    table = pd.DataFrame(
        {
            "method": ["baseline"] * 3 + ["guided"] * 3,
            "accuracy_shifted": [0.5, 0.6, 0.55, 0.9] * 1 + [0.92, 0.88],
        }
    )
    fig = plots.compare_methods(table, metrics=("accuracy_shifted",))
    texts = [t for t in fig.axes[0].texts]
    assert sorted(t.get_text() for t in texts) == ["0.55", "0.90"]
    assert all(t.xy[1] < 0.1 for t in texts)  # at the foot of the bars, under every dot


def test_predicted_cams_are_the_classified_ones_in_batches():
    from agkit.method.camnet import CAMNet
    from agkit.method.predict import classify

    torch.manual_seed(0)
    model = CAMNet("tiny", num_classes=2).train()
    images = torch.rand(5, 1, 32, 32)
    maps, predicted, p_one = plots.predicted_cams(model, images, batch_size=2)
    probs, expected, cams = classify(model, images)
    assert torch.equal(predicted, expected) and torch.allclose(p_one, probs[:, 1])
    assert torch.allclose(maps, cams[torch.arange(5), expected])
    assert maps.shape == (5, *cams.shape[-2:]) and model.training  # its mode is left as it was


def test_the_propagation_gallery_shows_drawn_then_proposed_masks_of_each_class():
    from agkit.method.camnet import CAMNet
    from agkit.propagation import Propagated

    torch.manual_seed(0)
    images = torch.rand(10, 1, 32, 32)
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    drawn = torch.tensor([False, False, True, True, False, True, False, False, False, False])
    masks = torch.zeros(10, 1, 32, 32)
    masks[:, :, 8:20, 8:20] = 1
    confidence = torch.linspace(0.1, 1.0, 10)
    propagated = Propagated(masks, confidence, drawn)
    models = {"one": CAMNet("tiny", num_classes=2), "two": CAMNet("tiny", num_classes=2)}
    fig = plots.propagation_gallery(images, labels, propagated, models, drawn=1, proposed=2)
    # drawn: the first normal (2) and fractured (3); proposed: normal 0, 4 and fractured 1, 7
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert titles == [
        "normal\ndrawn",
        "fractured\ndrawn",
        "normal\nproposed · 0.10",
        "normal\nproposed · 0.50",
        "fractured\nproposed · 0.20",
        "fractured\nproposed · 0.80",
    ]
    assert len(fig.axes) == 3 * 6  # the images, then one row of CAMs per model
    assert [fig.axes[6 * row].get_ylabel() for row in range(3)] == ["image", "one", "two"]
    shown = fig.axes[2].get_images()[0].get_array()
    assert torch.allclose(torch.as_tensor(shown.data), images[0, 0])
    plt.close(fig)


def test_ablation_plot_draws_seeds_that_all_scored_the_same():
    """np.mean of three 0.1s is 0.1 + 1 ulp: the bar must not come out negative."""
    table = pd.DataFrame(
        {"lam": [0.0] * 3 + [1.0] * 3, "accuracy_shifted": [0.1] * 3 + [0.7, 0.8, 0.9]}
    )
    ax = plots.ablation_plot(table, "lam")
    low, high = plots.seed_range([0.1, 0.1, 0.1])
    assert low <= np.mean([0.1] * 3) <= high and high - low < 1e-12
    assert plots.seed_range([0.7, 0.8, 0.9]) == (0.7, 0.9)
    plt.close(ax.figure)
