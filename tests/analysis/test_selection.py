"""agkit.analysis.selection: choosing which images a person annotates."""

import math
import re
from pathlib import Path

import pytest
import torch
from tiny_data import tiny_dataset

from agkit.analysis.selection import (
    MODEL_FREE_STRATEGIES,
    STRATEGIES,
    attention_maps,
    cam_clusters,
    class_balanced,
    coverage_order,
    outlier_scores,
    peak_positions,
    rank_for_annotation,
    rank_scores,
    round_robin,
    uncertainty_scores,
)
from agkit.data import GuidedDataset
from agkit.method.camnet import CAMNet

ROOT = Path(__file__).resolve().parents[2]


def spike_cams(peaks, labels, n_classes=2, size=4, height=5.0):
    """n x N x size x size CAMs that are 0 except one spike at peaks[i] in the own class map."""
    cams = torch.zeros(len(peaks), n_classes, size, size)
    for i, ((r, c), label) in enumerate(zip(peaks, labels, strict=True)):
        cams[i, label, r, c] = height
    return cams


# ----------------------------------------------------------------- scores on plain tensors


def test_attention_maps_take_the_own_class_and_sum_to_one():
    cams = torch.zeros(2, 2, 2, 2)
    cams[0, 1, 0, 1] = 10.0  # image 0, class 1
    cams[1, 0, 1, 0] = 10.0  # image 1, class 0
    maps = attention_maps(cams, torch.tensor([1, 0]))
    assert maps.shape == (2, 2, 2)
    assert torch.allclose(maps.sum(dim=(1, 2)), torch.ones(2))
    assert maps[0].argmax() == 1 and maps[1].argmax() == 2
    # the own class map of image 0 with label 0 is flat: uniform attention
    assert torch.allclose(attention_maps(cams, torch.tensor([0, 0]))[0], torch.full((2, 2), 0.25))


def test_peak_positions_are_row_and_column():
    maps = torch.zeros(2, 4, 5)
    maps[0, 2, 3] = 1
    maps[1, 0, 4] = 1
    assert peak_positions(maps).tolist() == [[2.0, 3.0], [0.0, 4.0]]


def test_uncertainty_is_entropy():
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1]])
    expected = [math.log(2), 0.0, -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))]
    assert torch.allclose(uncertainty_scores(probs), torch.tensor(expected), atol=1e-6)


def test_outlier_scores_measure_distance_from_the_class_median_peak():
    peaks = torch.tensor([[0, 0], [0, 0], [0, 0], [3, 4], [2, 2], [2, 2], [2, 2]]).float()
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    assert outlier_scores(peaks, labels).tolist() == [0, 0, 0, 5, 0, 0, 0]


def test_round_robin_visits_largest_cluster_first_and_best_priority_within():
    clusters = torch.tensor([0, 0, 0, 1, 1, 2])
    priority = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.8, 0.0])
    assert round_robin(clusters, priority) == [1, 4, 5, 2, 3, 0]


def test_spectral_clusters_separate_two_obvious_groups_per_class():
    # class 0: peaks top-left or bottom-right; class 1: all top-right
    peaks = [(0, 0)] * 6 + [(3, 3)] * 6 + [(0, 3)] * 6
    labels = torch.tensor([0] * 12 + [1] * 6)
    noise = torch.randn(18, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    cams = spike_cams(peaks, labels) + 0.01 * noise
    ids = cam_clusters(attention_maps(cams, labels), labels, n_clusters=2, seed=0)
    assert len(set(ids[:6].tolist())) == 1 and len(set(ids[6:12].tolist())) == 1
    assert ids[0] != ids[6]
    assert not set(ids[12:].tolist()) & set(ids[:12].tolist())  # ids unique across classes


def test_clusters_strategy_covers_every_cam_cluster_first():
    """The first three proposals come from three different kinds of CAM."""
    peaks = [(0, 0)] * 6 + [(3, 3)] * 6 + [(0, 3)] * 6
    labels = torch.tensor([0] * 12 + [1] * 6)
    noise = torch.randn(18, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    cams = spike_cams(peaks, labels) + 0.01 * noise
    probs = torch.full((18, 2), 0.5)
    order = rank_scores("clusters", probs, cams, labels, n_clusters=2)
    groups = [i // 6 for i in order[:3]]
    assert sorted(groups) == [0, 1, 2]


def test_outlier_strategy_puts_the_odd_peak_first():
    peaks = [(1, 1)] * 5 + [(3, 0)] + [(2, 2)] * 4 + [(0, 3)]
    labels = torch.tensor([0] * 6 + [1] * 5)
    order = rank_scores("outlier", torch.full((11, 2), 0.5), spike_cams(peaks, labels), labels)
    assert set(order[:2]) == {5, 10}
    assert sorted(order) == list(range(11))


def test_uncertainty_strategy_orders_by_entropy_with_margin_breaking_nothing_else():
    probs = torch.tensor([[0.99, 0.01], [0.5, 0.5], [0.8, 0.2], [0.3, 0.7]])
    labels = torch.tensor([0, 0, 1, 1])
    order = rank_scores("uncertainty", probs, torch.zeros(4, 2, 2, 2), labels)
    assert order == [1, 3, 2, 0]


def test_random_is_a_seeded_permutation():
    labels = torch.zeros(50, dtype=torch.long)
    none = torch.empty(0)
    first = rank_scores("random", none, none, labels, seed=3)
    assert sorted(first) == list(range(50))
    assert first == rank_scores("random", none, none, labels, seed=3)
    assert first != rank_scores("random", none, none, labels, seed=4)


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ValueError, match="clusters"):
        rank_scores("entropy", torch.empty(0), torch.empty(0), torch.zeros(2))


# ----------------------------------------------------------------- on a model and a dataset


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_rank_for_annotation_skips_excluded_images(strategy):
    torch.manual_seed(0)
    model = CAMNet("tiny", num_classes=2, in_channels=1).eval()
    ds = tiny_dataset()
    order = rank_for_annotation(model, ds, strategy, exclude=[0, "im5"], seed=1, n_clusters=2)
    assert sorted(order) == [i for i in range(12) if i not in (0, 5)]
    assert order == rank_for_annotation(
        model, ds, strategy, exclude=[0, "im5"], seed=1, n_clusters=2
    )


def test_rank_for_annotation_rejects_an_unknown_image_id():
    model = CAMNet("tiny", num_classes=2, in_channels=1).eval()
    with pytest.raises(ValueError, match="im99"):
        rank_for_annotation(model, tiny_dataset(), "random", exclude=["im99"])


def test_rank_for_annotation_on_no_images_is_a_clear_error():
    model = CAMNet("tiny", num_classes=2, in_channels=1).eval()
    for strategy in STRATEGIES:
        with pytest.raises(ValueError, match="no images to rank; pass the training dataset"):
            rank_for_annotation(model, tiny_dataset(n=0), strategy)
    with pytest.raises(ValueError, match="no images to rank"):
        rank_scores("uncertainty", torch.empty(0, 2), torch.empty(0, 2, 4, 4), torch.empty(0))


def test_clusters_with_fewer_images_per_class_than_clusters_use_fewer_clusters():
    # class 0: two alike maps and an odd one (3 images, 4 clusters asked: 2 made);
    # class 1: 2 images (one cluster); class 2: 1 image (one cluster)
    peaks = [(0, 0), (0, 0), (3, 3), (1, 1), (2, 2), (0, 3)]
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    cams = spike_cams(peaks, labels, n_classes=3)
    ids = cam_clusters(attention_maps(cams, labels), labels, n_clusters=4).tolist()
    assert ids[0] == ids[1] != ids[2]
    assert ids[3] == ids[4] and len(set(ids)) == 4  # 2 + 1 + 1 clusters
    order = rank_scores("clusters", torch.full((6, 3), 1 / 3), cams, labels, n_clusters=4)
    assert sorted(order) == list(range(6))
    with pytest.raises(ValueError, match="n_clusters must be a whole number >= 1, got 0"):
        rank_scores("clusters", torch.full((6, 3), 1 / 3), cams, labels, n_clusters=0)
    # through a dataset of 3 images per class with the default 4 clusters per class
    model = CAMNet("tiny", num_classes=2, in_channels=1).eval()
    order = rank_for_annotation(model, tiny_dataset(n=6), "clusters")
    assert sorted(order) == list(range(6))


def test_rank_for_annotation_takes_a_string_exclude_as_one_image_id():
    model = CAMNet("tiny", num_classes=2, in_channels=1).eval()
    ds = GuidedDataset(
        torch.rand(13, 1, 8, 8), torch.arange(13) % 2, image_ids=[str(i) for i in range(13)]
    )
    order = rank_for_annotation(model, ds, "random", exclude="12")
    assert sorted(order) == list(range(12))  # image "12" (index 12), not images "1" and "2"
    assert sorted(rank_for_annotation(model, ds, "random", exclude=3)) == [
        i for i in range(13) if i != 3
    ]
    with pytest.raises(ValueError, match=r"\['123'\] that are not in the dataset"):
        rank_for_annotation(model, ds, "random", exclude="123")


@pytest.mark.parametrize("bad", [[-1], [0, 12, -3], [torch.tensor(99)]])
def test_rank_for_annotation_refuses_out_of_range_indices_naming_them(bad):
    model = CAMNet("tiny", num_classes=2, in_channels=1).eval()
    named = [int(i) for i in bad if not 0 <= int(i) < 12]
    with pytest.raises(ValueError, match=re.escape(f"index(es) {named}, outside 0..11")):
        rank_for_annotation(model, tiny_dataset(), "random", exclude=bad)


def test_rank_for_annotation_refuses_an_exclude_that_is_not_an_index_or_id():
    model = CAMNet("tiny", num_classes=2, in_channels=1).eval()
    with pytest.raises(TypeError, match=r"image ids \(str\) or dataset indices \(int\), got 1.5"):
        rank_for_annotation(model, tiny_dataset(), "random", exclude=[1.5])


# ----------------------------------------------------------------- strategies for propagation


def test_class_balanced_lets_the_classes_take_turns_keeping_each_order():
    labels = torch.tensor([0, 0, 0, 1, 1, 0, 1])
    # class 0 in this order: 5, 2, 1, 0; class 1: 6, 4, 3; the larger class goes first
    assert class_balanced([6, 5, 4, 3, 2, 1, 0], labels) == [5, 6, 2, 4, 1, 3, 0]


def test_balanced_is_the_random_order_with_classes_alternating():
    labels = torch.tensor([0] * 30 + [1] * 10)
    none = torch.empty(0)
    order = rank_scores("balanced", none, none, labels, seed=2)
    assert sorted(order) == list(range(40))
    assert labels[order[:20]].tolist() == [0, 1] * 10  # balanced while both classes last
    random = rank_scores("random", none, none, labels, seed=2)
    assert [i for i in order if labels[i] == 0] == [i for i in random if labels[i] == 0]


def test_coverage_takes_the_most_typical_image_of_every_group_first():
    # per class, three tight groups of 4 points; the point nearest each centre comes first
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    offsets = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.2], [-1.3, 0.0]])
    points = (centres[:, None] + offsets[None]).reshape(-1, 2)
    features = torch.cat([points, points + 100])
    labels = torch.tensor([0] * 12 + [1] * 12)
    order = coverage_order(features, labels, n_clusters=3, seed=0)
    assert sorted(order) == list(range(24))
    first = order[:6]
    assert labels[first].tolist() == [0, 1, 0, 1, 0, 1]
    groups = {(int(labels[i]), i % 12 // 4) for i in first}
    assert len(groups) == 6  # one image of each group of each class
    # a group's centre is the mean of its points, (-0.075, 0.3) from its first point's
    # place: the first point (0.31 away) is nearer than the others (1.1 and more)
    assert all(i % 4 == 0 for i in first)


def test_coverage_needs_the_images_not_a_baselines_outputs():
    with pytest.raises(ValueError, match="rank_for_annotation"):
        rank_scores("coverage", torch.empty(0), torch.empty(0), torch.zeros(4))


def test_model_free_strategies_rank_without_a_model():
    ds = tiny_dataset()
    for strategy in MODEL_FREE_STRATEGIES:
        order = rank_for_annotation(None, ds, strategy, seed=0)
        assert sorted(order) == list(range(12))
