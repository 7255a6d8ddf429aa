"""CAMNet: the CAM is the classifier applied per position, and pooling is what it says."""

from urllib.error import URLError

import pytest
import torch
import torch.nn.functional as F

from agkit.models import CAMNet


def test_tiny_backbone_gives_8x8_cams_on_64px():
    out = CAMNet("tiny", num_classes=3)(torch.rand(2, 1, 64, 64))
    assert out.logits.shape == (2, 3) and out.cams.shape == (2, 3, 8, 8)


def test_avg_pooling_is_exactly_fc_of_gap():
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="avg").double().eval()
    x = torch.rand(3, 1, 64, 64, dtype=torch.float64)
    features = model.features(x)
    expected = model.classifier(F.adaptive_avg_pool2d(features, 1).flatten(1))
    torch.testing.assert_close(model(x).logits, expected, rtol=0, atol=1e-12)


def test_cam_is_the_classifier_at_every_position():
    torch.manual_seed(0)
    model = CAMNet("tiny", 2).double().eval()
    x = torch.rand(2, 1, 64, 64, dtype=torch.float64)
    features = model.features(x)
    expected = torch.einsum("nk,bkij->bnij", model.classifier.weight, features) + model.classifier.bias[None, :, None, None]
    torch.testing.assert_close(model(x).cams, expected, rtol=0, atol=1e-12)


def test_softmax_pooling_matches_its_definition():
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax").double().eval()
    out = model(torch.rand(2, 1, 64, 64, dtype=torch.float64))
    m = out.cams.flatten(2)
    a = torch.exp(m) / torch.exp(m).sum(dim=2, keepdim=True)
    torch.testing.assert_close(out.logits, (a * m).sum(dim=2), rtol=0, atol=1e-12)


def test_resnet18_grayscale_sums_pretrained_rgb_filters(monkeypatch):
    import torchvision

    reference = torchvision.models.resnet18().state_dict()
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", lambda *a, **k: reference)
    model = CAMNet("resnet18", 2, in_channels=1, pretrained=True)
    torch.testing.assert_close(model.backbone.body[0].weight, reference["conv1.weight"].sum(1, keepdim=True))
    assert model(torch.rand(1, 1, 64, 64)).cams.shape == (1, 2, 2, 2)


def test_pretrained_offline_fails_with_one_clear_sentence(monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="use pretrained=False") as info:
        CAMNet("resnet18", 2, pretrained=True)
    assert info.value.__suppress_context__  # no chained network traceback


@pytest.mark.parametrize("kwargs, message", [
    ({"backbone": "vgg"}, "unknown backbone"),
    ({"pooling": "max"}, "unknown pooling"),
    ({"num_classes": 1}, "at least 2"),
    ({"backbone": "tiny", "pretrained": True}, "no pretrained weights"),
])
def test_bad_construction_is_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CAMNet(**{"backbone": "tiny", "num_classes": 2, **kwargs})


def test_wrong_image_shape_is_explained():
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        CAMNet("tiny", 2)(torch.rand(1, 64, 64))
