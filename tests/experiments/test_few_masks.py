"""agkit.experiments.few_masks: training with a few masks, and its benchmark."""

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_data import tiny_dataset

from agkit.data import GuidedDataset
from agkit.experiments.few_masks import (
    annotated_images,
    balanced_lam,
    batch_coverage,
    oversampling_loader,
    switch_guidance_on,
    train_with_few_masks,
    with_masks,
)
from agkit.method.camnet import CAMNet

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------- few masks


def test_with_masks_keeps_only_the_chosen_masks_and_leaves_the_original():
    ds = tiny_dataset()
    few = with_masks(ds, [2, 7])
    assert few.mask_kept.nonzero().flatten().tolist() == [2, 7]
    assert bool(few[2][3]) and not bool(few[3][3]) and few[3][2].sum() == 0
    assert bool(ds.mask_kept.all())
    with pytest.raises(ValueError, match="12"):
        with_masks(ds, [12])


def test_annotated_images_skip_empty_and_unkept_masks():
    masks = torch.zeros(12, 1, 16, 16)
    masks[[1, 4, 6], :, 2:5, 2:5] = 1  # image 0 has an empty mask: not annotated
    ds = GuidedDataset(torch.rand(12, 1, 16, 16), torch.arange(12) % 2, masks)
    assert annotated_images(ds).nonzero().flatten().tolist() == [1, 4, 6]
    assert annotated_images(with_masks(ds, [0, 4])).nonzero().flatten().tolist() == [4]


def test_oversampling_counts_only_images_that_have_a_mask():
    """A MaskStore-like source keeps every image, but only a few have masks."""
    images = torch.rand(40, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    ids = [f"im{i}" for i in range(40)]
    drawn = {f"im{i}": torch.ones(16, 16) for i in (3, 9)}  # two masks in a mapping
    ds = GuidedDataset(images, torch.arange(40) % 2, drawn, image_ids=ids)
    assert bool(ds.mask_kept.all())
    loader = oversampling_loader(ds, 40, annotated_share=0.5, seed=0)
    has_mask = torch.cat([batch[3] for _ in range(10) for batch in loader])
    assert 0.4 < has_mask.float().mean() < 0.6


def test_batch_coverage_by_hand():
    # 1 annotated of 4, batches of 2: P(no mask) = 3/4 * 2/3 = 1/2
    assert batch_coverage(1, 4, 2) == pytest.approx(0.5)
    assert batch_coverage(0, 4, 2) == 0.0
    assert batch_coverage(3, 4, 2) == 1.0  # one unannotated image cannot fill a batch of 2
    assert balanced_lam(3.0, 1, 4, 2) == pytest.approx(6.0)
    assert balanced_lam(3.0, 0, 4, 2) == 3.0


def test_oversampling_loader_draws_annotated_images_at_the_asked_share():
    ds = with_masks(tiny_dataset(n=100), [0, 1, 2, 3, 4])
    loader = oversampling_loader(ds, 50, annotated_share=0.5, seed=0)
    drawn = torch.cat([batch[3] for _ in range(20) for batch in loader])
    assert len(drawn) == 2000
    assert 0.45 < drawn.float().mean() < 0.55  # 5 % of the images, half of the draws
    with pytest.raises(ValueError, match="annotated_share"):
        oversampling_loader(ds, 50, annotated_share=1.0)


def test_switch_guidance_on_copies_and_changes_pooling_only():
    base = CAMNet("tiny", num_classes=2, in_channels=1, pooling="avg").eval()
    guided = switch_guidance_on(base)
    assert base.pooling == "avg" and guided.pooling == "softmax"
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(base(x).cams, guided(x).cams)


def test_finetuning_with_few_masks_leaves_the_baseline_untouched_and_repeats():
    ds = with_masks(tiny_dataset(), [1, 2])
    torch.manual_seed(0)
    base = CAMNet("tiny", num_classes=2, in_channels=1)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    runs = [
        train_with_few_masks(
            ds,
            lam=3.0,
            epochs=2,
            lr=1e-2,
            batch_size=4,
            baseline=base,
            annotated_share=0.5,
            balance_lam=True,
        )
        for _ in range(2)
    ]
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    (m1, h1), (_, h2) = runs
    assert m1.pooling == "softmax" and len(h1) == 2 and (h1["att"] > 0).all()
    assert h1["loss"].tolist() == h2["loss"].tolist()
    with pytest.raises(ValueError, match="baseline="):
        train_with_few_masks(ds, lam=1.0, epochs=1, lr=1e-3, batch_size=4)


def test_train_with_few_masks_refuses_a_dataset_without_any_mask():
    """Before: it trained the baseline (softmax pooling, lam > 0, no mask) without a word."""
    ds = tiny_dataset()
    empty = GuidedDataset(
        torch.rand(12, 1, 16, 16), torch.arange(12) % 2, torch.zeros(12, 1, 16, 16)
    )
    for dataset in (with_masks(ds, []), empty):
        with pytest.raises(ValueError, match=r"none of the 12 images .* has a mask"):
            train_with_few_masks(
                dataset, lam=1.0, epochs=1, lr=1e-3, batch_size=4, model=CAMNet("tiny", 2, 1)
            )
    # lam = 0 asks for no guidance: it needs no mask and trains
    _, history = train_with_few_masks(
        with_masks(ds, []), lam=0.0, epochs=1, lr=1e-3, batch_size=4, model=CAMNet("tiny", 2, 1)
    )
    assert len(history) == 1


def test_random_control_refuses_zero_negative_and_too_many_masks(monkeypatch):
    """Before: n=0 kept every mask (an empty annotated_ids means all) and was labelled
    "guided"; n=-3 kept all but three."""
    from agkit import experiments
    from agkit.experiments import proposals

    proposal = [f"im{i}" for i in range(10)]
    monkeypatch.setattr(proposals, "annotation_proposal", lambda *args, **kwargs: proposal)
    profile = experiments.get_profile("ci")
    config = experiments.random_control_config(profile, 1.0, 0, n=3)
    assert config.annotated_ids == ("im0", "im1", "im2") and "3 masks" in config.label
    for n in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"at least 1, got .*baseline_config"):
            experiments.random_control_config(profile, 1.0, 0, n=n)
    with pytest.raises(ValueError, match=r"n=11 asks for more masks than the 10 training"):
        experiments.random_control_config(profile, 1.0, 0, n=11)


# ----------------------------------------------------------------- the benchmark


def load_benchmark():
    spec = importlib.util.spec_from_file_location("few_masks", ROOT / "benchmarks" / "few_masks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_share_of_gain_by_hand():
    bench = load_benchmark()
    assert bench.share_of_gain(0.8, 0.6, 1.0) == pytest.approx(0.5)
    assert bench.share_of_gain(0.5, 0.6, 1.0) == pytest.approx(-0.25)
    assert math.isnan(bench.share_of_gain(0.7, 0.6, 0.6))


@pytest.mark.parametrize(
    "arguments, named",
    [
        (["--seeds", "0,x"], "argument --seeds: 'x' is not a whole number"),
        (["--seeds", "0,-1"], "argument --seeds: '-1' is below 0"),
        (["--n-masks", "0"], "argument --n-masks: '0' is below 1"),
        (["--n-masks", "5,129"], "--n-masks 129 asks for more masks than the profile's 128"),
        (["--strategies", "random,smart"], "'smart' is not one of random, balanced"),
        (["--profile", "huge"], "unknown profile 'huge'"),
        (["--min-confidence", "1.5"], "min_confidence must be a number from 0 to 1"),
    ],
)
def test_the_benchmark_names_a_bad_argument_before_anything_trains(
    arguments, named, tmp_path, capsys
):
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as stopped:
        load_benchmark().main(["--profile", "ci", *arguments, "--runs-dir", str(runs)])
    assert stopped.value.code == 2 and named in capsys.readouterr().err
    assert not runs.exists()


@pytest.mark.slow
def test_benchmark_writes_the_share_table(tmp_path):
    bench = load_benchmark()
    out = tmp_path / "shares.json"
    results = bench.main(
        [
            "--profile",
            "ci",
            "--seeds",
            "0",
            "--n-masks",
            "5,all",
            "--strategies",
            "uncertainty",
            "--recipe",
            "segmenter,scratch",
            "--jobs",
            "1",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--json",
            str(out),
        ]
    )
    shares = json.loads(out.read_text())  # values may be null: 2 ci epochs may gain nothing
    assert set(shares) == {"random", "uncertainty"}
    assert set(shares["random"]) == {"5", "all"}
    assert shares["random"]["all"] == shares["uncertainty"]["all"]
    row = results[(results.strategy == "uncertainty") & (results.n_masks == "5")].iloc[0]
    assert row.recipe == "segmenter"  # the json holds the first recipe listed
    assert row.share_of_gain == pytest.approx(
        bench.share_of_gain(row.accuracy_test_shifted, row.baseline, row.full), nan_ok=True
    )
    assert 0 <= row.propagated_iou <= 1  # the proposals scored against the built-in masks
    scratch = results[(results.recipe == "scratch") & (results.n_masks == "5")]
    assert scratch["propagated_iou"].isna().all() and len(scratch) == 2


def test_the_benchmark_chooses_the_strategy_on_the_validation_splits_alone():
    bench = load_benchmark()
    rows = [  # strategy, shifted validation accuracy, validation mass in mask, test accuracy
        ("random", 0.90, 0.90, 0.99),  # the control is never chosen
        ("uncertainty", 0.86, 0.70, 0.95),
        ("balanced", 0.853, 0.80, 0.60),  # within a point of the best: more mass wins
        ("coverage", 0.84, 0.95, 0.99),  # more than a point behind: out, whatever its test
    ]
    table = pd.DataFrame(
        [
            dict(
                strategy=s,
                n_masks="20",
                accuracy_val_shifted=v,
                mass_in_mask_val=m,
                accuracy_test_shifted=t,
            )
            for s, v, m, t in rows
        ]
    )
    sentence = bench.chosen_strategy(table, "segmenter")
    assert "choose 'balanced' at 20 masks" in sentence
    assert "best 0.860: uncertainty, balanced" in sentence or "balanced, uncertainty" in sentence
    assert "none chosen" in bench.chosen_strategy(table[table.strategy == "random"], "x")
