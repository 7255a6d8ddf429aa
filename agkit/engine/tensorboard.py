"""TensorBoard logging for ``agkit train --tensorboard DIR``.

``TensorBoardLog(folder, images)`` is a callback of ``agkit.method.train.fit``: after
each epoch it writes the history row's numbers as scalars (``train/loss``, ``train/ce``,
``train/att``, ``train/lr``, ``val/accuracy``, ...) and the CAM of the predicted class over
each of a few fixed images as one grid of overlays (``cams``), so that one can watch the
maps move into the masks while the losses fall. Watch with ``tensorboard --logdir DIR``.

Needs the ``tensorboard`` package: ``pip install 'agkit[tensorboard]'``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agkit.engine.callbacks import Callback, TrainingState
from agkit.method import cams as cam_utils
from agkit.method.predict import classify

MISSING = (
    "--tensorboard needs the tensorboard package, which is not installed; install it with "
    "pip install 'agkit[tensorboard]' (or pip install tensorboard)."
)


def summary_writer(folder: str | Path) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``folder``; ImportError naming the
    extra to install when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(MISSING) from None
    return SummaryWriter(log_dir=str(folder))


class TensorBoardLog(Callback):
    """Scalars and CAM overlays per epoch (see the module docstring).

    folder: the log folder. images: n x C x H x W images (values in [0, 1]) to draw the
    CAMs over every epoch, the same ones each time (a few, e.g. 8).
    """

    def __init__(self, folder: str | Path, images: torch.Tensor):
        self.writer = summary_writer(folder)
        self.images = images

    def on_epoch_end(self, state: TrainingState, row: dict[str, Any]) -> None:
        epoch, model = state.epoch, state.model
        for key, value in row.items():
            if key in ("epoch",) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            tag = f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"
            self.writer.add_scalar(tag, value, epoch)
        if len(self.images):
            self.writer.add_images("cams", self.overlays(model), epoch, dataformats="NHWC")
        self.writer.flush()

    def overlays(self, model: nn.Module) -> np.ndarray:
        """n x H x W x 3 overlays in [0, 1] of the predicted class's CAM on each image."""
        out = classify(model, self.images)  # keeps the model's train/eval mode
        maps = cam_utils.select_class(out.cams, out.predicted)[:, 0]  # n x h x w
        return np.stack(
            [
                cam_utils.overlay(image.float().cpu(), cam)
                for image, cam in zip(self.images, maps, strict=True)
            ]
        ).astype(np.float32)

    def on_fit_end(self, state: TrainingState) -> None:
        self.writer.close()
