"""SynthFrac: shapes, determinism, the planted shortcut, masks and the folder round trip."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agkit.data.synthetic import load_synthfrac, make_synthfrac


@pytest.fixture(scope="module")
def train():
    return make_synthfrac(300, seed=7, split="train")


def dilate(masks: torch.Tensor, r: int) -> torch.Tensor:
    """n x 1 x S x S 0/1 -> grown by r pixels (square neighbourhood)."""
    return F.max_pool2d(masks, 2 * r + 1, stride=1, padding=r)


def test_shapes_dtypes_and_ranges(train):
    n, s = 300, 64
    for name in ("images", "masks", "bone_masks", "fracture_masks"):
        t = getattr(train, name)
        assert t.shape == (n, 1, s, s) and t.dtype == torch.float32, name
    assert train.labels.shape == (n,) and train.labels.dtype == torch.int64
    assert set(train.labels.tolist()) == {0, 1}
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    # Quantised to k/255, so an 8-bit PNG holds the image exactly.
    k = train.images * 255
    assert torch.equal(k.round() / 255, train.images)
    for name in ("masks", "bone_masks", "fracture_masks"):
        assert set(torch.unique(getattr(train, name)).tolist()) <= {0.0, 1.0}
    assert train.image_ids[:2] == ["train_00000", "train_00001"] and len(set(train.image_ids)) == n
    assert list(train.meta["label"]) == train.labels.tolist()
    assert train.meta["marker"].dtype == bool
    # Every image shows bone, and a real image: not flat.
    assert (train.bone_masks.flatten(1).sum(1) > 50).all()
    assert (train.images.flatten(1).std(1) > 0.05).all()


def test_same_arguments_same_bytes_and_prefix_stability():
    a = make_synthfrac(150, seed=3, split="test_id", subtlety=0.6)
    b = make_synthfrac(150, seed=3, split="test_id", subtlety=0.6)
    for name in ("images", "labels", "masks", "bone_masks", "fracture_masks"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.meta.equals(b.meta)
    # The first images do not depend on how many are drawn.
    c = make_synthfrac(10, seed=3, split="test_id", subtlety=0.6)
    assert torch.equal(c.images, a.images[:10])


def test_seeds_and_splits_differ():
    base = make_synthfrac(20, seed=0, split="train").images
    assert not torch.equal(base, make_synthfrac(20, seed=1, split="train").images)
    assert not torch.equal(base, make_synthfrac(20, seed=0, split="val").images)
    assert not torch.equal(base, make_synthfrac(20, seed=0, split="test_id").images)


def marker_label_correlation(s) -> float:
    return float(np.corrcoef(s.meta["marker"].astype(float), s.meta["label"])[0, 1])


def test_shortcut_is_planted_in_train_and_test_id_but_not_in_test_shifted():
    # Only metadata is needed, but drawing 2000 images takes well under a second at 32 px.
    kw = dict(size=32, shortcut_strength=0.9)
    for split in ("train", "val", "test_id"):
        s = make_synthfrac(2000, seed=1, split=split, **kw)
        p1 = s.meta.loc[s.meta.label == 1, "marker"].mean()
        p0 = s.meta.loc[s.meta.label == 0, "marker"].mean()
        assert abs(p1 - 0.95) < 0.03 and abs(p0 - 0.05) < 0.03, (split, p1, p0)
        assert marker_label_correlation(s) > 0.8
    shifted = make_synthfrac(2000, seed=1, split="test_shifted", **kw)
    assert abs(marker_label_correlation(shifted)) < 0.07
    assert abs(shifted.meta["marker"].mean() - 0.5) < 0.05
    none = make_synthfrac(2000, seed=1, split="train", size=32, shortcut_strength=0.0)
    assert abs(marker_label_correlation(none)) < 0.07


def test_positive_fraction_sets_the_class_balance():
    s = make_synthfrac(1000, size=32, positive_fraction=0.2)
    assert abs(s.labels.float().mean().item() - 0.2) < 0.04


def test_marker_is_bright_and_lies_outside_the_bone(train):
    meta = train.meta
    with_marker = meta["marker"].to_numpy()
    assert 0 < with_marker.sum() < len(meta)
    assert set(meta.loc[meta.marker, "marker_side"]) == {"L", "R"}
    assert set(meta.loc[~meta.marker, "marker_corner"]) == {""}
    for i in np.flatnonzero(meta["marker"]):
        corner = meta.marker_corner[i]
        rows = slice(0, 16) if corner[0] == "t" else slice(48, 64)
        cols = slice(0, 16) if corner[1] == "l" else slice(48, 64)
        region = (slice(None), rows, cols)
        # The lead letter is the brightest thing in its corner, and no bone is there.
        assert train.images[i, 0][region[1:]].max() > 0.8
        assert train.bone_masks[i, 0][region[1:]].sum() == 0
        assert train.masks[i, 0][region[1:]].sum() == 0


def test_fracture_masks_only_for_positives_and_inside_the_grown_bone(train):
    has_fracture = train.fracture_masks.flatten(1).amax(1) > 0
    assert torch.equal(has_fracture, train.labels == 1)
    outside = train.fracture_masks * (1 - dilate(train.bone_masks, 2))
    assert outside.sum() == 0
    # A band across the bone, not the whole bone.
    share = (
        train.fracture_masks.flatten(1).sum(1)[has_fracture]
        / train.bone_masks.flatten(1).sum(1)[has_fracture]
    )
    assert 0.05 < share.median() < 0.5
    types = set(train.meta.loc[train.meta.label == 1, "fracture_type"])
    assert types == {"transverse", "oblique"}
    assert set(train.meta.loc[train.meta.label == 0, "fracture_type"]) == {"none"}


def test_guide_chooses_the_guiding_mask():
    bone = make_synthfrac(40, seed=2, guide="bone")
    frac = make_synthfrac(40, seed=2, guide="fracture")
    assert torch.equal(bone.images, frac.images)
    assert torch.equal(bone.masks, bone.bone_masks)
    pos, neg = frac.labels == 1, frac.labels == 0
    assert torch.equal(frac.masks[pos], frac.fracture_masks[pos])
    assert torch.equal(frac.masks[neg], frac.bone_masks[neg])


def test_subtlety_makes_the_break_harder_to_see():
    def break_contrast(subtlety):
        s = make_synthfrac(200, seed=4, subtlety=subtlety, noise=0.0, shortcut_strength=0.0)
        pos = s.labels == 1
        # Mean brightness of the bone inside versus outside the fracture band.
        inside = (s.images * s.fracture_masks * s.bone_masks)[pos].sum() / (
            s.fracture_masks * s.bone_masks
        )[pos].sum()
        rest = (s.images * s.bone_masks * (1 - s.fracture_masks))[pos].sum() / (
            s.bone_masks * (1 - s.fracture_masks)
        )[pos].sum()
        return float(rest - inside)

    assert break_contrast(0.0) > break_contrast(1.0) > 0


@pytest.mark.parametrize("size", [32, 128])
def test_other_sizes(size):
    s = make_synthfrac(8, size=size, seed=0)
    assert s.images.shape == (8, 1, size, size)
    assert (s.bone_masks.flatten(1).mean(1) > 0.03).all()


def test_empty():
    s = make_synthfrac(0)
    assert s.images.shape == (0, 1, 64, 64) and len(s.meta) == 0 and s.image_ids == []


def test_save_and_load_round_trip_exactly(tmp_path):
    s = make_synthfrac(24, seed=5, split="test_shifted", guide="fracture")
    folder = s.save(tmp_path / "synth")
    assert (folder / "labels.csv").exists() and (
        folder / "images" / "test_shifted_00000.png"
    ).exists()
    back = load_synthfrac(folder)
    for name in ("images", "labels", "masks", "bone_masks", "fracture_masks"):
        assert torch.equal(getattr(back, name), getattr(s, name)), name
    assert back.image_ids == s.image_ids
    assert list(back.meta["marker"]) == list(s.meta["marker"])
    assert back.params["guide"] == "fracture"

    from agkit.data.mask_store import MaskStore

    store = MaskStore(folder / "masks")
    assert len(store) == len(s)  # guide="fracture": positives their break, normals their bone
    assert store.provenance(s.image_ids[0])["source"] == "synthetic"
    assert len(MaskStore(folder / "masks_fracture")) == int(s.labels.sum())


def test_load_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        load_synthfrac(tmp_path / "nothing")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=-1), "n must"),
        (dict(n=2.5), "n must"),
        (dict(size=16), "size must be an integer from 32 to 256"),
        (dict(size=300), "size must"),
        (dict(split="validation"), "unknown split"),
        (dict(guide="box"), "unknown guide"),
        (dict(shortcut_strength=1.5), "shortcut_strength must be a number from 0 to 1"),
        (dict(positive_fraction=-0.1), "positive_fraction"),
        (dict(subtlety=2), "subtlety"),
        (dict(noise=-1), "noise"),
        (dict(seed=-3), "seed"),
    ],
)
def test_bad_parameters_give_clear_errors(kwargs, match):
    args = dict(n=4)
    args.update(kwargs)
    n = args.pop("n")
    with pytest.raises(ValueError, match=match):
        make_synthfrac(n, **args)


def test_meta_points_at_the_break(train):
    pos = train.meta[train.meta.label == 1]
    rows = pos["fracture_y"].round().astype(int).clip(0, 63).to_numpy().copy()
    cols = pos["fracture_x"].round().astype(int).clip(0, 63).to_numpy().copy()
    hits = train.fracture_masks[pos.index.to_numpy().copy(), 0, rows, cols]
    assert hits.float().mean() > 0.95
