"""agkit: attention guidance for CNN fracture classification, as a course kit.

What a notebook needs is importable from here (``from agkit import CAMNet, fit``); the rest
lives in the module that holds its concept (docs/architecture.md has the whole map):

The method
    ``backbones``  feature extractors by name (``list_backbones()``)
    ``models``     CAMNet: a backbone, a classifier and the CAM from the classifier's weights
    ``losses``     the attention-guidance loss (CAM softmax mass inside the human mask)
    ``train``      training_step, fit, evaluate, predict
    ``metrics``    accuracy, AUC, mass inside the mask, chance levels
    ``cam``        CAMs upsampled and normalised for looking at them
Data (``agkit.data``)
    ``io``         the one image reader (scaling rule, corrupt files)
    ``shapes``     the pixel convention, rasterisers, COCO/YOLO/VOC parsing
    ``mask_store`` MaskStore: one mask per image on disk
    ``dataset``    GuidedDataset (image, label, mask, has_mask) and make_loader
    ``synthetic``  SynthFrac radiographs with their lead-marker shortcut
    ``real/``      open_dataset for FracAtlas, GRAZPEDWRI-DX, MURA, CUB, folders, demos
Around the method
    ``widgets``    MaskAnnotator, the notebook widget that draws masks into a MaskStore
    ``course``, ``run_course``, ``recipes``, ``selection``, ``few_masks``, ``plots``,
    ``colab``      the course's experiments, figures and where it runs
"""

from agkit.data import GuidedDataset, MaskStore, make_loader, make_synthfrac, open_dataset
from agkit.method.backbones import list_backbones
from agkit.method.camnet import CAMNet
from agkit.method.loss import attention_guidance_loss
from agkit.method.train import evaluate, fit, predict

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
