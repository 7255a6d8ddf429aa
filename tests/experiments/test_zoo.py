"""agkit.experiments.zoo: the guidance zoo's runs, summaries, verdicts and benchmark."""

import math

import pandas as pd
import pytest
import torch

from agkit.analysis.diagnostics import synthfrac_marker_masks
from agkit.data import make_synthfrac
from agkit.experiments import zoo, zoo_settings
from agkit.method.camnet import CAMNet
from agkit.method.small_nets import DigitNet
from agkit.method.train import fit, training_step


def _synthfrac_batch(n=32, size=32):
    data = make_synthfrac(n, size=size, seed=3, split="train")
    forbidden = synthfrac_marker_masks(data)
    return data.images, data.labels, data.masks, data.masks.flatten(1).amax(1) > 0, forbidden


# ------------------------------------------------------------------ the zoo's runner


def test_zoo_summary_means_spreads_and_step_ratio_by_hand():
    table = pd.DataFrame(
        {
            "method": ["baseline", "baseline", "rrr", "rrr"],
            "accuracy_test": [0.5, 0.7, 0.9, 1.0],
            "step_seconds": [0.1, 0.1, 0.3, 0.3],
        }
    )
    summary = zoo.summarize(table)
    assert summary.loc["baseline", "accuracy_test_mean"] == pytest.approx(0.6)
    assert summary.loc["rrr", "accuracy_test_std"] == pytest.approx(0.0707107, rel=1e-5)
    assert "step_ratio" not in summary  # one step-time measure: step_ratios, never run times
    ratios = pd.Series({"rrr": 2.5, "baseline": 1.0})
    assert zoo.summarize(table, ratios)["step_ratio"].to_dict() == {"baseline": 1.0, "rrr": 2.5}


def test_step_ratios_time_every_method_against_the_baseline_on_one_batch():
    batch = _synthfrac_batch(8)
    ratios = zoo.step_ratios(
        lambda pooling: CAMNet("tiny", 2, 1, pooling),
        batch,
        ("baseline", "cam", "rrr"),
        repeats=3,
        warmup=1,
    )
    assert list(ratios.index) == ["baseline", "cam", "rrr"] and ratios["baseline"] == 1.0
    assert ratios["rrr"] > 1.0  # double backpropagation costs more than cross-entropy alone


def test_synthfrac_run_scores_a_term_on_the_shifted_split():
    from dataclasses import replace

    from agkit import experiments

    tiny = replace(
        experiments.get_profile("ci"),
        size=32,
        n_train=32,
        n_val=8,
        n_test=32,
        epochs=1,
        batch_size=16,
    )
    result = zoo.synthfrac_run(tiny, "rrr", 0, ig_images=4, ig_steps=4)
    assert result["steps"] == 2 and result["lam"] == zoo.LAMBDAS["synthfrac"]["rrr"]
    for key in ("accuracy_shifted", "worst_group_shifted", "wrong_reason_cam", "wrong_reason_ig"):
        assert 0.0 <= result[key] <= 1.0
    assert result["worst_group_shifted"] <= result["accuracy_shifted"]
    assert result["region"] == zoo.REGION["rrr"]
    with pytest.raises(ValueError, match="unknown region"):
        zoo.synthfrac_run(tiny, "forbidden", 0, region="everywhere")
    with pytest.raises(ValueError, match="'cam' uses no forbidden region"):
        zoo.synthfrac_run(tiny, "cam", 0, region="corners")


def test_the_forbidden_region_decides_what_the_term_sees(monkeypatch):
    from dataclasses import replace

    from agkit import experiments

    tiny = replace(
        experiments.get_profile("ci"),
        size=32,
        n_train=16,
        n_val=8,
        n_test=16,
        epochs=1,
        batch_size=16,
    )
    data = zoo.synthfrac_data(tiny, 0)
    seen = {}

    class Recorded(Exception):
        """Stops the run once the batches are known: only the masks matter here."""

    def recording_train(model, batches, method, lam, **kwargs):
        seen[method] = batches.dataset.tensors[4]  # the forbidden masks of the batches
        raise Recorded

    monkeypatch.setattr(zoo, "train", recording_train)
    for region in zoo.REGIONS:
        with pytest.raises(Recorded):
            zoo.synthfrac_run(tiny, "forbidden", 0, data, region=region)
        seen[region] = seen.pop("forbidden")
    train_set, markers = data["train"]
    assert torch.equal(seen["marker"], markers)
    corners = synthfrac_marker_masks(train_set, every_corner=True)
    assert torch.equal(seen["corners"], corners)
    assert not torch.equal(seen["marker"], seen["corners"])


def test_the_zoo_fingerprint_follows_the_training_source(monkeypatch, tmp_path):
    import shutil

    from agkit import experiments
    from agkit.experiments import fingerprints

    first = zoo.fingerprint()
    assert zoo.fingerprint() == first and len(first) == 12
    package = tmp_path / "agkit"
    shutil.copytree(experiments.PACKAGE_ROOT, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprints, "PACKAGE_ROOT", package)
    assert zoo.fingerprint() == first  # the same source elsewhere: the same fingerprint
    for module in (
        "method/loss.py",
        "analysis/diagnostics.py",
    ):  # the training code, the zoo's metrics
        path = package / module
        path.write_text(path.read_text() + "\nEDITED = True\n")
        assert zoo.fingerprint() != first
        first = zoo.fingerprint()


# ------------------------------------------------------------------ the benchmark


def load_zoo_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "guidance_zoo.py"
    spec = importlib.util.spec_from_file_location("guidance_zoo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tuning_keeps_the_lam_with_the_best_validation_score_for_the_later_seeds():
    from argparse import Namespace

    bench = load_zoo_benchmark()
    calls, rows = [], []

    def run_one(method, seed, data, lam):  # validation peaks at lam 100; test would prefer 1000
        calls.append((method, seed, lam))
        if method == "rrr" and lam == 1000.0:
            raise bench.TrainingDiverged("too large")
        val = {0.0: 0.2, 10.0: 0.3, 100.0: 0.9}.get(lam, 0.5)
        return dict(dataset="decoy_mnist", method=method, lam=lam, seed=seed, accuracy_val=val)

    args = Namespace(tune=True, seeds=[3, 4], methods=["baseline", "rrr"])
    for seed in args.seeds:
        bench.run_methods("decoy_mnist", run_one, seed, None, args, rows.append)
    grid = list(zoo_settings.LAMBDA_GRIDS["decoy_mnist"]["rrr"])
    assert calls == [("baseline", 3, 0.0)] + [("rrr", 3, lam) for lam in grid] + [
        ("baseline", 4, 0.0),
        ("rrr", 4, 100.0),
    ]
    selected = [(r["method"], r["seed"], r["lam"]) for r in rows if r["selected"]]
    assert selected == [
        ("baseline", 3, 0.0),
        ("rrr", 3, 100.0),
        ("baseline", 4, 0.0),
        ("rrr", 4, 100.0),
    ]
    assert [r["tuning"] for r in rows if r["seed"] == 3] == [False, True, True, True]
    diverged = [r for r in rows if r["lam"] == 1000.0]
    assert len(diverged) == 1 and "accuracy_val" not in diverged[0]  # recorded, never chosen


def test_synthfrac_tuning_chooses_the_forbidden_region_with_the_lam():
    from argparse import Namespace

    bench = load_zoo_benchmark()
    calls, rows = [], []

    def run_one(method, seed, data, lam, region=None):
        calls.append((method, seed, lam, region))
        best = method == "forbidden" and (lam, region) == (10.0, "corners")
        return dict(
            dataset="synthfrac",
            method=method,
            lam=lam,
            region=region,
            seed=seed,
            worst_group_val_shifted=0.7 if best else 0.1,
        )

    args = Namespace(tune=True, seeds=[0, 1], methods=["baseline", "forbidden", "cam"])
    for seed in args.seeds:
        bench.run_methods("synthfrac", run_one, seed, None, args, rows.append)
    lams = zoo_settings.LAMBDA_GRIDS["synthfrac"]
    tried = [(lam, region) for m, s, lam, region in calls if m == "forbidden" and s == 0]
    assert tried == [(lam, r) for r in zoo.REGIONS for lam in lams["forbidden"]]
    # a term without a forbidden region is tuned on lam alone
    assert [c for c in calls if c[0] == "cam" and c[1] == 0] == [
        ("cam", 0, lam, None) for lam in lams["cam"]
    ]
    assert [c for c in calls if c[1] == 1] == [
        ("baseline", 1, 0.0, None),
        ("forbidden", 1, 10.0, "corners"),
        ("cam", 1, lams["cam"][0], None),
    ]


def test_verdict_names_who_beats_the_baseline_and_a_cam_that_moved_alone():
    summary = pd.DataFrame(
        {
            "worst_group_shifted_mean": [0.15, 0.80, 0.05],
            "wrong_reason_cam_mean": [0.48, 0.01, 0.00],
            "wrong_reason_ig_mean": [0.07, 0.01, 0.30],
            "step_ratio": [1.0, 1.5, 1.1],
        },
        index=["baseline", "cam", "forbidden"],
    )
    cam, forbidden = zoo.verdict(summary)
    assert cam == (
        "cam: worst-group accuracy 0.80 against the baseline's 0.15 (better, +0.65), "
        "1.5x the baseline's step time."
    )
    assert forbidden.startswith(
        "forbidden: worst-group accuracy 0.05 against the baseline's 0.15 (not better, -0.10)"
    )
    assert "Integrated Gradients still puts 0.30" in forbidden and "not the reasoning" in forbidden
    assert "Integrated" not in cam  # its IG share fell with its CAM share


def test_digit_backbone_knows_where_a_pattern_is_only_with_coordinates():
    """Shift a square by one CAM cell (4 pixels): without coordinate channels the features
    shift with it (the network cannot tell a corner from the centre); with them they change."""
    image = torch.zeros(2, 1, 28, 28)
    image[0, 0, 8:12, 8:12] = 1.0
    image[1, 0, 12:16, 12:16] = 1.0

    def features(coordinates):
        torch.manual_seed(0)
        return DigitNet(coordinates=coordinates).eval()(image).detach()

    plain = features(False)
    torch.testing.assert_close(plain[1, :, 3:6, 3:6], plain[0, :, 2:5, 2:5])
    placed = features(True)
    assert not torch.allclose(placed[1, :, 3:6, 3:6], placed[0, :, 2:5, 2:5], atol=1e-3)
    assert zoo.digit_model("softmax")(image).cams.shape == (2, 10, 7, 7)


def test_a_digit_backbone_cell_sees_25_by_25_pixels_nearly_the_whole_digit():
    torch.manual_seed(0)
    net = DigitNet(coordinates=False).eval()
    image = torch.rand(1, 1, 28, 28, requires_grad=True)
    net(image)[0, :, 3, 3].sum().backward()  # the centre cell of the 7 x 7 grid
    rows, cols = (image.grad[0, 0] != 0).nonzero().unbind(1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 24, 0, 24)
    with pytest.raises(ValueError, match="one stride per width"):
        DigitNet(widths=(8, 16), strides=(1,))


def test_decoy_run_scores_validation_and_test_digits_it_did_not_train_on():
    import numpy as np

    from agkit.data.decoy_mnist import add_decoys

    rng = np.random.default_rng(0)
    digits = np.zeros((48, 28, 28), np.uint8)
    labels = rng.integers(0, 10, 48)
    for i, label in enumerate(labels):  # a bar whose row says the digit: learnable
        digits[i, 6 + 2 * label : 8 + 2 * label, 8:20] = 255
    train = add_decoys(digits[:32], labels[:32], split="train", seed=0)
    val = add_decoys(digits[32:40], labels[32:40], split="test", seed=0)
    test = add_decoys(digits[40:], labels[40:], split="test", seed=1)
    result = zoo.decoy_run(train, test, "rrr", 0, val_set=val, lam=10.0, epochs=1, batch_size=16)
    assert result["steps"] == 2 and result["lam"] == 10.0
    for key in ("accuracy_val", "accuracy_test"):
        assert result[key] in {k / 8 for k in range(9)}  # a share of 8 digits
    assert math.isnan(zoo.decoy_run(train, test, "baseline", 0, epochs=1)["accuracy_val"])


def test_an_input_gradient_step_leaves_the_callers_batch_alone():
    """RRR differentiates with respect to the images; the caller's tensor must not start to
    require gradients, or every later step on it (a timing loop, the next method) would
    pay for an input gradient and collect it in ``.grad``."""
    import numpy as np

    from agkit.data.decoy_mnist import add_decoys

    data = add_decoys(np.full((8, 28, 28), 9, np.uint8), np.arange(8) % 10, split="train")
    batch = tuple(t[:4] for t in data.tensors())
    model = zoo.digit_model("avg")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):
        training_step(model, batch, optimizer, lam=1.0, guidance="rrr")
    assert not batch[0].requires_grad and batch[0].grad is None


def test_the_zoo_baseline_is_plain_cross_entropy_and_trains_as_fit_does():
    """The baseline step is cross-entropy alone (the term is not computed at lam 0), so the
    step-time ratios do not flatter any term; its weights are fit's."""
    images, labels, masks, has_mask, forbidden = _synthfrac_batch(16)
    batches = zoo.loader(images, labels, masks, has_mask, forbidden, batch_size=8)
    torch.manual_seed(0)
    run = zoo.train(CAMNet("tiny", 2, 1), batches, "baseline", 5.0, epochs=1, lr=1e-3, seed=0)
    torch.manual_seed(0)
    reference = CAMNet("tiny", 2, 1)
    history = fit(reference, batches, epochs=1, lr=1e-3, seed=0, device="cpu", callbacks=[])
    assert run.lam == 0.0 and history["att"].isna().all()
    for a, b in zip(run.model.state_dict().values(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    lam, term = zoo.step_settings("baseline", 5.0)
    model = CAMNet("tiny", 2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    out = training_step(model, (images, labels, masks, has_mask), optimizer, lam=lam, guidance=term)
    assert lam == 0.0 and math.isnan(out["att"])  # the term is never called
