"""agkit.experiments.mask_checks: guided training with no drawn mask stops, saying why."""

import numpy as np
import pytest
from tiny_runs import TINY, drawn_store

from agkit import experiments
from agkit.data import MaskStore
from agkit.experiments import store


def test_annotations_from_missing_or_empty_store_say_how_many_and_where(tmp_path):
    folder = experiments.annotation_folder(TINY, tmp_path, seed=0)
    missing = r"found 0 masks in .*seed0 \(the folder does not exist\)"
    with pytest.raises(experiments.NoMasksError, match=missing):
        experiments.mask_changes("annotations", TINY, tmp_path, seed=0)
    assert not folder.exists()  # asking did not create the store
    MaskStore(folder)
    with pytest.raises(experiments.NoMasksError, match=r"found 0 masks in .*seed0; guided"):
        experiments.mask_changes("annotations", TINY, tmp_path, seed=0)
    assert experiments.mask_changes("builtin", TINY, tmp_path) == {}


def test_masks_of_other_images_stop_training(tmp_path, monkeypatch):
    folder = tmp_path / "masks"
    mask = np.zeros((TINY.size, TINY.size), np.uint8)
    mask[4:9, 4:9] = 1
    MaskStore(folder).put("an-image-of-another-dataset", mask)
    config = experiments.guided_config(TINY, 1.0, masks_from=str(folder))
    monkeypatch.setattr(store, "fit", lambda *a, **k: pytest.fail("trained without masks"))
    message = "found 1 masks in .*none of them for the 32 training images"
    with pytest.raises(experiments.NoMasksError, match=message):
        experiments.run(config, tmp_path / "runs", progress=False, device="cpu")


def test_annotations_give_changes_that_train_on_the_drawn_masks(tmp_path):
    folder = experiments.annotation_folder(TINY, tmp_path, seed=0)
    drawn_store(folder, experiments.baseline_config(TINY, 0))
    changes = experiments.mask_changes("annotations", TINY, tmp_path, seed=0)
    assert changes == {"masks_from": str(folder), "data_seed": 0}
    datasets = experiments.make_datasets(experiments.guided_config(TINY, 1.0, **changes))
    assert int(sum(bool(datasets["train"][i][3]) for i in range(TINY.n_train))) == 8
