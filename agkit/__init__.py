"""agkit: attention guidance for CNN fracture classification, as a course kit.

What a notebook needs is importable from here (``from agkit import CAMNet, fit``); the rest
lives in the package that holds its concept (docs/architecture.md has the whole map):

``method``       the paper's method, read top to bottom: backbones, camnet (CAMNet), cams,
                 loss, train (training_step, fit), predict (classify, predict, evaluate),
                 metrics
``guidance``     one file per guidance term (the paper's CAM loss and its rivals), a registry
``engine``       what fit can also do, as callbacks: checkpoint and resume, time limit,
                 progress, TensorBoard; divergence guards, BatchNorm recalibration, devices,
                 mixed precision, several processes, step timing
``data``         the image reader, masks and their store, GuidedDataset, SynthFrac, real
                 datasets
``propagation``  masks for the images nobody drew, from the few that were drawn
``analysis``     diagnostics, choosing images to annotate, claims checked against numbers
``experiments``  the course's runs and their cache, the guidance zoo, few masks, recipes
``course``       notebook setup, Colab, exercises, student versions, figures, the whole course
``widgets``      MaskAnnotator, the notebook widget that draws masks into a MaskStore
``cli``          ``agkit train``: the research path from a config file
"""

from agkit.data import GuidedDataset, MaskStore, make_loader, make_synthfrac, open_dataset
from agkit.method.backbones import list_backbones
from agkit.method.camnet import CAMNet
from agkit.method.loss import attention_guidance_loss
from agkit.method.predict import evaluate, predict
from agkit.method.train import fit

__version__ = "0.1.0"
__all__ = [
    "CAMNet",
    "list_backbones",
    "attention_guidance_loss",
    "fit",
    "evaluate",
    "predict",
    "GuidedDataset",
    "make_loader",
    "MaskStore",
    "open_dataset",
    "make_synthfrac",
    "MaskAnnotator",
    "__version__",
]


def __getattr__(name):
    # the widget pulls in ipywidgets and anywidget: imported on first use only
    if name == "MaskAnnotator":
        from agkit.widgets import MaskAnnotator

        return MaskAnnotator
    raise AttributeError(f"module 'agkit' has no attribute {name!r}")
