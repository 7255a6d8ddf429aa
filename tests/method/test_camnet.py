"""CAMNet: the CAM is the classifier applied per position, and pooling is what it says."""

from urllib.error import URLError

import pytest
import torch
import torch.nn.functional as F

import agkit
from agkit.method.backbones import build_backbone, list_backbones
from agkit.method.camnet import CAMNet


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
    expected = (
        torch.einsum("nk,bkij->bnij", model.classifier.weight, features)
        + model.classifier.bias[None, :, None, None]
    )
    torch.testing.assert_close(model(x).cams, expected, rtol=0, atol=1e-12)


def test_softmax_pooling_matches_its_definition():
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax").double().eval()
    out = model(torch.rand(2, 1, 64, 64, dtype=torch.float64))
    m = out.cams.flatten(2)
    a = torch.exp(m) / torch.exp(m).sum(dim=2, keepdim=True)
    torch.testing.assert_close(out.logits, (a * m).sum(dim=2), rtol=0, atol=1e-12)


BACKBONES = [  # name, K, input size
    ("resnet18", 512, 64),
    ("densenet121", 1024, 64),
    ("efficientnet_b0", 1280, 64),
    ("convnext_tiny", 768, 64),
    ("timm:resnet10t", 512, 64),
]
# One of every other torchvision family: cut by a global pool found in the graph (swin
# permutes, mnasnet and shufflenet take a mean, googlenet concatenates) or at `features`
# (vgg, squeezenet, whose global pool pools class scores).
MORE_BACKBONES = [
    ("swin_t", 768, 64),
    ("vgg11", 512, 64),
    ("mobilenet_v3_small", 576, 64),
    ("squeezenet1_0", 512, 64),
    ("googlenet", 1024, 64),
    ("inception_v3", 2048, 160),
    ("regnet_x_400mf", 400, 64),
    ("shufflenet_v2_x0_5", 1024, 64),
    ("mnasnet0_5", 1280, 64),
    ("maxvit_t", 512, 224),
    ("resnext50_32x4d", 2048, 64),
    ("efficientnet_v2_s", 1280, 64),
]
BACKBONE_CASES = BACKBONES + [
    pytest.param(*case, marks=pytest.mark.slow) for case in MORE_BACKBONES
]


@pytest.mark.parametrize("name, channels, size", BACKBONE_CASES)
def test_backbones_by_name_give_cams_and_avg_pooling_is_fc_of_gap(name, channels, size):
    if name.startswith("timm:"):
        pytest.importorskip("timm")
    torch.manual_seed(0)
    model = CAMNet(name, 3, in_channels=1, pooling="avg").eval()
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        out = model(x)
        features = model.features(x)
        expected = model.classifier(features.mean(dim=(2, 3)))
    assert model.backbone.out_channels == channels == features.shape[1]
    assert out.cams.shape == (2, 3, *features.shape[-2:]) and out.cams.shape[-1] >= 2
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)


def test_list_backbones_names_what_build_backbone_accepts():
    names = list_backbones()
    assert names == agkit.list_backbones()
    assert {
        "tiny",
        "resnet18",
        "resnet50",
        "densenet121",
        "efficientnet_b0",
        "convnext_tiny",
    } <= set(names)
    assert not any(n.startswith("vit_") for n in names)  # a class token, not a feature map
    densenets = list_backbones("densenet*")
    assert [n for n in densenets if ":" not in n] == [
        "densenet121",
        "densenet161",
        "densenet169",
        "densenet201",
    ]
    assert all(n.removeprefix("timm:").startswith("densenet") for n in densenets)
    assert "tiny" not in list_backbones(pretrained=True)


def test_torchvision_backbone_cuts_where_the_network_pools():
    """resnet18's features are its layer4 output: the network's own logits are fc(GAP(F))."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    backbone = build_backbone("resnet18", in_channels=3).eval()
    backbone.body.load_state_dict(reference.state_dict(), strict=False)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x)
        logits = reference.fc(backbone(x).mean(dim=(2, 3)))
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_resnet18_grayscale_sums_pretrained_rgb_filters(monkeypatch):
    import torchvision

    reference = torchvision.models.resnet18().state_dict()
    monkeypatch.setattr(
        "torchvision.models._api.load_state_dict_from_url", lambda *a, **k: reference
    )
    model = CAMNet("resnet18", 2, in_channels=1, pretrained=True)
    torch.testing.assert_close(
        model.backbone.body.conv1.weight, reference["conv1.weight"].sum(1, keepdim=True)
    )
    assert model(torch.rand(1, 1, 64, 64)).cams.shape == (1, 2, 2, 2)


@pytest.mark.parametrize(
    "error",
    [
        URLError("[Errno -3] Temporary failure in name resolution"),
        OSError("Network is unreachable"),
    ],
)
@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_pretrained_offline_fails_with_one_clear_sentence(monkeypatch, name, error):
    def offline(*args, **kwargs):
        raise error

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="use pretrained=False") as info:
        CAMNet(name, 2, pretrained=True)
    assert info.value.__suppress_context__  # no chained network traceback
    assert str(info.value).count(". ") == 0  # one sentence


def test_timm_pretrained_offline_fails_with_one_clear_sentence(monkeypatch):
    pytest.importorskip("timm")

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr("timm.models._builder.load_pretrained", offline)
    with pytest.raises(RuntimeError, match="use pretrained=False") as info:
        CAMNet("timm:resnet10t", 2, pretrained=True)
    assert info.value.__suppress_context__


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backbone": "vgg"}, "unknown backbone"),
        ({"backbone": "vit_b_16"}, "unknown backbone"),
        ({"pooling": "max"}, "unknown pooling"),
        ({"num_classes": 1}, "at least 2"),
        ({"num_classes": 2.5}, "num_classes must be a whole number, got 2.5"),
        ({"backbone": "tiny", "pretrained": True}, "no pretrained weights"),
    ],
)
def test_bad_construction_is_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CAMNet(**{"backbone": "tiny", "num_classes": 2, **kwargs})


def test_wrong_image_shape_is_explained():
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        CAMNet("tiny", 2)(torch.rand(1, 64, 64))
