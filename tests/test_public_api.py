"""The public surface: ``agkit``'s short list of names is the same objects as their homes;
nothing was released before, so no old name is kept."""

import importlib
import subprocess
import sys

import pytest

import agkit


def test_top_level_names_are_their_homes():
    from agkit.data.dataset import GuidedDataset
    from agkit.data.loader import make_loader
    from agkit.data.mask_store import MaskStore
    from agkit.data.real import open_dataset
    from agkit.data.synthetic import make_synthfrac
    from agkit.method.backbones import list_backbones
    from agkit.method.camnet import CAMNet
    from agkit.method.loss import attention_guidance_loss
    from agkit.method.predict import evaluate, predict
    from agkit.method.train import fit
    from agkit.widgets.annotator import MaskAnnotator

    homes = {
        "CAMNet": CAMNet,
        "list_backbones": list_backbones,
        "fit": fit,
        "attention_guidance_loss": attention_guidance_loss,
        "evaluate": evaluate,
        "predict": predict,
        "GuidedDataset": GuidedDataset,
        "make_loader": make_loader,
        "MaskStore": MaskStore,
        "open_dataset": open_dataset,
        "make_synthfrac": make_synthfrac,
        "MaskAnnotator": MaskAnnotator,
    }
    assert set(agkit.__all__) == set(homes) | {"__version__"}
    for name, obj in homes.items():
        assert getattr(agkit, name) is obj, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        agkit.nothing  # noqa: B018


def test_import_agkit_leaves_the_widget_libraries_alone():
    code = "import sys, agkit; print('ipywidgets' in sys.modules, 'anywidget' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    "module, name",
    [
        ("agkit.data", "masks"),
        ("agkit.data", "demo"),
        ("agkit.widgets", "enable_colab_widget_manager"),
        ("agkit.widgets", "image_to_array"),
        ("agkit.method.loss", "old_names"),
        ("agkit.method.train", "default_device"),
    ],
)
def test_no_deprecated_name_is_kept(module, name):
    with pytest.raises((ImportError, AttributeError)):
        try:
            importlib.import_module(f"{module}.{name}")
        except ModuleNotFoundError:
            getattr(importlib.import_module(module), name)
