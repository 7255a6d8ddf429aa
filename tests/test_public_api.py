"""The public surface: ``agkit``'s short list of names is the same objects as their homes, and
the old import paths still work for one release, each with a DeprecationWarning."""

import importlib
import subprocess
import sys

import pytest

import agkit
from agkit.course import colab
from agkit.data import io, mask_store, shapes
from agkit.data.real import demo


def test_top_level_names_are_their_homes():
    from agkit.data.dataset import GuidedDataset, make_loader
    from agkit.data.real import open_dataset
    from agkit.data.synthetic import make_synthfrac
    from agkit.method.backbones import list_backbones
    from agkit.method.camnet import CAMNet
    from agkit.method.loss import attention_guidance_loss
    from agkit.method.train import evaluate, fit, predict
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
        "MaskStore": mask_store.MaskStore,
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
    "old, names, new",
    [
        ("agkit.data.masks", ["MaskStore", "CorruptIndexError", "safe_file_name"], mask_store),
        ("agkit.data.masks", ["rasterize_boxes", "rasterize_polygons", "mask_to_boxes"], shapes),
        ("agkit.data.demo", ["write_demo_dataset", "demo_synthfrac", "DEMO_FORMATS"], demo),
    ],
)
def test_old_module_paths_warn_and_give_the_same_objects(old, names, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=new.__name__.replace(".", r"\.")):
        module = importlib.import_module(old)
    for name in names:
        assert getattr(module, name) is getattr(new, name), name


@pytest.mark.parametrize(
    "old, new",
    [("enable_colab_widget_manager", colab.enable_widget_manager), ("image_to_array", io.to_array)],
)
def test_old_widget_names_warn_and_give_the_kits_function(old, new):
    import agkit.widgets

    with pytest.warns(DeprecationWarning, match=new.__name__):
        assert getattr(agkit.widgets, old) is new
    with pytest.raises(AttributeError):
        agkit.widgets.no_such_name  # noqa: B018
