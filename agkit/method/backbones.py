"""Backbones by name: image B x C x H x W in [0, 1] -> features B x K x h x w.

A backbone is the part of a classifier before its global pooling. Three sources, tried in
this order for a plain name:

* ``"tiny"`` and ``"digits"``: the small networks of ``agkit.method.small_nets`` (64 px
  radiographs on a laptop CPU; 28 px digits).
* every torchvision classification model whose last stage is a feature map (resnet*,
  densenet*, efficientnet*, convnext*, regnet*, swin*, vgg*, ...; not the vision
  transformers ``vit_*``, which end in a class token). The network is cut where it pools
  globally, with torchvision's feature extraction.
* timm models, when timm is installed (``pip install agkit[timm]``), built with
  ``timm.create_model(name, features_only=True)``. Write ``"timm:NAME"`` to ask for timm
  where torchvision has a model of the same name (``"timm:resnet18"``).

``list_backbones()`` lists the names. Every backbone takes ``in_channels`` input channels:
for one channel (radiographs) the first convolution's pretrained RGB filters are summed
over colour, so a gray image gives the response its RGB copy would. Pretrained backbones
normalise their input with the statistics their weights were trained with.
"""

from __future__ import annotations

import fnmatch
import warnings
from typing import Any
from urllib.error import URLError

import torch
from torch import nn

from agkit.method.small_nets import DigitNet, TinyResNet

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TIMM_PREFIX = "timm:"
#: Module names that hold a classifier head: a global pool inside one of them pools class
#: scores, not features (squeezenet), so such a network is cut at its ``features`` instead.
_HEAD_NAMES = ("fc", "classifier", "head", "heads")
#: the networks trained from scratch, by name (``agkit.method.small_nets``)
SMALL_NETS: dict[str, type[nn.Module]] = {"tiny": TinyResNet, "digits": DigitNet}


# ---------------------------------------------------------------------------------------
# The common wrapper
# ---------------------------------------------------------------------------------------


class Backbone(nn.Module):
    """A feature extractor with input normalisation and a known channel count.

    ``forward`` maps images B x C x H x W in [0, 1] to features B x K x h x w, where
    K = ``out_channels``. ``body`` is the network proper; ``mean``/``std`` (C values each)
    normalise the input first (0 and 1 for networks trained from scratch).
    """

    mean: torch.Tensor  # 1 x C x 1 x 1
    std: torch.Tensor  # 1 x C x 1 x 1

    def __init__(
        self,
        body: nn.Module,
        out_channels: int,
        in_channels: int,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ):
        super().__init__()
        self.body = body
        self.out_channels = out_channels
        mean_t, std_t = torch.zeros(in_channels), torch.ones(in_channels)
        if mean is not None and std is not None:
            mean_t, std_t = torch.tensor(mean), torch.tensor(std)
            if len(mean_t) != in_channels:  # gray input: one value for the average colour
                mean_t = mean_t.mean().repeat(in_channels)
                std_t = std_t.mean().repeat(in_channels)
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body((x - self.mean) / self.std)
        if isinstance(features, dict):  # torchvision's feature extractor returns a dict
            features = features["features"]
        elif isinstance(features, (list, tuple)):  # timm's features_only returns a list
            features = features[-1]
        return features


def adapt_first_conv(conv: nn.Conv2d, in_channels: int, pretrained: bool) -> nn.Conv2d:
    """Replace an RGB first convolution by one taking ``in_channels`` channels.

    For grayscale input the pretrained RGB filters are summed over colour: a gray image
    fed to the summed filter gives the same response as the gray image copied into R, G
    and B fed to the original one.
    """
    if in_channels == conv.in_channels:
        return conv
    # Conv2d stores its sizes as tuple[int, ...]; its constructor's types ask for pairs.
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        conv.dilation,  # type: ignore[arg-type]
        conv.groups,
        bias=conv.bias is not None,
    )
    if pretrained:
        if in_channels != 1:
            raise ValueError(
                f"pretrained weights exist for 1 or 3 input channels, got "
                f"in_channels={in_channels}; use pretrained=False or convert the images to "
                "1 or 3 channels."
            )
        with torch.no_grad():
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)  # type: ignore[union-attr]
    return new


def _offline_error(name: str, error: Exception) -> RuntimeError:
    return RuntimeError(
        f"Could not download the pretrained weights for {name} ({type(error).__name__}: "
        f"{error}); without a network connection use pretrained=False, which needs no "
        "download."
    )


# ---------------------------------------------------------------------------------------
# torchvision
# ---------------------------------------------------------------------------------------


def _torchvision_names() -> list[str]:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    return [name for name in names if not name.startswith("vit_")]


def _global_pool_input(net: nn.Module) -> str | None:
    """The name of the graph node that the network pools globally, or None.

    Traced with the same settings as torchvision's ``create_feature_extractor``, so the
    name can be passed to it. A global pool is an adaptive average pool to 1 x 1 (module
    or function) or a mean over the two spatial dimensions.
    """
    from torchvision.models.feature_extraction import (
        NodePathTracer,
        _set_default_tracer_kwargs,
    )

    tracer = NodePathTracer(**_set_default_tracer_kwargs(None))
    graph = tracer.trace(net.eval())
    for node in graph.nodes:
        if not node.args or not isinstance(node.args[0], torch.fx.Node):
            continue
        pooled = False
        target_name = getattr(node.target, "__name__", str(node.target))
        if node.op == "call_module":
            module = net.get_submodule(str(node.target))
            pooled = isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1))
        elif node.op in ("call_function", "call_method") and target_name in (
            "adaptive_avg_pool2d",
            "mean",
        ):
            size = (
                node.args[1]
                if len(node.args) > 1
                else node.kwargs.get("output_size", node.kwargs.get("dim"))
            )
            if target_name == "mean":
                pooled = isinstance(size, (list, tuple)) and sorted(size) in ([2, 3], [-2, -1])
            else:
                pooled = size in (1, (1, 1), [1, 1])
        if pooled:
            source = tracer.node_to_qualname[node.args[0]]
            return None if source.split(".")[0] in _HEAD_NAMES else source
    return None


def _torchvision_backbone(name: str, in_channels: int, pretrained: bool) -> Backbone:
    import torchvision
    from torchvision.models.feature_extraction import create_feature_extractor

    weights = torchvision.models.get_model_weights(name).DEFAULT if pretrained else None
    options: dict[str, bool] = {}
    if weights is None and name in ("googlenet", "inception_v3"):
        # built from scratch they warn that their default initialisation will change;
        # say which one we want (today's default, so the same weights as before)
        options["init_weights"] = True
    try:
        net = torchvision.models.get_model(name, weights=weights, **options)
    except (URLError, OSError, ConnectionError) as error:
        # One sentence instead of a page of socket traceback (`from None` hides it).
        raise _offline_error(name, error) from None
    if hasattr(net, "transform_input"):
        net.transform_input = False  # googlenet/inception re-normalise 3 channels; we do it

    first = next((n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ValueError(
            f"torchvision's {name} has no convolution to adapt; pick another backbone."
        )
    conv = net.get_submodule(first)
    assert isinstance(conv, nn.Conv2d)
    net.set_submodule(first, adapt_first_conv(conv, in_channels, pretrained))

    node = _global_pool_input(net)
    body: nn.Module
    if node is not None:
        with warnings.catch_warnings():  # googlenet/inception: their auxiliary heads
            # exist in train mode only; our cut lies before them in both modes.
            warnings.filterwarnings("ignore", message="NOTE: The nodes obtained by tracing")
            body = create_feature_extractor(net, return_nodes={node: "features"})
    elif isinstance(getattr(net, "features", None), nn.Module):
        body = net.features  # vgg, alexnet, squeezenet: the convolutional part
    else:
        raise ValueError(
            f"torchvision's {name} does not end in a feature map; pick a "
            "convolutional backbone from agkit.list_backbones()."
        )

    # The channel count K from a forward pass on the meta device: shapes only, no compute.
    probe = {
        key: torch.empty_like(value, device="meta")
        for key, value in body.state_dict(keep_vars=True).items()
    }
    shape = torch.func.functional_call(
        body.eval(), probe, (torch.empty(1, in_channels, 224, 224, device="meta"),)
    )
    if isinstance(shape, dict):
        shape = shape["features"]
    if shape.ndim != 4:
        raise ValueError(
            f"torchvision's {name} gives features shaped {tuple(shape.shape)}, "
            "not B x K x h x w; pick a convolutional backbone."
        )
    body.train()
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if pretrained else (None, None)
    return Backbone(body, int(shape.shape[1]), in_channels, mean, std)


# ---------------------------------------------------------------------------------------
# timm
# ---------------------------------------------------------------------------------------


def _timm_available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def _timm_backbone(name: str, in_channels: int, pretrained: bool) -> Backbone:
    import timm

    try:
        body = timm.create_model(
            name, pretrained=pretrained, features_only=True, in_chans=in_channels
        )  # Backbone keeps the last stage
    except (URLError, OSError, ConnectionError) as error:
        raise _offline_error(name, error) from None
    except RuntimeError as error:
        if pretrained and "pretrained" in str(error).lower():
            raise ValueError(
                f"timm's {name} has no pretrained weights; use pretrained=False "
                "or a name from agkit.list_backbones(pretrained=True)."
            ) from None
        raise
    feature_info: Any = body.feature_info
    out_channels = int(feature_info.channels()[-1])
    mean = std = None
    if pretrained:
        config = timm.data.resolve_model_data_config(body)
        mean, std = tuple(config["mean"]), tuple(config["std"])
    return Backbone(body, out_channels, in_channels, mean, std)


# ---------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------


def list_backbones(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Names that ``build_backbone`` (and ``CAMNet``) accept, filtered by a glob pattern.

    ``pretrained=True`` lists only backbones with downloadable weights. timm's models
    appear as ``"timm:NAME"`` when timm is installed (a plain ``NAME`` works too where
    torchvision has no model of that name).
    """
    names = [] if pretrained else list(SMALL_NETS)
    names += _torchvision_names()
    if _timm_available():
        import timm

        names += [TIMM_PREFIX + n for n in timm.list_models(pretrained=pretrained)]
    return [
        n
        for n in names
        if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(n.removeprefix(TIMM_PREFIX), pattern)
    ]


def build_backbone(name: str, in_channels: int = 1, pretrained: bool = False) -> nn.Module:
    """The feature extractor called ``name``; it has an ``out_channels`` attribute (K).

    Args:
        name: see ``list_backbones()``.
        in_channels: C of the input images (1 for radiographs).
        pretrained: start from the weights the source publishes (needs a download once).
    """
    if name in SMALL_NETS:
        if pretrained:
            raise ValueError(
                f"the {name!r} backbone has no pretrained weights; use "
                "pretrained=False or a pretrained backbone such as 'resnet18'."
            )
        return SMALL_NETS[name](in_channels)
    if not name.startswith(TIMM_PREFIX) and name in _torchvision_names():
        return _torchvision_backbone(name, in_channels, pretrained)
    timm_name = name.removeprefix(TIMM_PREFIX)
    if _timm_available():
        import timm

        if timm.is_model(timm_name):
            return _timm_backbone(timm_name, in_channels, pretrained)
    hint = "" if _timm_available() else " (timm is not installed: pip install agkit[timm])"
    raise ValueError(
        f"unknown backbone {name!r}{hint}; agkit.list_backbones() lists the "
        "names, e.g. 'tiny', 'resnet18', 'densenet121', 'convnext_tiny'."
    )
