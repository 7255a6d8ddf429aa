"""The attention-guidance loss against hand computations (method.md, step 3)."""

import math

import pytest
import torch

from agkit.losses import attention_guidance_loss
from agkit.metrics import mass_in_mask


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


def test_target_channel_uses_only_the_true_class():
    cams, masks = example()
    expected = -(math.log(0.1) + math.log(0.4)) / 2
    loss = attention_guidance_loss(cams, masks, channels="target", targets=torch.tensor([0]))
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss = attention_guidance_loss(cams, masks, channels="target", targets=torch.tensor([1]))
    assert loss.item() == pytest.approx(-math.log(0.25), abs=1e-12)


def test_unannotated_images_add_nothing():
    cams, masks = example()
    alone = attention_guidance_loss(cams, masks)
    other = torch.randn(1, 2, 2, 2, dtype=torch.float64) * 5
    batch = attention_guidance_loss(torch.cat([cams, other]), torch.cat([masks, torch.zeros_like(masks)]))
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
    assert attention_guidance_loss(cams, masks, resolution="input").item() == pytest.approx(expected.item(), abs=1e-12)


def test_gradient_moves_cam_mass_into_the_mask():
    torch.manual_seed(0)
    cams = torch.randn(4, 2, 8, 8, requires_grad=True)
    masks = torch.zeros(4, 1, 64, 64)
    masks[:, :, 8:32, 16:48] = 1
    classes = torch.zeros(4, dtype=torch.long)
    before = mass_in_mask(cams.detach(), masks, classes).mean().item()
    optimiser = torch.optim.Adam([cams], lr=0.3)
    for _ in range(40):
        optimiser.zero_grad()
        attention_guidance_loss(cams, masks).backward()
        optimiser.step()
    after = mass_in_mask(cams.detach(), masks, classes).mean().item()
    assert before < 0.3 and after > 0.9


@pytest.mark.parametrize(
    "cams, masks, kwargs, message",
    [
        (torch.zeros(2, 2, 8, 8), torch.zeros(2, 1, 4, 4), {}, "input resolution"),
        (torch.zeros(2, 2, 8, 8), torch.zeros(3, 1, 64, 64), {}, "one mask per image"),
        (torch.zeros(2, 2, 8, 8), torch.full((2, 1, 64, 64), 0.5), {}, "0 or 1"),
        (torch.zeros(2, 2, 8, 8), torch.zeros(2, 64, 64), {}, "B x 1 x H x W"),
        (torch.zeros(2, 8, 8), torch.zeros(2, 1, 64, 64), {}, "B x N x h x w"),
        (torch.full((2, 2, 8, 8), float("nan")), torch.zeros(2, 1, 64, 64), {}, "NaN"),
        (torch.zeros(2, 2, 8, 8), torch.zeros(2, 1, 64, 64), {"channels": "target", "targets": torch.tensor([0, 2])}, r"\[0, 2\)"),
        (torch.zeros(2, 2, 8, 8), torch.zeros(2, 1, 64, 64), {"channels": "target"}, "needs targets"),
        (torch.zeros(2, 2, 8, 8), torch.zeros(2, 1, 64, 64), {"resolution": "pixel"}, "unknown resolution"),
    ],
)
def test_bad_input_gives_clear_error(cams, masks, kwargs, message):
    with pytest.raises(ValueError, match=message):
        attention_guidance_loss(cams, masks, **kwargs)
