"""Reading one GuidedDataset item: image, label, mask and has_mask, jointly transformed.

``ds[i]`` (or ``ds[(i, seed)]`` from ``agkit.data.loader.SeededSampler``) loads the
C x H x W image and the 1 x H x W mask, then resizes or augments both with the same random
draw, seeded per item. ``GuidedDatasetItems`` is the part of ``GuidedDataset`` that does this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors

from agkit.data.io import image_to_tensor
from agkit.data.mask_store import MaskStore

__all__ = ["GuidedDatasetItems"]


# ------------------------------------------------------------------------------ masks
def _mask_to_tensor(mask, image_id: str) -> torch.Tensor:
    """H x W (or 1 x H x W) 0/1 array -> 1 x H x W float32."""
    m = torch.as_tensor(np.asarray(mask))
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"mask for image {image_id!r} must be H x W, got shape {tuple(m.shape)}.")
    if m.dtype != torch.bool and bool(((m != 0) & (m != 1)).any()):
        raise ValueError(
            f"mask for image {image_id!r} must contain only 0 and 1; threshold it (e.g. mask > 0)."
        )
    return m.float()[None]


class GuidedDatasetItems:
    """GuidedDataset's item access: native images, masks and ``__getitem__``."""

    # Set by GuidedDataset.__init__ (declared here for the type checker; no class attributes).
    in_channels: int
    on_corrupt: str
    image_ids: list[str]
    _tensor: torch.Tensor | None  # N x C x H x W images, or None for files / a loader
    _paths: list[Path] | None
    _loader: Callable[[int], Any] | None
    _masks: Any  # None, a tensor, a MaskStore, a Mapping or a callable image_id -> mask
    _mask_tensor: torch.Tensor | None

    def native_image(self, i: int) -> torch.Tensor:
        """Image i as stored, C x H x W float in [0, 1]: before resizing and augmentation."""
        return self._load_image(int(i))

    def _load_image(self, i: int) -> torch.Tensor:
        if self._tensor is not None:
            return self._tensor[i]
        if self._paths is not None:
            return image_to_tensor(
                self._paths[i], self.in_channels, truncated_ok=self.on_corrupt == "load"
            )
        assert self._loader is not None  # images are a tensor, paths or a loader
        return image_to_tensor(
            self._loader(i),
            self.in_channels,
            f"image {self.image_ids[i]!r}",
            truncated_ok=self.on_corrupt == "load",
        )

    def _load_mask(self, i: int):
        """(1 x H x W float mask or None) for item i, before the annotated_fraction choice."""
        if self._mask_tensor is not None:
            return self._mask_tensor[i]
        src, iid = self._masks, self.image_ids[i]
        if src is None:
            return None
        if isinstance(src, MaskStore):
            m = src.get(iid)
        elif isinstance(src, Mapping):
            m = src.get(iid)
        else:
            m = src(iid)
        return None if m is None else _mask_to_tensor(m, iid)

    def __getitem__(self, index):
        """index: an int, or (int, augmentation seed) as yielded by SeededSampler."""
        i, aug_seed = index if isinstance(index, tuple) else (index, None)
        i = int(i)
        if i < 0:
            i += len(self)
        image = self._load_image(i)
        hw = tuple(image.shape[-2:])
        if self.size is None and self._native is not None and hw != self._native:
            raise ValueError(
                f"image {self.image_ids[i]!r} is {hw[0]}x{hw[1]} but the others are "
                f"{self._native[0]}x{self._native[1]}; pass size=... to resize them all."
            )
        mask = self._load_mask(i) if self.mask_kept[i] else None
        if mask is not None and tuple(mask.shape[-2:]) != hw:
            raise ValueError(
                f"mask for image {self.image_ids[i]!r} is {mask.shape[-2]}x{mask.shape[-1]} "
                f"but the image is {hw[0]}x{hw[1]}; "
                "re-annotate it (masks must be drawn at the image's full size)."
            )
        has_mask = mask is not None and bool(mask.any())
        if not has_mask:
            mask = torch.zeros(1, *hw)

        if self._augment_tf is not None:  # a transform given by transform= / with_transform
            with _seeded(aug_seed):
                image, mask = self._augment_tf(tv_tensors.Image(image), tv_tensors.Mask(mask))
        elif self._tf is not None and (self.augment or hw != (self.size, self.size)):
            with _seeded(aug_seed if self.augment else None):
                # the mask travels as one more image channel (bilinear) and is thresholded below
                both = self._tf(tv_tensors.Image(torch.cat([image, mask]))).as_subclass(
                    torch.Tensor
                )
            image, mask = both[:-1], (both[-1:] >= 0.5).float()
        else:  # the fast path: tensor input at its own size, nothing to do
            return image, self.labels[i], mask, torch.tensor(has_mask)
        image, mask = image.as_subclass(torch.Tensor).clamp(0, 1), mask.as_subclass(torch.Tensor)
        return image, self.labels[i], mask, torch.tensor(has_mask)


@contextlib.contextmanager
def _seeded(seed):
    """Run a block with the CPU random generator seeded by `seed` (None: unchanged), then
    restore the global random state."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed is ~100x slower
        yield
