"""agkit.experiments.splits: a run's data, its masks (degraded, a few kept, drawn) and its
training batches."""

import pytest
import torch
from tiny_runs import TINY, LoaderSpy, drawn_store

from agkit import experiments
from agkit.data.mask_quality import bounding_boxes, degrade, dilate, shift
from agkit.experiments import store


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


def test_run_with_annotated_ids_trains_only_those_images_with_masks(tmp_path, monkeypatch):
    train = experiments.make_splits(experiments.baseline_config(TINY, 0))["train"]
    chosen = [train.image_ids[i] for i in (2, 5, 11)]
    config = experiments.few_mask_config(TINY, 1.0, annotated_ids=chosen, share=None)
    dataset = experiments.make_datasets(config)["train"]
    assert dataset.mask_kept.nonzero().flatten().tolist() == [2, 5, 11]
    spy = LoaderSpy()
    monkeypatch.setattr(store, "fit", spy)
    result = experiments.run(config, tmp_path, progress=False, device="cpu")
    has_mask = torch.cat(spy.has_mask)
    assert len(has_mask) == TINY.n_train and int(has_mask.sum()) == 3  # one epoch, 3 masks
    assert result["annotated_ids"] == sorted(chosen)
    with pytest.raises(ValueError, match="not training images"):
        experiments.make_datasets(
            experiments.few_mask_config(TINY, 1.0, annotated_ids=["elsewhere"])
        )


def test_run_honours_the_annotated_share():
    train = experiments.make_splits(experiments.baseline_config(TINY, 0))["train"]
    config = experiments.few_mask_config(TINY, 1.0, annotated_ids=train.image_ids[:2], share=0.5)
    loader = experiments.training_loader(config, experiments.make_datasets(config)["train"])
    draws = torch.cat([batch[3] for _ in range(20) for batch in loader])
    assert len(draws) == 20 * TINY.n_train
    assert 0.42 < draws.float().mean() < 0.58  # 2 of 32 images, half of the draws
    plain = experiments.few_mask_config(TINY, 1.0, annotated_ids=train.image_ids[:2], share=None)
    unshared = experiments.training_loader(plain, experiments.make_datasets(plain)["train"])
    assert int(torch.cat([b[3] for b in unshared]).sum()) == 2


def test_few_mask_run_from_a_store_oversamples_the_images_it_has_masks_for(tmp_path, monkeypatch):
    folder = tmp_path / "masks"
    base = experiments.baseline_config(TINY, 0)
    drawn_store(folder, base, n=4)
    config = experiments.few_mask_config(TINY, 1.0, masks_from=str(folder), data_seed=0, share=0.5)
    spy = LoaderSpy()
    monkeypatch.setattr(store, "fit", spy)
    experiments.run(config, tmp_path / "runs", progress=False, device="cpu")
    has_mask = torch.cat(spy.has_mask)
    assert len(has_mask) == TINY.n_train
    # 4 of 32 images (12.5 %) have masks; oversampled to about half of the draws
    assert int(has_mask.sum()) >= 10
    assert (torch.cat(spy.images)[has_mask] == 144).all()  # the drawn 12 x 12 boxes


def test_runs_of_one_seed_share_their_drawn_images_and_the_memo_stays_bounded(
    monkeypatch, tmp_path
):
    from agkit.data import make_synthfrac
    from agkit.experiments import splits

    monkeypatch.setattr(splits, "_split_memo", type(splits._split_memo)())
    first = splits.make_splits(experiments.baseline_config(TINY, 0))
    guided = experiments.guided_config(TINY, 1.0, 0)
    again = splits.make_splits(guided)
    other_seed = splits.make_splits(experiments.baseline_config(TINY, 1))
    assert again["train"] is first["train"] and again["val_shifted"] is first["val_shifted"]
    assert other_seed["train"] is not first["train"]
    assert other_seed["test_shifted"] is first["test_shifted"]  # one test set for every seed
    # the shared split is what the generator draws, and a run trained on it changed nothing
    experiments.run(guided, tmp_path, progress=False, device="cpu")
    drawn = make_synthfrac(TINY.n_train, size=TINY.size, seed=0, split="train")
    for name in ("images", "labels", "masks", "bone_masks", "fracture_masks"):
        assert torch.equal(getattr(first["train"], name), getattr(drawn, name))
    # bounded by bytes: with a limit below one split, only the newest is kept
    monkeypatch.setattr(splits, "SPLIT_MEMO_BYTES", 1)
    splits.make_splits(experiments.baseline_config(TINY, 2))
    assert len(splits._split_memo) == 1
