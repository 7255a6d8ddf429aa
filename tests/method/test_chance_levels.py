"""Chance levels of the attention metrics, against hand computations."""

import math
import re
from pathlib import Path

import pytest
import torch

from agkit.method import metrics
from agkit.method.loss import attention_guidance_loss

ROOT = Path(__file__).resolve().parents[2]


def _mask(size, rows, cols):
    mask = torch.zeros(1, 1, size, size)
    mask[..., rows, cols] = 1
    return mask


def test_uniform_attention_scores_the_mask_area_share():
    # 16 x 16 image, 4 x 4 CAM: a mask of the top-left 8 x 8 pixels is 4 of 16 cells.
    masks = torch.cat([_mask(16, slice(0, 8), slice(0, 8)), _mask(16, slice(0, 16), slice(0, 4))])
    share = metrics.mass_in_mask_chance(masks, cam_size=(4, 4))
    assert share.tolist() == pytest.approx([4 / 16, 4 / 16])
    # and it is exactly what mass_in_mask gives for a flat CAM
    flat = torch.zeros(2, 2, 4, 4)
    measured = metrics.mass_in_mask(flat, masks, torch.tensor([0, 1]))
    assert measured.tolist() == pytest.approx(share.tolist())


def test_pointing_game_chance_is_the_pixel_share():
    masks = _mask(10, slice(0, 5), slice(0, 2))  # 10 of 100 pixels
    assert metrics.pointing_game_chance(masks).tolist() == pytest.approx([0.10])


def test_random_cams_score_near_the_area_share():
    masks = torch.cat([_mask(32, slice(0, 16), slice(0, 16))] * 8)  # a quarter of the image
    levels = metrics.chance_levels(masks, cam_size=(8, 8), draws=50, seed=1)
    assert levels["uniform"]["mass_in_mask"] == pytest.approx(0.25)
    assert levels["uniform"]["pointing_game"] == pytest.approx(0.25)
    assert levels["random_cam"]["mass_in_mask"] == pytest.approx(0.25, abs=0.03)
    assert levels["random_cam"]["pointing_game"] == pytest.approx(0.25, abs=0.08)
    again = metrics.chance_levels(masks, cam_size=(8, 8), draws=50, seed=1)
    assert again == levels  # seeded: the same numbers every time


def test_chance_levels_leave_out_images_without_a_mask():
    masks = torch.cat([_mask(16, slice(0, 8), slice(0, 16)), torch.zeros(1, 1, 16, 16)])
    levels = metrics.chance_levels(masks, cam_size=(4, 4), draws=2)
    assert levels["uniform"]["mass_in_mask"] == pytest.approx(0.5)  # not (0.5 + 0) / 2
    empty = metrics.chance_levels(torch.zeros(3, 1, 16, 16), cam_size=(4, 4))
    assert math.isnan(empty["uniform"]["mass_in_mask"])
    assert math.isnan(empty["random_cam"]["pointing_game"])


def test_chance_levels_reject_a_mask_without_its_channel():
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        metrics.chance_levels(torch.ones(2, 16, 16), cam_size=(4, 4))


def test_attention_loss_floor_is_reached_by_attention_spread_over_the_mask():
    # two images: masks of 4 and 2 cells on a 4 x 4 grid (16 x 16 pixels)
    masks = torch.cat([_mask(16, slice(0, 8), slice(0, 8)), _mask(16, slice(0, 4), slice(0, 8))])
    floor = metrics.attention_loss_floor(masks, (4, 4))
    assert floor == pytest.approx((4 * math.log(4) + 2 * math.log(2)) / 6)
    # CAMs that are huge inside the mask and very negative outside reach it...
    cells = torch.nn.functional.interpolate(masks, size=(4, 4), mode="nearest")
    cams = (cells * 50 - 50).expand(-1, 2, -1, -1)
    assert attention_guidance_loss(cams, masks).item() == pytest.approx(floor, abs=1e-4)
    # ...and no CAM gets below it
    for seed in range(5):
        noise = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(seed)) * 5
        assert attention_guidance_loss(noise, masks).item() >= floor
    assert metrics.attention_loss_floor(torch.zeros(1, 1, 16, 16), (4, 4)) == 0.0


def test_attention_table_puts_the_chance_rows_under_the_models():
    masks = torch.cat([_mask(16, slice(0, 8), slice(0, 8))] * 2)
    chance = metrics.chance_levels(masks, (4, 4), draws=3)
    table = metrics.attention_table(
        {"baseline": {"mass_in_mask": 0.3, "pointing_game": 0.5}, "guided": {"mass_in_mask": 0.9}},
        chance,
    )
    assert list(table.index) == [
        "baseline",
        "guided",
        "uniform attention (chance)",
        "random CAM (chance)",
    ]
    assert table.loc["uniform attention (chance)", "mass_in_mask"] == pytest.approx(0.25)
    assert table.loc["baseline", "pointing_game"] == 0.5
    assert math.isnan(table.loc["guided", "pointing_game"])


def test_chance_headline_sorts_scores_into_above_and_near_chance():
    import pandas as pd

    chance = {
        "uniform": {"mass_in_mask": 0.13, "pointing_game": 0.13},
        "random_cam": {"mass_in_mask": 0.13, "pointing_game": 0.11},
    }
    summary = pd.DataFrame(
        {
            "accuracy_shifted": [0.58, 0.96],
            "mass_in_mask": [0.15, 0.91],
            "pointing_game_shifted": [0.10, 0.95],
        },
        index=["baseline", "guided"],
    )
    guided, baseline, gap = metrics.chance_headline(summary, chance)
    assert guided.startswith(
        "guided: above chance: accuracy 0.96 (chance 0.50), mass in mask "
        "0.91 (chance 0.13), pointing game 0.95 (chance 0.13)."
    )
    assert "above chance: accuracy 0.58" in baseline  # 8 points over a coin toss
    assert "at or near chance: mass in mask 0.15 (chance 0.13), pointing game 0.10" in baseline
    assert gap.endswith("+38.0 points.")


def test_close_chance_levels_share_one_line_and_label():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agkit.course import plots

    fig, ax = plt.subplots()
    plots.draw_chance(
        ax, {"uniform": 0.13, "random CAM": 0.14, "coin toss": 0.5, "missing": float("nan")}
    )
    heights = sorted(line.get_ydata()[0] for line in ax.get_lines())
    assert heights == [0.13, 0.5]
    labels = sorted(t.get_text() for t in ax.get_legend().get_texts())
    assert labels == ["chance: coin toss", "chance: uniform ≈ random CAM"]
    plt.close(fig)


def test_the_attention_loss_floor_is_drawn_but_not_called_chance():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from agkit.course import training_curves

    history = pd.DataFrame({"epoch": [1, 2], "att": [4.0, 2.0]})
    fig = training_curves.plot_attention_loss({"guided": history}, floor=1.5, uniform=4.16)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "floor, log|S|" in labels
    assert "chance: uniform attention, log(h·w)" in labels
    assert not any("chance" in label and "floor" in label for label in labels)


# ---- issue 22: a chance level stated in prose is the one the notebooks compute

PROSE = [
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "README.md",
    *sorted((ROOT / "notebooks").glob("0*.ipynb")),
]
STATED = {
    # "uniform attention ... about 0.25 of its mass", "uniform attention ≈ 0.25 mass in mask"
    "mass_in_mask": re.compile(r"uniform attention[^.\n]{0,60}?(?:≈|about|=)\s*(0\.\d+)"),
    "pointing_game": re.compile(r"pointing game's chance[^.\n]{0,60}?(?:≈|about|=)\s*(0\.\d+)"),
}


@pytest.fixture(scope="module")
def workshop_chance():
    from agkit import experiments

    profile = experiments.get_profile("workshop")
    config = experiments.baseline_config(profile, 0)
    masks = experiments.make_splits(config)["test_shifted"].masks
    cam_size = experiments.build_model(config)(masks[:1]).cams.shape[-2:]
    return metrics.chance_levels(masks, cam_size)["uniform"]


def test_every_chance_level_stated_in_prose_is_the_computed_one(workshop_chance):
    stated = []
    for path in PROSE:
        text = path.read_text(encoding="utf-8").replace("\\n", " ")
        for metric, pattern in STATED.items():
            for match in pattern.finditer(text):
                stated.append((path.name, metric, float(match.group(1))))
    assert stated, "the check found no stated chance level: its patterns are stale"
    wrong = [
        (name, metric, value, round(workshop_chance[metric], 2))
        for name, metric, value in stated
        if abs(value - workshop_chance[metric]) > 0.015
    ]
    assert not wrong, f"chance levels in prose that the numbers contradict: {wrong}"
