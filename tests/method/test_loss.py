"""The attention-guidance loss against hand computations (docs/method.md, the loss)."""

import math

import pytest
import torch

from agkit.method.loss import attention_guidance_loss, attention_loss_floor, shrink_masks
from agkit.method.metrics import mass_in_mask


def example():
    """One image, two classes, a 2 x 2 CAM grid, a 4 x 4 input mask.

    Class 0's map is log([1, 2; 3, 4]) so its softmax is [.1 .2; .3 .4]; class 1's map is
    flat so its softmax is .25 everywhere. The mask covers the top-left and bottom-right
    2 x 2 blocks, which nearest-neighbour resizing maps to grid cells (0,0) and (1,1).
    """
    cams = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    cams[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64).log()
    masks = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    masks[0, 0, :2, :2] = 1
    masks[0, 0, 2:, 2:] = 1
    return cams, masks


def test_loss_equals_hand_computation():
    cams, masks = example()
    expected = -(math.log(0.1) + math.log(0.4) + 2 * math.log(0.25)) / 4
    assert attention_guidance_loss(cams, masks).item() == pytest.approx(expected, abs=1e-12)


def test_label_class_uses_only_the_true_class():
    cams, masks = example()
    expected = -(math.log(0.1) + math.log(0.4)) / 2
    loss = attention_guidance_loss(cams, masks, class_maps="label", labels=torch.tensor([0]))
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss = attention_guidance_loss(cams, masks, class_maps="label", labels=torch.tensor([1]))
    assert loss.item() == pytest.approx(-math.log(0.25), abs=1e-12)


def test_unannotated_images_add_nothing():
    cams, masks = example()
    alone = attention_guidance_loss(cams, masks)
    other = torch.randn(1, 2, 2, 2, dtype=torch.float64) * 5
    batch = attention_guidance_loss(
        torch.cat([cams, other]), torch.cat([masks, torch.zeros_like(masks)])
    )
    assert batch.item() == pytest.approx(alone.item(), abs=1e-12)


def test_batch_without_masks_gives_zero_with_grad():
    cams = torch.randn(3, 2, 8, 8, requires_grad=True)
    loss = attention_guidance_loss(cams, torch.zeros(3, 1, 64, 64))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(cams.grad, torch.zeros_like(cams))


def test_input_and_feature_resolution_agree_when_cam_is_at_input_size():
    torch.manual_seed(0)
    cams = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    masks = (torch.rand(2, 1, 16, 16) > 0.6).double()
    feature = attention_guidance_loss(cams, masks, resolution="feature")
    inputs = attention_guidance_loss(cams, masks, resolution="input")
    assert inputs.item() == pytest.approx(feature.item(), abs=1e-10)


def test_input_resolution_matches_bicubic_definition():
    torch.manual_seed(1)
    cams = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    masks = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    masks[0, 0, 3:9, 5:12] = 1
    up = torch.nn.functional.interpolate(cams, size=(16, 16), mode="bicubic", align_corners=False)
    log_a = up.flatten(2).log_softmax(2)
    expected = -(log_a * masks.flatten(2)).sum() / (masks.sum() * 2)
    loss = attention_guidance_loss(cams, masks, resolution="input")
    assert loss.item() == pytest.approx(expected.item(), abs=1e-12)


def test_gradient_moves_cam_mass_into_the_mask():
    torch.manual_seed(0)
    cams = torch.randn(4, 2, 8, 8, requires_grad=True)
    masks = torch.zeros(4, 1, 64, 64)
    masks[:, :, 8:32, 16:48] = 1
    labels = torch.zeros(4, dtype=torch.long)
    before = mass_in_mask(cams.detach(), masks, labels).mean().item()
    optimiser = torch.optim.Adam([cams], lr=0.3)
    for _ in range(40):
        optimiser.zero_grad()
        attention_guidance_loss(cams, masks).backward()
        optimiser.step()
    after = mass_in_mask(cams.detach(), masks, labels).mean().item()
    assert before < 0.3 and after > 0.9


@pytest.mark.parametrize(
    "cams, masks, kwargs, message",
    [
        (torch.zeros(2, 2, 8, 8), torch.zeros(2, 1, 4, 4), {}, "input resolution"),
        (torch.zeros(2, 2, 8, 8), torch.zeros(3, 1, 64, 64), {}, "one mask per image"),
        (torch.zeros(2, 2, 8, 8), torch.full((2, 1, 64, 64), 0.5), {}, "0 or 1"),
        (torch.zeros(2, 2, 8, 8), torch.zeros(2, 64, 64), {}, r"B x 1 x H x W.*masks\[:, None\]"),
        (torch.zeros(2, 2, 8, 8), torch.full((2, 1, 64, 64), float("nan")), {}, "NaN or inf"),
        (torch.zeros(2, 2, 8, 8), torch.full((2, 1, 64, 64), 255.0), {}, "from 255 to 255"),
        (torch.zeros(2, 8, 8), torch.zeros(2, 1, 64, 64), {}, "B x N x h x w"),
        (torch.full((2, 2, 8, 8), float("nan")), torch.zeros(2, 1, 64, 64), {}, "NaN"),
        (torch.full((2, 2, 8, 8), float("inf")), torch.zeros(2, 1, 64, 64), {}, "inf"),
        (
            torch.zeros(2, 2, 8, 8),
            torch.zeros(2, 1, 64, 64),
            {"class_maps": "label", "labels": torch.tensor([0, 2])},
            r"\[0, 2\)",
        ),
        (
            torch.zeros(2, 2, 8, 8),
            torch.zeros(2, 1, 64, 64),
            {"class_maps": "label"},
            "needs labels",
        ),
        (
            torch.zeros(2, 2, 8, 8),
            torch.zeros(2, 1, 64, 64),
            {"resolution": "pixel"},
            "unknown resolution",
        ),
    ],
)
def test_bad_input_gives_clear_error(cams, masks, kwargs, message):
    with pytest.raises(ValueError, match=message):
        attention_guidance_loss(cams, masks, **kwargs)


def test_masks_that_are_not_a_tensor_are_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"torch.as_tensor"):
        attention_guidance_loss(torch.zeros(2, 2, 8, 8), torch.zeros(2, 1, 64, 64).numpy())


def test_half_precision_cams_at_input_resolution_give_a_finite_loss_and_gradient():
    """fp16 CAMs upsampled to 256 x 256 used to overflow to NaN with zero gradient."""
    torch.manual_seed(0)
    cams = (torch.randn(2, 2, 8, 8) * 30).half().requires_grad_(True)
    masks = torch.zeros(2, 1, 256, 256, dtype=torch.half)
    masks[:, :, 40:120, 60:200] = 1
    loss = attention_guidance_loss(cams, masks, resolution="input")
    reference = attention_guidance_loss(cams.detach().double(), masks.double(), resolution="input")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-3)
    loss.backward()
    assert torch.isfinite(cams.grad).all() and cams.grad.abs().sum() > 0


def test_small_mask_does_not_vanish_on_the_cam_grid():
    """A 5 x 5 box on a 64 px image at stride 8 touches cells and must count as annotated."""
    cams = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    cams[0, :, 1, 1] = 2.0  # the cell under the box holds more attention than the others
    masks = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    masks[0, 0, 10:15, 10:15] = 1  # inside cell (1, 1), away from its top-left pixel
    assert torch.nn.functional.interpolate(masks, size=(8, 8), mode="nearest").sum() == 0
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 63))
    assert attention_guidance_loss(cams, masks).item() == pytest.approx(expected, abs=1e-12)


def test_shrinking_equals_nearest_resize_on_grid_aligned_masks():
    g = torch.Generator().manual_seed(0)
    cells = (torch.rand(5, 1, 8, 8, generator=g) > 0.6).float()
    masks = cells.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)  # 64 x 64, aligned
    nearest = torch.nn.functional.interpolate(masks, size=(8, 8), mode="nearest")
    assert torch.equal(shrink_masks(masks, (8, 8)), nearest)
    assert torch.equal(shrink_masks(masks, (8, 8)), cells)


def test_shrinking_marks_every_cell_a_mask_touches():
    masks = torch.zeros(1, 1, 16, 16)
    masks[0, 0, 1:3, 7:10] = 1  # rows in cell 0, columns across cells 1 and 2 (stride 4)
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 0, 1:3] = 1
    assert torch.equal(shrink_masks(masks, (4, 4)), expected)


def test_attention_loss_floor_matches_hand_computation():
    """Two images with masks of 2 and 6 cells, one without: (2 log 2 + 6 log 6) / 8."""
    masks = torch.zeros(3, 1, 16, 16)
    masks[0, 0, 0:4, 0:8] = 1  # 1 x 2 cells on a 4 x 4 grid (stride 4)
    masks[1, 0, 4:12, 4:16] = 1  # 2 x 3 cells
    expected = (2 * math.log(2) + 6 * math.log(6)) / 8
    assert attention_loss_floor(masks, (4, 4)) == pytest.approx(expected, abs=1e-12)
    assert attention_loss_floor(torch.zeros(2, 1, 16, 16), (4, 4)) == 0.0


def test_loss_approaches_its_floor_and_never_goes_below():
    masks = torch.zeros(2, 1, 16, 16)
    masks[0, 0, 0:4, 0:8] = 1
    masks[1, 0, 4:12, 4:16] = 1
    grid = shrink_masks(masks, (4, 4))
    floor = attention_loss_floor(masks, (4, 4))
    # CAMs that are very high on the mask cells and flat there: A = 1/|S| on the mask.
    best = (grid * 50.0).expand(-1, 3, -1, -1).double()
    assert attention_guidance_loss(best, masks.double()).item() == pytest.approx(floor, abs=1e-9)
    for seed in range(5):
        cams = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 3
        assert attention_guidance_loss(cams, masks).item() > floor


def test_mass_in_mask_sees_a_small_mask_on_the_same_grid_as_the_loss():
    cams = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    cams[0, :, 1, 1] = 2.0
    masks = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    masks[0, 0, 10:15, 10:15] = 1  # inside cell (1, 1) only
    expected = math.exp(2.0) / (math.exp(2.0) + 63)
    mass = mass_in_mask(cams, masks, torch.tensor([0]))
    assert mass.item() == pytest.approx(expected, abs=1e-12)
