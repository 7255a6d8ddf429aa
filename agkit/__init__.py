"""agkit: attention guidance for CNN fracture classification, as a course kit.

The method in four small modules: ``models`` (CAMNet: CAMs from the classifier's own
weights), ``losses`` (the attention-guidance loss), ``train`` (the loop) and ``metrics``.
Data live in ``agkit.data``, pictures in ``agkit.cam`` and ``agkit.plots``, the annotation
widget in ``agkit.widgets``.
"""

from agkit.backbones import list_backbones
from agkit.losses import attention_guidance_loss
from agkit.models import CAMNet
from agkit.train import evaluate, fit, predict

__version__ = "0.1.0"
__all__ = ["CAMNet", "attention_guidance_loss", "fit", "evaluate", "predict", "list_backbones",
           "__version__"]
