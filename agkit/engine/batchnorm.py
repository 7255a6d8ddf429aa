"""BatchNorm statistics re-measured with a network's final weights.

During training the running averages trail the changing weights; after a short run (tens of
steps, as on a laptop) a network that is right on nearly every training batch can score near
chance in eval mode. One pass without gradients over training batches fixes that.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model``."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def norm_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the running statistics of every BatchNorm layer, by state_dict key."""
    names = {id(m): name for name, m in model.named_modules()}
    return {
        f"{names[id(m)]}.{key}": value.detach().clone()
        for m in batch_norms(model)
        for key, value in m.named_buffers(recurse=False)
    }


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    loader: Iterable[Sequence[Any]],
    device: torch.device | str | None = None,
    max_batches: int = 50,
) -> None:
    """Re-measure BatchNorm's running mean and variance over up to ``max_batches`` batches
    of ``loader`` (images are ``batch[0]``, B x C x H x W). Nothing else in the model changes.

    Raises:
        ValueError when the loader yields no batch (the statistics are left untouched).
    """
    norms = batch_norms(model)
    if not norms:
        return
    device = device or next(model.parameters()).device
    was_training = model.training
    momenta = {m: m.momentum for m in norms}
    model.train()
    seen = 0
    try:
        for batch in loader:
            if seen >= max_batches:
                break
            if seen == 0:  # reset only once there is something to measure
                for m in norms:
                    m.reset_running_stats()
                    m.momentum = None  # None = a plain average over all batches seen
            model(batch[0].to(device))
            seen += 1
    finally:
        for m in norms:
            m.momentum = momenta[m]
        model.train(was_training)
    if seen == 0:
        raise ValueError(
            "recalibrate_batchnorm got a loader without batches; the BatchNorm "
            "statistics were left as they were. Pass the training loader."
        )
