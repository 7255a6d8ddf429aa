"""How a training step runs on the hardware: mixed precision and memory format.

``Precision(amp, channels_last, device)`` is handed to ``agkit.method.train.fit`` (and from there
to ``training_step``), which asks it three things:

* ``images(x)`` / ``model(m)``: put a batch (B x C x H x W) or the model in the memory
  format of the run (channels-last suits the tensor cores of recent GPUs);
* ``autocast()``: the context the forward pass runs in. "bf16" and "fp16" run convolutions
  and matrix products in 16 bits. The losses stay in float32: ``training_step`` computes
  the cross-entropy on ``logits.float()`` and the guidance term after the autocast region,
  and ``attention_guidance_loss`` promotes the CAMs to float32 itself;
* ``step(loss, optimizer)``: backward and optimiser step. For "fp16" a GradScaler multiplies
  the loss before backward so that small gradients do not underflow to zero, and skips the
  step (lowering the scale) when a gradient overflowed; "bf16" has float32's range and
  needs no scaler.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

AMP_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


class Precision:
    """Mixed precision and memory format of a run (see the module docstring).

    amp: "fp32" (no autocast), "bf16" or "fp16". channels_last: store images and weights
    channels-last. device: where the run trains (autocast and the scaler are per device).
    """

    def __init__(
        self, amp: str = "fp32", channels_last: bool = False, device: torch.device | str = "cpu"
    ):
        if amp not in AMP_DTYPES:
            raise ValueError(f"amp must be one of {', '.join(AMP_DTYPES)}, got {amp!r}.")
        self.amp, self.channels_last = amp, channels_last
        self.device_type = torch.device(device).type
        self.dtype = AMP_DTYPES[amp]
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=amp == "fp16")

    def __repr__(self) -> str:
        return f"Precision(amp={self.amp!r}, channels_last={self.channels_last})"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """The batch B x C x H x W in the run's memory format."""
        if not self.channels_last or images.ndim != 4:
            return images
        return images.contiguous(memory_format=torch.channels_last)

    def model(self, model: nn.Module) -> nn.Module:
        """The model with its weights in the run's memory format (in place)."""
        return model.to(memory_format=self.memory_format) if self.channels_last else model

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context of the forward pass: autocast to bf16/fp16, nothing for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward through ``loss`` (scaled for fp16) and one optimiser step."""
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)  # unscales first; skipped when a gradient is inf/NaN
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state (its scale and growth counter) for a checkpoint."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)
