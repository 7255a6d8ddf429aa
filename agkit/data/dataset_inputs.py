"""Checking and preparing GuidedDataset's inputs when the dataset is built.

Image tensors become N x C x H x W float32 in [0, 1] with C = in_channels, mask tensors
N x 1 x H x W float32 0/1; file images must share one native (H, W) when size is None;
stored masks must have the image size; ``annotated_fraction`` picks the images whose masks
are kept; the built-in augmentation (or plain resize) is set up. ``GuidedDatasetInputs`` is
the part of ``GuidedDataset`` that does this, on the attributes its ``__init__`` sets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torchvision.transforms import v2

from agkit.data.io import _LUMA, image_size
from agkit.data.mask_store import MaskStore

__all__ = ["GuidedDatasetInputs"]


class GuidedDatasetInputs:
    """GuidedDataset's construction helpers (see the module docstring)."""

    # Set by GuidedDataset.__init__ (declared here for the type checker; no class attributes).
    size: int | None
    in_channels: int
    augment: bool
    labels: torch.Tensor
    image_ids: list[str]
    _tensor: torch.Tensor | None  # N x C x H x W images, or None for files / a loader
    _paths: list[Path] | None
    _native: tuple[int, ...] | None  # (H, W) shared by all images, when known
    _tf: Callable[..., Any] | None

    if TYPE_CHECKING:  # provided by GuidedDatasetItems

        def _load_image(self, i: int) -> torch.Tensor: ...

    # ---- construction helpers
    def _prepare_tensor(self, images) -> torch.Tensor:
        t = torch.as_tensor(images)
        if t.ndim == 3:
            t = t[:, None]
        if t.ndim != 4 or t.shape[1] not in (1, 3):
            raise ValueError(
                f"image tensor must be N x C x H x W with C = 1 or 3, got shape {tuple(t.shape)}."
            )
        if t.dtype == torch.uint8:
            t = t.float() / 255
        elif t.dtype == torch.bool or not t.is_floating_point():
            raise ValueError(
                f"image tensor dtype {t.dtype} is not supported; pass float in [0, 1] or uint8."
            )
        else:
            t = t.float()
            if t.numel() and (t.min() < 0 or t.max() > 1):
                raise ValueError(
                    f"image values must be in [0, 1] (found {t.min():.3g}..{t.max():.3g}); "
                    "divide by 255 first."
                )
        if t.shape[1] != self.in_channels:
            t = (
                t.expand(-1, 3, -1, -1)
                if self.in_channels == 3
                else torch.einsum("c,nchw->nhw", _LUMA, t)[:, None]
            )
        return t.contiguous()

    def _prepare_mask_tensor(self, masks) -> torch.Tensor:
        m = torch.as_tensor(masks)
        if m.ndim == 3:
            m = m[:, None]
        if m.ndim != 4 or m.shape[1] != 1 or len(m) != len(self.labels):
            raise ValueError(
                f"mask tensor must be N x 1 x H x W with N = {len(self.labels)}, "
                f"got shape {tuple(m.shape)}."
            )
        if m.dtype != torch.bool and bool(((m != 0) & (m != 1)).any()):
            raise ValueError(
                "mask tensor must contain only 0 and 1; threshold it (e.g. masks > 0)."
            )
        if self._tensor is not None and m.shape[-2:] != self._tensor.shape[-2:]:
            raise ValueError(
                f"masks are {tuple(m.shape[-2:])} but images are {tuple(self._tensor.shape[-2:])}; "
                "masks must have the image size."
            )
        return m.float().contiguous()

    def _check_one_size(self):
        """Native (H, W) when every image has it; a clear error otherwise (size=None)."""
        if self._paths is not None:
            sizes = {}
            for p, iid in zip(self._paths, self.image_ids, strict=True):
                if not p.is_file():
                    raise FileNotFoundError(f"No image file at {p} (image {iid!r}).")
                sizes.setdefault(image_size(p), iid)
            if len(sizes) > 1:
                examples = ", ".join(
                    f"{iid!r} is {h}x{w}" for (h, w), iid in list(sizes.items())[:3]
                )
                raise ValueError(
                    f"images have different sizes ({examples}); "
                    "pass size=... (e.g. size=224) to resize them all."
                )
            return next(iter(sizes))
        return tuple(
            self._load_image(0).shape[-2:]
        )  # callable: later items are checked as they load

    def _check_store_shapes(self, store: MaskStore) -> None:
        assert self._tensor is not None  # called for tensor images only
        h, w = self._tensor.shape[-2:]
        for iid in self.image_ids:
            if iid in store:
                shape = store.provenance(iid).get("shape")
                if shape is not None and tuple(shape) != (h, w):
                    raise ValueError(
                        f"mask for image {iid!r} is {shape[0]}x{shape[1]} "
                        f"but the image is {h}x{w}; re-annotate it or delete it from the MaskStore."
                    )

    def _choose_annotated(self, fraction, seed) -> torch.Tensor:
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"annotated_fraction must be between 0 and 1, got {fraction}.")
        n = len(self.labels)
        keep = torch.zeros(n, dtype=torch.bool)
        rng = np.random.default_rng(seed)
        labels = self.labels.numpy()
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            k = int(np.floor(float(fraction) * len(members) + 0.5))
            keep[torch.from_numpy(rng.choice(members, size=k, replace=False))] = True
        return keep

    def _build_transforms(self) -> None:
        self._tf = None
        if self.augment:
            out = (self.size, self.size) if self.size is not None else self._native
            self._tf = v2.Compose(
                [
                    v2.RandomResizedCrop(out, scale=(0.6, 1.0), ratio=(0.9, 1.1), antialias=True),
                    v2.RandomHorizontalFlip(),
                    v2.RandomRotation(10, interpolation=v2.InterpolationMode.BILINEAR),
                ]
            )
        elif self.size is not None:
            self._tf = v2.Resize((self.size, self.size), antialias=True)


class _PathFiles:
    """File paths behind the `files.open(key)` interface of
    agkit.data.corrupt_files.check_images."""

    @staticmethod
    def open(path):
        return open(path, "rb")
