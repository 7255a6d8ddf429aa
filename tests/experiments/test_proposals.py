"""agkit.experiments.proposals: the run on the student's masks, or on the kit's proposal."""

import pytest
from tiny_runs import TINY, drawn_store

from agkit import experiments


def test_your_masks_run_uses_the_store_and_oversamples_it(tmp_path):
    folder = experiments.annotation_folder(TINY, tmp_path, seed=0)
    drawn_store(folder, experiments.baseline_config(TINY, 0), n=4)
    config, n, fallback = experiments.your_masks_config(TINY, 1.0, 0, tmp_path)
    assert (n, fallback) == (4, "")
    assert config.masks_from == str(folder) and config.annotated_ids == ()
    assert config.annotated_share == experiments.ANNOTATED_SHARE and config.lam == 1.0


def test_your_masks_run_without_notebook_02_falls_back_to_the_kits_proposal(tmp_path):
    config, n, fallback = experiments.your_masks_config(
        TINY, 1.0, 0, tmp_path, strategy="random", n=5
    )
    assert n == 5 and config.masks_from is None
    assert list(config.annotated_ids) == sorted(experiments.annotation_proposal(TINY, "random")[:5])
    assert "found 0 masks" in fallback and "5 images the kit proposes first" in fallback
    assert experiments.make_datasets(config)["train"].mask_kept.sum() == 5


def test_an_unknown_strategy_is_named_before_the_baseline_it_ranks_with_trains(tmp_path):
    with pytest.raises(ValueError, match="unknown strategy 'smart'; choose one of random"):
        experiments.annotation_proposal(TINY, "smart", 0, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no baseline was trained for it


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_the_fallback_refuses_a_count_that_would_not_be_that_many_masks(n, tmp_path):
    # an empty annotated_ids means every mask, and proposal[:-3] all but three
    with pytest.raises(ValueError, match="n must be a whole number of masks, at least 1"):
        experiments.your_masks_config(TINY, 1.0, 0, tmp_path, strategy="random", n=n)
