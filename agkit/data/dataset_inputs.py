"""Checking and preparing GuidedDataset's inputs when the dataset is built.

Image tensors become N x C x H x W float32 in [0, 1] with C = in_channels, mask tensors
N x 1 x H x W float32 0/1; file images must share one native (H, W) when size is None;
stored masks must have the image size; ``annotated_fraction`` picks the images whose masks
are kept; the built-in augmentation (or plain resize) is set up. ``GuidedDatasetInputs`` is
the part of ``GuidedDataset`` that does this, on the attributes its ``__init__`` sets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torchvision.transforms import v2

from agkit.data.corrupt_files import check_images
from agkit.data.io import _LUMA, image_size
from agkit.data.mask_store import MaskStore

__all__ = ["GuidedDatasetInputs", "class_numbers", "one_row_per_image"]


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
    _loader: Callable[[int], Any] | None
    _masks: Any
    _mask_tensor: torch.Tensor | None
    on_corrupt: str
    _native: tuple[int, ...] | None  # (H, W) shared by all images, when known
    _tf: Callable[..., Any] | None

    if TYPE_CHECKING:  # provided by GuidedDatasetItems

        def _load_image(self, i: int) -> torch.Tensor: ...

    # ---- construction helpers
    def _set_images(self, images, n: int) -> tuple[int, ...] | None:
        """Keep ``images`` as a tensor, a loader or file paths (the other two None); their
        native (H, W) when a tensor tells it. Raises unless there are ``n`` of them."""
        self._tensor = self._paths = self._loader = None
        native = None
        if isinstance(images, (torch.Tensor, np.ndarray)):
            self._tensor = self._prepare_tensor(images)
            count, native = len(self._tensor), tuple(self._tensor.shape[-2:])
        elif callable(images):
            self._loader, count = images, n
        elif isinstance(images, (str, os.PathLike)):
            raise ValueError(
                "images is a single path; pass a list of paths, "
                "or use GuidedDataset.from_folder(folder)."
            )
        else:
            self._paths = [Path(p) for p in images]
            count = len(self._paths)
        if count != n:
            raise ValueError(f"got {count} images but {n} labels; pass one label per image.")
        return native

    def _drop_unreadable_files(self, labels: np.ndarray, image_ids, meta):
        """Raise for missing files; apply ``on_corrupt`` to empty, undecodable or truncated
        ones (``agkit.data.corrupt_files``). Returns labels, image_ids and meta of the files
        kept (the paths kept are in ``self._paths``)."""
        assert self._paths is not None  # file images only
        missing = [p for p in self._paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image file(s) do not exist, e.g. "
                f"{[str(p) for p in missing[:3]]}; fix the paths."
            )
        keep = check_images(
            _PathFiles(), [str(p) for p in self._paths], self.on_corrupt, "GuidedDataset"
        )
        if keep.all():
            return labels, image_ids, meta
        self._paths = [p for p, k in zip(self._paths, keep, strict=True) if k]
        if image_ids is not None:
            image_ids = [i for i, k in zip(image_ids, keep, strict=True) if k]
        if meta is not None:
            meta = pd.DataFrame(meta).reset_index(drop=True)[keep].reset_index(drop=True)
        return labels[keep], image_ids, meta

    def _unique_ids(self, image_ids, n: int) -> list[str]:
        """The n image ids as strings (default: the file paths, else "0", "1", ...)."""
        if image_ids is not None:
            ids = [str(i) for i in image_ids]
        elif self._paths is not None:
            ids = [str(p) for p in self._paths]
        else:
            ids = [str(i) for i in range(n)]
        if len(ids) != n:
            raise ValueError(f"got {len(ids)} image_ids for {n} images; pass one id per image.")
        if len(set(ids)) != n:
            raise ValueError("image_ids must be unique (masks are looked up by id).")
        return ids

    def _set_masks(self, masks) -> None:
        """Keep ``masks`` (None, a tensor, a MaskStore, a mapping or a callable), checked."""
        self._masks, self._mask_tensor = masks, None
        if isinstance(masks, (torch.Tensor, np.ndarray)):
            self._mask_tensor = self._prepare_mask_tensor(masks)
        elif (
            masks is not None
            and not isinstance(masks, (MaskStore, Mapping))
            and not callable(masks)
        ):
            raise ValueError(
                "masks must be None, a tensor, a MaskStore, a mapping or a callable, "
                f"got {type(masks).__name__}."
            )
        if isinstance(masks, MaskStore) and self._tensor is not None:
            self._check_store_shapes(masks)

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
            finite = torch.isfinite(t.flatten(1)).all(dim=1)  # one bool per image
            if not finite.all():  # NaN passes the range test below: NaN < 0 is False
                bad = torch.nonzero(~finite).flatten().tolist()
                shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
                raise ValueError(
                    f"{len(bad)} image(s) hold NaN or inf values (at positions {shown}); they "
                    "have no brightness to learn from: fix them or leave them out."
                )
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


# More classes than any public image dataset has (ImageNet-21k: 21,841): a label above it is
# an id or a code, not a class number, and naming every class up to it would fill the memory.
MAX_CLASSES = 100_000


def class_numbers(labels, class_names=None) -> np.ndarray:
    """N labels (a tensor, array or list; N or N x 1) as a flat NumPy array of whole class
    numbers, each below ``len(class_names)`` when names are given, else below MAX_CLASSES."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim > 1:
        raise ValueError(
            f"labels must hold one class number per image, got shape {tuple(labels.shape)}; "
            "for one-hot labels pass labels.argmax(1)."
        )
    labels = labels.reshape(-1)
    if labels.dtype.kind not in "iub" and not (
        labels.dtype.kind == "f" and np.all(labels == np.round(labels))
    ):
        raise ValueError(f"labels must be whole class numbers 0, 1, ..., got dtype {labels.dtype}.")
    if class_names is None:
        limit, rule = MAX_CLASSES, f"class numbers run 0, 1, ... below {MAX_CLASSES:,}"
    else:
        limit, rule = len(class_names), f"class_names names {len(class_names)} classes"
    if labels.size and labels.max() >= limit:
        raise ValueError(
            f"label {labels.max():.0f} has no class: {rule}. Number the classes 0, 1, ... "
            "(np.unique(labels, return_inverse=True)[1] does it) or name every class."
        )
    return labels


def one_row_per_image(meta, n: int) -> pd.DataFrame | None:
    """``meta`` as a DataFrame indexed 0..n-1 (None stays None); raises unless it has n rows."""
    if meta is None:
        return None
    meta = pd.DataFrame(meta).reset_index(drop=True)
    if len(meta) != n:
        raise ValueError(f"meta has {len(meta)} rows for {n} images; pass one row per image.")
    return meta


class _PathFiles:
    """File paths behind the `files.open(key)` interface of
    agkit.data.corrupt_files.check_images."""

    @staticmethod
    def open(path):
        return open(path, "rb")
