"""agkit.experiments.configs and profiles: run configs, their keys, the profiles."""

import pytest
from tiny_runs import TINY

from agkit import experiments


def test_config_key_changes_with_every_field():
    base = experiments.guided_config(TINY, 1.0)
    assert base.key() == experiments.guided_config(TINY, 1.0).key()
    for change in (
        {"lam": 2.0},
        {"seed": 1},
        {"mask_quality": "box"},
        {"annotated_fraction": 0.5},
        {"resolution": "input"},
        {"masks_version": "abc"},
        {"lr_decay_at": 0.5},
        {"epochs": 2},
        {"annotated_ids": ("train_00001",)},
    ):
        assert experiments.guided_config(TINY, **{"lam": 1.0, **change}).key() != base.key()
    few = {"lam": 1.0, "annotated_ids": ("train_00001",)}  # a share needs a few masks to draw
    assert (
        experiments.guided_config(TINY, **few, annotated_share=0.25).key()
        != experiments.guided_config(TINY, **few).key()
    )
    # the time limit decides whether a run finishes, never what it gives
    assert experiments.guided_config(TINY, 1.0, time_limit=5).key() == base.key()


def test_annotated_ids_key_is_the_set_of_ids():
    a = experiments.few_mask_config(TINY, 1.0, annotated_ids=["train_00003", "train_00001"])
    b = experiments.few_mask_config(TINY, 1.0, annotated_ids=("train_00001", "train_00003"))
    assert a.annotated_ids == ("train_00001", "train_00003") and a.key() == b.key()
    c = experiments.few_mask_config(TINY, 1.0, annotated_ids=["train_00001"])
    assert c.key() != a.key() and c.label == "guided (lambda=1, 1 masks)"
    d = experiments.few_mask_config(TINY, 1.0, annotated_ids=["train_00001"], share=0.5)
    assert d.key() != c.key()
    with pytest.raises(ValueError, match="annotated_share must lie strictly between 0 and 1"):
        experiments.guided_config(TINY, 1.0, annotated_ids=["train_00001"], annotated_share=1.0)


def test_unknown_profile_is_explained():
    with pytest.raises(ValueError, match="choose one of ci, workshop, full"):
        experiments.get_profile("huge")
