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
    history = fit(model, loader, lam=10.0, epochs=1, guidance="rrr", device="cpu", callbacks=[])
    assert len(history) == 1 and history["loss"].notna().all()
