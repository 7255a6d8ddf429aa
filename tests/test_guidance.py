"""Guidance terms: values on hand-made cases, gradients by gradcheck, and training with them."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agkit import guidance
from agkit.analysis.diagnostics import synthfrac_marker_masks
from agkit.data import make_synthfrac
from agkit.experiments import zoo
from agkit.guidance import (
    CAMGuidance,
    ForbiddenGuidance,
    GAINGuidance,
    GradCAMGuidance,
    RRRGuidance,
    get_term,
)
from agkit.method.camnet import CAMNet, CAMOutput, pool_cams
from agkit.method.loss import attention_guidance_loss
from agkit.method.train import fit, training_step


class Pixels(nn.Module):
    """A backbone that passes the image through: the CAM is a 1x1 convolution of the pixels."""

    out_channels = 1

    def forward(self, x):
        return x


class SmoothConv(nn.Module):
    """One strided 3x3 convolution and a tanh: smooth, so gradcheck sees no kinks."""

    out_channels = 3

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, 2, 1)

    def forward(self, x):
        return torch.tanh(self.conv(x))


def pixel_model(pooling="avg"):
    """CAMNet on raw pixels with classifier z_0 = pool(x), z_1 = 0 (hand-computable)."""
    model = CAMNet("tiny", num_classes=2, in_channels=1, pooling=pooling)
    model.backbone = Pixels()
    model.classifier = nn.Linear(1, 2)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor([[1.0], [0.0]]))
        model.classifier.bias.zero_()
    return model.double().eval()


def smooth_model(pooling="avg", classes=3, seed=0):
    torch.manual_seed(seed)
    model = CAMNet("tiny", num_classes=classes, in_channels=1, pooling=pooling)
    model.backbone = SmoothConv()
    model.classifier = nn.Linear(3, classes)
    return model.double().eval()


def one_pixel(row, col, size=4):
    region = torch.zeros(1, 1, size, size, dtype=torch.float64)
    region[0, 0, row, col] = 1.0
    return region


YES = torch.tensor([True])


# ------------------------------------------------------------------ values by hand


def test_cam_term_is_log_of_positions_for_flat_maps():
    cams = torch.zeros(1, 2, 2, 2, dtype=torch.float64)  # uniform softmax: 1/4 per cell
    out = CAMOutput(cams.sum((2, 3)), cams)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    mask[0, 0, :2, :2] = 1.0
    value = CAMGuidance()(None, None, torch.tensor([0]), mask, YES, out, None)
    assert value.item() == pytest.approx(math.log(4))
    # an image flagged as unannotated adds nothing
    none = CAMGuidance()(None, None, torch.tensor([0]), mask, torch.tensor([False]), out, None)
    assert none.item() == 0.0


def test_forbidden_term_counts_the_covered_share_of_a_cell():
    cams = torch.zeros(1, 2, 2, 2, dtype=torch.float64)  # each cell: 1/4 of the attention
    out = CAMOutput(cams.sum((2, 3)), cams)
    # one pixel of a 4 x 4 image covers a quarter of one 2 x 2 cell: mass = 1/4 * 1/4
    value = ForbiddenGuidance()(None, None, torch.tensor([0]), None, YES, out, one_pixel(0, 0))
    assert value.item() == pytest.approx(-math.log(1 - 1 / 16))
    both = ForbiddenGuidance(with_positive=True)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    mask[0, 0, 2:, 2:] = 1.0
    value = both(None, None, torch.tensor([0]), mask, YES, out, one_pixel(0, 0))
    assert value.item() == pytest.approx(-math.log(15 / 16) + math.log(4))


def test_forbidden_term_stays_finite_when_the_region_is_everything():
    cams = torch.randn(2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    out = CAMOutput(cams.sum((2, 3)), cams)
    value = ForbiddenGuidance()(
        None, None, None, None, None, out, torch.ones(2, 1, 4, 4, dtype=torch.float64)
    )
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(cams.grad).all()


def test_rrr_is_the_squared_input_gradient_on_the_forbidden_pixels():
    model = pixel_model()
    images = torch.tensor([[[[2.0, 2.0], [0.0, 0.0]]]], dtype=torch.float64, requires_grad=True)
    out = model(images)  # z_0 = mean(x) = 1, z_1 = 0
    value = RRRGuidance()(model, images, torch.tensor([0]), None, YES, out, one_pixel(0, 1, 2))
    # d/dx (log p_0 + log p_1) = (1 - 2 sigmoid(z_0)) / 4 on every pixel
    expected = ((1 - 2 * torch.sigmoid(torch.tensor(1.0, dtype=torch.float64))) / 4) ** 2
    assert value.item() == pytest.approx(expected.item())


def test_rrr_names_the_fix_when_images_do_not_require_grad():
    model = pixel_model()
    images = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="requires_grad_"):
        RRRGuidance()(
            model, images, torch.tensor([0]), None, YES, model(images), one_pixel(0, 0, 2)
        )


def test_gradcam_of_a_camnet_is_its_relu_cam_over_the_cell_count():
    model = pixel_model()
    images = torch.tensor([[[[3.0, 1.0], [0.0, -2.0]]]], dtype=torch.float64)
    maps = guidance.gradcam(model, model(images), torch.tensor([0]))
    assert torch.allclose(maps, F.relu(images) / 4)
    value = GradCAMGuidance()(
        model, images, torch.tensor([0]), one_pixel(0, 0, 2), YES, model(images), None
    )
    # G = (3, 1, 0, 0) / 4 plus the floor d = 0.1 * mean |(3, 1, 0, -2) / 4| on every cell
    floor = 0.1 * 6 / 16
    assert value.item() == pytest.approx((1 / 4 + 3 * floor) / (1 + 4 * floor))


@pytest.mark.parametrize("pooling", ["avg", "softmax"])
def test_gradcam_matches_grad_cam_taken_at_the_features(pooling):
    model = smooth_model(pooling)
    images = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1])
    ours = guidance.gradcam(model, model(images), labels)
    # textbook Grad-CAM: gradients of the class score with respect to the kept features
    features = model.features(images)
    logits = pool_cams(model.cams_from_features(features), pooling)
    (grads,) = torch.autograd.grad(logits.gather(1, labels[:, None]).sum(), features)
    reference = F.relu((grads.mean((2, 3), keepdim=True) * features).sum(1, keepdim=True))
    assert torch.allclose(ours, reference)


def test_gain_scores_the_erased_image():
    model = pixel_model()
    images = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    labels = torch.tensor([0])
    # CAM of class 0 = the image, already in [0, 1]; T = sigmoid(10 (A - 0.5))
    kept = 1 - torch.sigmoid(torch.tensor(5.0, dtype=torch.float64))
    score = kept / 4  # avg pooling of the erased image
    expected = torch.sigmoid(score).item()
    term = GAINGuidance()
    value = term(model, images, labels, None, YES, model(images), None)
    assert value.item() == pytest.approx(expected)
    assert term(
        model, images, labels, one_pixel(0, 0, 2), YES, model(images), None
    ).item() == pytest.approx(expected)  # the map equals the mask: no supervision error
    # mask on the other pixel: (1 - 0)^2 + (0 - 1)^2 over 4 pixels = 0.5
    assert term(
        model, images, labels, one_pixel(0, 1, 2), YES, model(images), None
    ).item() == pytest.approx(expected + 0.5)


@pytest.mark.parametrize("name", ["cam", "forbidden", "forbidden+cam", "rrr", "gradcam", "gain"])
def test_a_batch_without_annotation_gives_zero_and_zero_gradients(name):
    model = smooth_model()
    images = torch.rand(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    term = get_term(name)
    empty = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    value = term(
        model,
        images,
        torch.tensor([0, 1]),
        empty,
        torch.tensor([False, False]),
        model(images),
        empty,
    )
    if name == "gain":  # attention mining needs no annotation: it always has a value
        assert torch.isfinite(value) and 0 < value.item() < 1
        return
    value.backward()
    assert value.item() == 0.0
    assert all(p.grad is None or (p.grad == 0).all() for p in model.parameters())


# ------------------------------------------------------------------ gradients


def _masks():
    masks = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    masks[0, 0, 2:6, 2:6] = 1.0
    masks[1, 0, 4:, :5] = 1.0
    forbidden = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    forbidden[:, 0, :3, 5:] = 1.0
    return masks, forbidden


@pytest.mark.parametrize(
    "name,pooling",
    [
        ("cam", "softmax"),
        ("forbidden", "softmax"),
        ("forbidden+cam", "softmax"),
        ("rrr", "avg"),
        ("gradcam", "avg"),
        ("gradcam", "softmax"),
        ("gain", "avg"),
    ],
)
def test_gradient_matches_finite_differences(name, pooling):
    model = smooth_model(pooling)
    term = get_term(name)
    masks, forbidden = _masks()
    labels, has_mask = torch.tensor([0, 2]), torch.tensor([True, True])
    torch.manual_seed(1)
    images = torch.rand(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    weight = model.classifier.weight.detach().clone().requires_grad_(True)

    def through_images_and_weight(images, weight):
        # the classifier weight enters through a functional call so gradcheck can perturb it
        out = torch.func.functional_call(model, {"classifier.weight": weight}, (images,))
        return term(FunctionalModel(model, weight), images, labels, masks, has_mask, out, forbidden)

    assert torch.autograd.gradcheck(through_images_and_weight, (images, weight))


class FunctionalModel(nn.Module):
    """``model`` with its classifier weight replaced by a tensor (for gradcheck)."""

    def __init__(self, model, weight):
        super().__init__()
        self.model, self.weight = model, weight
        self.classifier = model.classifier

    def forward(self, x):
        return torch.func.functional_call(self.model, {"classifier.weight": self.weight}, (x,))


# ------------------------------------------------------------------ malformed masks

# Each term with the argument(s) it reads: the bad tensor is passed there, the other is None.
USES = [
    ("cam", "masks"),
    ("forbidden", "forbidden"),
    ("forbidden+cam", "masks"),
    ("forbidden+cam", "forbidden"),
    ("rrr", "forbidden"),
    ("gradcam", "masks"),
    ("gradcam", "forbidden"),
    ("gain", "masks"),
]


def _aligned_masks(size=8):
    """Two block-aligned 0/1 masks on 8 x 8 images (4 x 4 grid of the smooth model)."""
    half = torch.zeros(2, 1, size // 2, size // 2, dtype=torch.float64)
    half[0, 0, 1:3, 1:3] = 1.0
    half[1, 0, 2:, :2] = 1.0
    full = half.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return full, half


def _call(name, arg, region, seed=1):
    """The term ``name`` on two 8 x 8 images with ``region`` passed as ``arg``."""
    model = smooth_model(get_term(name).pooling)
    torch.manual_seed(seed)
    images = torch.rand(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    masks, forbidden = (region, None) if arg == "masks" else (None, region)
    has_mask = torch.tensor([True, True])
    out = model(images)
    return get_term(name)(model, images, torch.tensor([0, 2]), masks, has_mask, out, forbidden)


def _refusal(name, arg, bad, kind=ValueError):
    """The term's error message on ``bad``; for "masks" it must be the CAM loss's own."""
    with pytest.raises(kind) as error:
        _call(name, arg, bad)
    message = str(error.value)
    assert message.startswith(arg) or f" {arg} " in message, message
    if arg == "masks":  # the paper's loss refuses the same masks with the same words
        with pytest.raises(kind) as cam_error:
            attention_guidance_loss(torch.zeros(2, 3, 4, 4, dtype=torch.float64), bad)
        assert message == str(cam_error.value)
    return message


@pytest.mark.parametrize("name,arg", USES)
def test_every_term_refuses_masks_holding_nan_or_inf(name, arg):
    """Before: forbidden dropped the image, rrr and gain gave a NaN loss, gradcam NaN grads."""
    for value in (float("nan"), float("inf")):
        bad = _aligned_masks()[0]
        bad[1, 0, 0, 0] = value
        message = _refusal(name, arg, bad)
        assert "NaN or inf" in message and "image(s) 1" in message


@pytest.mark.parametrize("name,arg", USES)
def test_every_term_refuses_0_255_masks(name, arg):
    """Before: forbidden switched off, rrr grew 65,025-fold, gain about 7,700-fold."""
    message = _refusal(name, arg, 255 * _aligned_masks()[0])
    assert "must be 0 or 1" in message and "from 0 to 255" in message
    assert "(mask > 0.5).float()" in message
    _refusal(name, arg, _aligned_masks()[0].to(torch.uint8) * 255)
    _refusal(name, arg, 0.5 * _aligned_masks()[0])  # soft masks too


@pytest.mark.parametrize("name,arg", USES)
def test_every_term_refuses_masks_without_a_channel_dimension(name, arg):
    """Before: B x H x W masks broadcast to B x B x H x W; rrr and gradcam came out B times
    too large."""
    message = _refusal(name, arg, _aligned_masks()[0][:, 0])
    assert "B x 1 x H x W, got (2, 8, 8)" in message and f"{arg}[:, None]" in message
    _refusal(name, arg, _aligned_masks()[0][:1])  # one mask for two images
    assert "one mask per image" in _refusal(name, arg, _aligned_masks()[0][:1])


@pytest.mark.parametrize("name,arg", USES)
def test_every_term_resamples_masks_at_half_the_image_size(name, arg):
    """As the CAM loss does, every term accepts a mask at any size down to the CAM grid;
    at half the image's size it gives what the same mask at full size gives (before: a raw
    RuntimeError from rrr and gain)."""
    full, half = _aligned_masks()
    value = _call(name, arg, half)
    assert value.item() > 0
    assert value.item() == pytest.approx(_call(name, arg, full).item(), rel=1e-12)
    # below the 4 x 4 CAM grid a mask would lose cells: refused, as by the CAM loss
    message = _refusal(name, arg, full[:, :, ::4, ::4])
    assert "at least the CAM size 4 x 4; got 2 x 2" in message


@pytest.mark.parametrize("name,arg", USES)
def test_every_term_takes_bool_integer_and_float_masks_alike(name, arg):
    full = _aligned_masks()[0]
    expected = _call(name, arg, full).item()
    for dtype in (torch.bool, torch.uint8, torch.int64, torch.float32):
        assert _call(name, arg, full.to(dtype)).item() == pytest.approx(expected, rel=1e-6)
    _refusal(name, arg, full.numpy(), kind=TypeError)


# ------------------------------------------------------------------ registry


def test_get_term_by_name_by_callable_and_an_unknown_name():
    assert isinstance(get_term("rrr"), RRRGuidance) and get_term("rrr").needs_input_grad
    assert get_term("forbidden+cam").with_positive
    assert get_term("gain", omega=5.0).omega == 5.0

    def mine(model, images, labels, masks, has_mask, out, forbidden):
        return out.logits.sum() * 0

    assert get_term(mine) is mine
    with pytest.raises(ValueError, match="choose one of cam, forbidden"):
        get_term("hint")


# ------------------------------------------------------------------ training with a term


def _synthfrac_batch(n=32, size=32):
    data = make_synthfrac(n, size=size, seed=3, split="train")
    forbidden = synthfrac_marker_masks(data)
    return data.images, data.labels, data.masks, data.masks.flatten(1).amax(1) > 0, forbidden


@pytest.mark.parametrize("name", ["cam", "forbidden", "rrr", "gradcam", "gain"])
def test_training_with_the_term_keeps_it_lower_than_training_without(name):
    """A minimal training step, ``ce + lam * term``, against the same steps with lam = 0."""
    batch = _synthfrac_batch()
    term = get_term(name)

    def trained_value(lam):
        torch.manual_seed(0)
        model = CAMNet("tiny", num_classes=2, in_channels=1, pooling=term.pooling)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(12):
            model.train()
            training_step(model, batch, optimizer, lam=lam, guidance=term)
        images, labels, masks, has_mask, forbidden = batch
        images = images.clone().requires_grad_(term.needs_input_grad)
        model.eval()
        return term(model, images, labels, masks, has_mask, model(images), forbidden).item()

    assert trained_value(10.0) < 0.95 * trained_value(0.0)


def test_fit_trains_with_a_guidance_term_given_by_name():
    images, labels, masks, has_mask, forbidden = _synthfrac_batch(16)
    loader = zoo.loader(images, labels, masks, has_mask, forbidden, batch_size=8)
    model = CAMNet("tiny", num_classes=2, in_channels=1)
    history = fit(model, loader, lam=10.0, epochs=1, guidance="rrr", progress=False, device="cpu")
    assert len(history) == 1 and history["loss"].notna().all()


# ------------------------------------------------------------------ the zoo's runner


def test_zoo_summary_means_spreads_and_step_ratio_by_hand():
    import pandas as pd

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
    assert summary.loc["rrr", "step_ratio"] == pytest.approx(3.0)


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

    first = zoo.fingerprint()
    assert zoo.fingerprint() == first and len(first) == 12
    package = tmp_path / "agkit"
    shutil.copytree(experiments.PACKAGE_ROOT, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(experiments, "PACKAGE_ROOT", package)
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

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "guidance_zoo.py"
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
    grid = list(zoo.LAMBDA_GRIDS["decoy_mnist"]["rrr"])
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
    lams = zoo.LAMBDA_GRIDS["synthfrac"]
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
    import pandas as pd

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
        return zoo.SmallConvNet(coordinates=coordinates).eval()(image).detach()

    plain = features(False)
    torch.testing.assert_close(plain[1, :, 3:6, 3:6], plain[0, :, 2:5, 2:5])
    placed = features(True)
    assert not torch.allclose(placed[1, :, 3:6, 3:6], placed[0, :, 2:5, 2:5], atol=1e-3)
    assert zoo.digit_model("softmax")(image).cams.shape == (2, 10, 7, 7)


def test_a_digit_backbone_cell_sees_25_by_25_pixels_nearly_the_whole_digit():
    torch.manual_seed(0)
    net = zoo.SmallConvNet(coordinates=False).eval()
    image = torch.rand(1, 1, 28, 28, requires_grad=True)
    net(image)[0, :, 3, 3].sum().backward()  # the centre cell of the 7 x 7 grid
    rows, cols = (image.grad[0, 0] != 0).nonzero().unbind(1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 24, 0, 24)
    with pytest.raises(ValueError, match="one stride per width"):
        zoo.SmallConvNet(widths=(8, 16), strides=(1,))


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
    """The baseline step must not measure the attention loss (the course's fit does, for its
    plots), or the step-time ratios would flatter every term; its weights stay fit's."""
    images, labels, masks, has_mask, forbidden = _synthfrac_batch(16)
    batches = zoo.loader(images, labels, masks, has_mask, forbidden, batch_size=8)
    torch.manual_seed(0)
    run = zoo.train(CAMNet("tiny", 2, 1), batches, "baseline", 5.0, epochs=1, lr=1e-3, seed=0)
    torch.manual_seed(0)
    reference = CAMNet("tiny", 2, 1)
    history = fit(reference, batches, epochs=1, lr=1e-3, seed=0, progress=False, device="cpu")
    assert run.lam == 0.0 and history["att"].notna().all()  # fit monitors the attention loss
    for a, b in zip(run.model.state_dict().values(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    lam, term = zoo.step_settings("baseline", 5.0)
    model = CAMNet("tiny", 2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    out = training_step(model, (images, labels, masks, has_mask), optimizer, lam=lam, guidance=term)
    assert lam == 0.0 and math.isnan(out["att"])  # the term is never called
