"""Which images should a person annotate? Rank them from a trained baseline's CAMs.

A student draws about 20 masks. Which 20 of the training images get them decides how much
guided training gains, so the kit proposes an order. Every strategy looks at a baseline
(a network trained without masks) on the training images and scores each image:

* ``"random"``: a seeded random order, the control every other strategy must beat.
* ``"balanced"``: the random order, taken from each class in turn, so any first k images
  hold both classes about equally. A propagator (``agkit.propagation``) must see masks
  of every class to draw them.
* ``"coverage"``: per class, k-means over the images themselves (shrunk to 16 x 16)
  groups radiographs that look alike (the bone's angle and place); the ranking takes the
  image nearest the centre of each group in turn, classes alternating, so the first
  masks cover the variation a propagator must generalise over. Needs no baseline.
* ``"uncertainty"``: most uncertain prediction first (entropy of the predicted
  probabilities; ties broken by the smaller margin between the two best classes).
* ``"outlier"``: the images whose CAM peak lies farthest from the typical peak of their
  class (the per-class median peak position) first. A network that found a shortcut puts
  most peaks of a class on it; the images that disagree show where it is unsure or wrong.
* ``"clusters"``: diversity, as SpRAy does it. Per class, spectral clustering groups the
  images whose CAMs look alike (a cluster of "looks at the marker", one of "looks at the
  bone", ...); the ranking then takes one image from each cluster in turn, so the first
  few masks cover every way the network looks. Within a cluster the most uncertain image
  comes first.

``rank_for_annotation(model, dataset, strategy)`` gives the order, best first.
The scoring functions work on plain tensors, so they can be checked by hand.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Iterable
from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans, SpectralClustering

from agkit.data import make_loader
from agkit.method.predict import predict

STRATEGIES = ("random", "balanced", "coverage", "uncertainty", "outlier", "clusters")
MODEL_FREE_STRATEGIES = ("random", "balanced", "coverage")  # rank without a baseline
# The strategy the notebooks propose with, chosen on the validation splits for the course's
# recipe (20 masks propagated by the segmenter; workshop profile, seeds 0-2, with
# benchmarks/few_masks.py) by the rule that chooses lambda: the best accuracy on the shifted
# validation split, ties within one point going to the most mass in the validation masks.
# Random order is the control and is never chosen. See docs/results.md for the numbers.
DEFAULT_STRATEGY = "balanced"

# Why a strategy put an image near the front, in one sentence (the notebooks print it).
REASONS = {
    "random": "They come in a seeded random order: the control that every other strategy "
    "must beat.",
    "balanced": "They come in a seeded random order, the two classes taking turns, so the "
    "masks show what the evidence looks like on both.",
    "coverage": "Each is the most typical image of a different group of radiographs that look "
    "alike (the bone's angle and place), the classes taking turns, so the masks cover the "
    "ways the images vary.",
    "uncertainty": "The baseline is least sure of these images (its two class probabilities "
    "are closest), so a mask tells it most where it hesitates.",
    "outlier": "The baseline's CAM peak on these images lies farthest from where it usually "
    "looks for their class: the images that disagree with its habit.",
    "clusters": "Each comes from a different group of images on which the baseline's CAMs "
    "look alike (per class), so the first masks cover every place the baseline looks; "
    "within a group the image it is least sure of comes first.",
}


# ---------------------------------------------------------------------------------------
# What the baseline says about each image
# ---------------------------------------------------------------------------------------


def attention_maps(cams: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each image's CAM of its own class as a distribution over positions.

    Args:
        cams: n x N x h x w raw CAMs. labels: n class indices (the annotator's labels).

    Returns:
        n x h x w, softmax over the h*w positions of the map of class ``labels[i]``
        (every map sums to 1).
    """
    n, _, h, w = cams.shape
    own = cams[torch.arange(n), labels.long()]  # n x h x w
    return own.flatten(1).softmax(dim=1).view(n, h, w)


def peak_positions(maps: torch.Tensor) -> torch.Tensor:
    """Where each map is largest: n x 2 float (row, column) in grid cells.

    Args:
        maps: n x h x w.
    """
    n, _, w = maps.shape
    flat = maps.reshape(n, -1).argmax(dim=1)
    return torch.stack([flat // w, flat % w], dim=1).float()


def uncertainty_scores(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy of probs n x N (in nats); higher = less sure. Returns n floats."""
    p = probs.clamp_min(1e-12)
    return -(probs * p.log()).sum(dim=1)


def margin_scores(probs: torch.Tensor) -> torch.Tensor:
    """Difference of the two largest probabilities, n floats; smaller = less sure."""
    top2 = probs.topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


def outlier_scores(peaks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Distance (grid cells) of each peak from the median peak of its class.

    Args:
        peaks: n x 2 (row, column). labels: n class indices.

    Returns:
        n floats; 0 for an image whose peak sits at its class's typical place.
    """
    scores = torch.zeros(len(peaks))
    for c in labels.unique():
        members = labels == c
        typical = peaks[members].median(dim=0).values  # 2
        scores[members] = (peaks[members] - typical).norm(dim=1)
    return scores


def smoothed(maps: torch.Tensor) -> torch.Tensor:
    """maps n x h x w averaged over 3 x 3 neighbourhoods (n x h x w).

    Peaked maps one cell apart would otherwise share nothing, and look as different as
    maps with peaks in opposite corners; SpRAy blurs its heatmaps for the same reason.
    """
    return F.avg_pool2d(maps[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]


def cam_clusters(
    maps: torch.Tensor, labels: torch.Tensor, n_clusters: int = 4, seed: int = 0
) -> torch.Tensor:
    """Cluster the attention maps of each class separately (spectral clustering).

    Args:
        maps: n x h x w attention maps. labels: n class indices.
        n_clusters: clusters per class; a class of m <= n_clusters images gets m - 1
            (spectral clustering needs more images than clusters), one of 2 images or fewer
            a single cluster.

    Returns:
        n int64 cluster ids, unique across classes (class 0's clusters come first).
    """
    ids = torch.zeros(len(maps), dtype=torch.long)
    offset = 0
    for c in labels.unique():
        members = torch.nonzero(labels == c).flatten()
        k = min(n_clusters, len(members) - 1)  # k >= m makes the eigen-solver fail
        if k < 2:
            found = np.zeros(len(members), dtype=np.int64)
        else:
            features = smoothed(maps[members]).flatten(1).numpy()
            neighbours = min(max(10, len(members) // 10), len(members) - 1)
            clustering = SpectralClustering(
                k,
                affinity="nearest_neighbors",
                n_neighbors=neighbours,
                assign_labels="cluster_qr",
                random_state=seed,
            )
            with warnings.catch_warnings():
                # separate groups of maps (a marker in each of four corners) leave the
                # neighbour graph in pieces: that is a clustering, not a failure
                warnings.filterwarnings("ignore", message="Graph is not fully connected")
                found = clustering.fit_predict(features)
        ids[members] = torch.as_tensor(found, dtype=torch.long) + offset
        offset += int(found.max()) + 1
    return ids


def round_robin(clusters: torch.Tensor, priority: torch.Tensor) -> list[int]:
    """Take one item from each cluster in turn, best-priority first within a cluster.

    Args:
        clusters: n cluster ids. priority: n floats, higher = earlier within a cluster.

    Returns:
        All n indices. Each round visits the clusters largest first (ties: smaller id).
    """
    queues = []
    for c in clusters.unique().tolist():
        members = torch.nonzero(clusters == c).flatten()
        order = members[torch.argsort(-priority[members], stable=True)].tolist()
        queues.append(order)
    queues.sort(key=len, reverse=True)  # stable: equal sizes keep their id order
    ranking = []
    for position in range(max((len(q) for q in queues), default=0)):
        ranking += [q[position] for q in queues if position < len(q)]
    return ranking


def class_balanced(order: list[int], labels: torch.Tensor) -> list[int]:
    """``order`` re-arranged so that the classes take turns (the largest class first),
    each class keeping its own order; when a class runs out the others go on."""
    priority = torch.zeros(len(labels))
    priority[torch.as_tensor(order, dtype=torch.long)] = -torch.arange(
        len(order), dtype=torch.float
    )
    return round_robin(labels.long(), priority)


def appearance(images: torch.Tensor, side: int = 16) -> torch.Tensor:
    """n x (C * side * side): each image shrunk to side x side (area average), as a
    vector; what "coverage" clusters."""
    return F.adaptive_avg_pool2d(images.float(), side).flatten(1)


def coverage_order(
    features: torch.Tensor, labels: torch.Tensor, n_clusters: int = 10, seed: int = 0
) -> list[int]:
    """Per class, k-means with ``n_clusters`` groups on ``features`` (n x d); then one
    image from each group in turn, nearest its centre first (``round_robin``), the
    classes alternating (``class_balanced``)."""
    clusters = torch.zeros(len(labels), dtype=torch.long)
    closeness = torch.zeros(len(labels))
    offset = 0
    for c in labels.unique().tolist():
        members = torch.nonzero(labels == c).flatten()
        k = max(1, min(n_clusters, len(members)))
        kmeans = KMeans(k, n_init=4, random_state=seed).fit(features[members].numpy())
        distance = kmeans.transform(features[members].numpy()).min(axis=1)
        clusters[members] = torch.as_tensor(kmeans.labels_, dtype=torch.long) + offset
        closeness[members] = -torch.as_tensor(distance, dtype=torch.float32)
        offset += k
    return class_balanced(round_robin(clusters, closeness), labels)


# ---------------------------------------------------------------------------------------
# The ranking
# ---------------------------------------------------------------------------------------


def order_by(scores: torch.Tensor, seed: int = 0) -> list[int]:
    """Indices sorted by scores, highest first; equal scores in a seeded random order."""
    shuffled = torch.randperm(len(scores), generator=torch.Generator().manual_seed(seed))
    order = torch.argsort(-scores[shuffled], stable=True)
    return shuffled[order].tolist()


def check_strategy(strategy: str) -> None:
    """Raise a ValueError naming the choices unless ``strategy`` is one of STRATEGIES."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")


def _check_arguments(strategy: str, n: int, n_clusters) -> None:
    """Refuse a ranking that cannot be made, before any model is run."""
    check_strategy(strategy)
    if n == 0:
        raise ValueError(
            "there are no images to rank; pass the training dataset (at least one image)."
        )
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, Integral) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a whole number >= 1, got {n_clusters!r}.")


def rank_scores(
    strategy: str,
    probs: torch.Tensor,
    cams: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    n_clusters: int = 4,
) -> list[int]:
    """The ranking of ``strategy`` from a baseline's outputs on n images.

    Args:
        strategy: one of STRATEGIES.
        probs: n x N predicted probabilities. cams: n x N x h x w raw CAMs.
        labels: n class indices. seed: random order and tie breaks.

    Returns:
        A permutation of range(n), the image to annotate first at the front.
    """
    n = len(labels)
    _check_arguments(strategy, n, n_clusters)
    if strategy in ("random", "balanced"):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        return order if strategy == "random" else class_balanced(order, labels)
    if strategy == "coverage":
        raise ValueError(
            'strategy "coverage" ranks from the images, not from a baseline\'s outputs; '
            "use rank_for_annotation(model, dataset, 'coverage')."
        )
    # the margin only breaks entropy ties (it orders exactly like entropy for 2 classes)
    uncertainty = uncertainty_scores(probs) - 1e-6 * margin_scores(probs)
    if strategy == "uncertainty":
        return order_by(uncertainty, seed)
    maps = attention_maps(cams, labels)
    if strategy == "outlier":
        return order_by(outlier_scores(peak_positions(maps), labels), seed)
    return round_robin(cam_clusters(maps, labels, n_clusters, seed), uncertainty)


def rank_for_annotation(
    model,
    dataset,
    strategy: str = DEFAULT_STRATEGY,
    *,
    exclude: Iterable = (),
    seed: int = 0,
    n_clusters: int = 4,
    batch_size: int = 256,
    device=None,
) -> list[int]:
    """Which images of ``dataset`` to annotate next, best first.

    Args:
        model: a trained CAMNet, usually the baseline (trained without masks).
        dataset: the training GuidedDataset (its labels are the annotator's labels).
        strategy: one of STRATEGIES ("random" is the control).
        exclude: indices (0 .. len(dataset) - 1) or image ids of images not to propose
            (e.g. already annotated); a single id or index may be passed alone.
        seed: the random order of "random", tie breaks and clustering.
        n_clusters: CAM clusters per class for "clusters".

    Returns:
        Dataset indices of the images not excluded, the one to annotate first at the front.
    """
    _check_arguments(strategy, len(dataset), n_clusters)
    skip = _excluded(exclude, list(dataset.image_ids))
    if strategy in ("random", "balanced"):  # need no model: the control costs nothing
        order = rank_scores(strategy, torch.empty(0), torch.empty(0), dataset.labels, seed=seed)
    elif strategy == "coverage":
        images = torch.stack([dataset[i][0] for i in range(len(dataset))])
        order = coverage_order(appearance(images), dataset.labels, seed=seed)
    else:
        out = predict(model, make_loader(dataset, batch_size), device)
        order = rank_scores(
            strategy, out["probs"], out["cams"], out["labels"], seed=seed, n_clusters=n_clusters
        )
    return [i for i in order if i not in skip]


def _excluded(exclude, image_ids: list[str]) -> set[int]:
    """The dataset indices that ``exclude`` names; every bad entry is named in one error."""
    if isinstance(exclude, str) or not isinstance(exclude, Iterable):
        exclude = [exclude]  # one id ("12" is image "12", not images "1" and "2") or index
    position = {image_id: i for i, image_id in enumerate(image_ids)}
    skip, unknown, out_of_range = set(), [], []
    for item in exclude:
        if isinstance(item, str):
            if item in position:
                skip.add(position[item])
            else:
                unknown.append(item)
            continue
        try:
            if isinstance(item, bool):
                raise TypeError
            index = operator.index(item)  # ints, numpy and 0-d torch integers; not 1.5
        except TypeError:
            raise TypeError(
                f"exclude takes image ids (str) or dataset indices (int), got {item!r}."
            ) from None
        if 0 <= index < len(image_ids):
            skip.add(index)
        else:
            out_of_range.append(index)
    if unknown:
        raise ValueError(
            f"exclude names image(s) {unknown[:5]} that are not in the dataset; "
            "check the ids against dataset.image_ids."
        )
    if out_of_range:
        raise ValueError(
            f"exclude holds the index(es) {out_of_range[:5]}, outside 0..{len(image_ids) - 1} "
            "(negative indices are not counted from the end); pass dataset indices or image ids."
        )
    return skip
