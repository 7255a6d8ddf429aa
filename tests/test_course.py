"""Course plumbing: cached runs, lambda chosen on validation only, degraded masks, summaries."""

import pandas as pd
import pytest
import torch

from agkit import course
from agkit.data.mask_quality import bounding_boxes, degrade, dilate, shift

TINY = course.Profile(
    name="test", size=32, backbone="tiny", n_train=32, n_val=16, n_test=16, epochs=1, batch_size=16,
    lr=3e-3, seeds=(0,), lambdas=(1.0,), time_limit=30, ablation_n_train=32, ablation_seeds=(0,), ablation_lambdas=(0.0,),
    ablation_sizes=(32,), ablation_fractions=(1.0,), ablation_qualities=("exact",))


def test_config_key_changes_with_every_field():
    base = course.guided_config(TINY, 1.0)
    assert base.key() == course.guided_config(TINY, 1.0).key()
    for change in ({"lam": 2.0}, {"seed": 1}, {"mask_quality": "box"}, {"annotated_fraction": 0.5},
                   {"resolution": "input"}, {"masks_version": "abc"}):
        assert course.guided_config(TINY, **{"lam": 1.0, **change}).key() != base.key()


def test_run_is_cached_and_reloadable(tmp_path, monkeypatch):
    config = course.guided_config(TINY, 1.0)
    first = course.run(config, tmp_path, progress=False, device="cpu")
    assert {"acc_id", "acc_shifted", "auc_shifted", "mass_in_mask", "acc_val"} <= set(first)
    monkeypatch.setattr(course, "fit", lambda *a, **k: pytest.fail("a cached run was trained again"))
    assert course.run(config, tmp_path) == first
    model = course.load_model(config, tmp_path)
    out = model(torch.rand(2, 1, 32, 32))
    assert out.cams.shape == (2, 2, 4, 4)


def test_lambda_is_chosen_on_validation_with_mass_as_tie_break(monkeypatch):
    fake = pd.DataFrame({"lam": [0.1, 1.0, 10.0], "acc_val": [0.90, 0.895, 0.70],
                         "mass_in_mask_val": [0.3, 0.8, 0.9], "acc_shifted": [0.99, 0.1, 0.1]})
    monkeypatch.setattr(course, "run_many", lambda *a, **k: fake)
    lam, table = course.choose_lambda(TINY)
    assert lam == 1.0  # within a point of the best validation accuracy, more mass inside
    assert "acc_shifted" not in table  # the test split plays no part


def test_summarize_means_over_seeds():
    table = pd.DataFrame({"method": ["baseline", "baseline", "guided"], "acc_shifted": [0.4, 0.6, 0.9],
                          "acc_id": [1, 1, 1], "auc_shifted": [0.5, 0.5, 0.9], "mass_in_mask": [0.1, 0.3, 0.8]})
    summary = course.summarize(table)
    assert summary.loc["baseline", "acc_shifted"] == pytest.approx(0.5)
    assert summary.loc["guided", "mass_in_mask"] == pytest.approx(0.8)


def test_unknown_profile_is_explained():
    with pytest.raises(ValueError, match="choose one of ci, workshop, full"):
        course.get_profile("huge")


def test_mask_degradations_by_hand():
    masks = torch.zeros(1, 1, 8, 8)
    masks[0, 0, 2, 3] = masks[0, 0, 5, 6] = 1
    box = bounding_boxes(masks)[0, 0]
    assert box[2:6, 3:7].all() and box.sum() == 16
    grown = dilate(masks, 1)[0, 0]
    assert grown.sum() == 18 and grown[1:4, 2:5].all()
    moved = shift(masks, 2, seed=0)
    assert moved.sum() <= masks.sum() and not torch.equal(moved, masks)
    assert torch.equal(degrade(masks, "exact"), masks)
    with pytest.raises(ValueError, match="unknown mask quality"):
        degrade(masks, "blurry")
