"""`GuidedDataset`: images + labels + optional guidance masks, ready for a DataLoader.

Every item is a tuple

    image    C x S x S float32 in [0, 1]
    label    int64 scalar tensor
    mask     1 x S x S float32, 0/1 (all zeros when the image has no mask)
    has_mask bool scalar tensor: True when a kept, non-empty mask exists for the image

With augment=True the image and its mask go through the same random crop, flip and rotation
(torchvision.transforms.v2).  The mask rides along as one more image channel: it is resampled
bilinearly like the image and then thresholded at 0.5, so it stays 0/1 and exactly aligned.
(v2's tv_tensors.Mask would use PyTorch's legacy "nearest" resampling in the crop, which shifts
masks by about a third of a pixel towards the bottom-right.)
`make_loader` gives reproducible batches: the sampler draws both the order and a seed for each
item's augmentation from a torch.Generator seeded with `seed`, so the same seed gives the same
batches whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from agkit.data.io import _LUMA, check_images, image_size, image_to_tensor, old_names, read_image
from agkit.data.mask_store import MaskStore

__all__ = ["GuidedDataset", "make_loader", "read_image", "SeededSampler"]


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


# ------------------------------------------------------------------------- the dataset
class GuidedDataset(Dataset):
    """Images, labels and optional guidance masks (see the module docstring for the items).

    images: Tensor N x C x H x W in [0, 1] (uint8 is divided by 255; N x H x W means one
        channel), a sequence of N image file paths, or a callable i -> array (H x W or
        H x W x 3). Files and arrays are scaled to [0, 1] by agkit.data.io's one rule.
    labels: N integer class labels.
    masks: None, Tensor N x 1 x H x W of 0/1, a MaskStore or Mapping keyed by image id, or a
        callable image_id -> H x W array or None.
    image_ids: N unique strings (default: the paths for file images, else "0", "1", ...).
    size: output side S; None keeps the native size (all images must then have one size).
    in_channels: 1 (gray) or 3 (RGB); images are converted (see agkit.data.io).
    augment: random resized crop (scale 0.6-1, ratio 0.9-1.1), horizontal flip and rotation up
        to 10 degrees, applied jointly to image and mask; otherwise a plain resize to S x S.
    transform: a joint transform(tv_tensors.Image, tv_tensors.Mask) -> (image, mask), e.g. a
        v2.Compose, used instead of the built-in augmentation/resize and seeded per item like
        it (see also with_transform).
    annotated_fraction: keep masks for round(fraction * n_c) randomly chosen images of each
        class c (chosen with `seed`); the others yield a zero mask and has_mask=False.
    on_corrupt: for file images, what to do with empty, undecodable or truncated files, found
        when the dataset is built: "error" (raise, naming them), "skip" (leave them out) or
        "load" (read truncated files as far as they go, skip the others); see agkit.data.io.
    channels, load_truncated: old names of in_channels and on_corrupt="load" (deprecated).
    """

    def __init__(
        self,
        images,
        labels,
        masks=None,
        *,
        image_ids=None,
        size=None,
        in_channels=1,
        augment=False,
        transform=None,
        annotated_fraction=1.0,
        seed=0,
        meta=None,
        class_names=None,
        on_corrupt="error",
        channels=None,
        load_truncated=None,
    ):
        in_channels, on_corrupt = old_names(
            "GuidedDataset", in_channels, on_corrupt, channels, load_truncated
        )
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}.")
        if size is not None and (int(size) != size or size < 1):
            raise ValueError(f"size must be a positive int or None, got {size!r}.")
        self.size, self.in_channels, self.augment, self.seed = (
            size,
            in_channels,
            bool(augment),
            seed,
        )
        self.on_corrupt = on_corrupt

        labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(
            -1
        )
        if labels.dtype.kind not in "iub" and not (
            labels.dtype.kind == "f" and np.all(labels == np.round(labels))
        ):
            raise ValueError(
                f"labels must be whole class numbers 0, 1, ..., got dtype {labels.dtype}."
            )
        self.labels = torch.from_numpy(labels.astype(np.int64))  # astype copies: safe to share
        n = len(self.labels)
        self._tensor = self._paths = self._loader = None
        if isinstance(images, (torch.Tensor, np.ndarray)):
            self._tensor = self._prepare_tensor(images)
            count, native = len(self._tensor), tuple(self._tensor.shape[-2:])
        elif callable(images):
            self._loader, count, native = images, n, None
        elif isinstance(images, (str, os.PathLike)):
            raise ValueError(
                "images is a single path; pass a list of paths, "
                "or use GuidedDataset.from_folder(folder)."
            )
        else:
            self._paths = [Path(p) for p in images]
            count, native = len(self._paths), None
        if count != n:
            raise ValueError(f"got {count} images but {n} labels; pass one label per image.")
        if image_ids is not None and len(image_ids) != n:
            raise ValueError(
                f"got {len(image_ids)} image_ids for {n} images; pass one id per image."
            )
        if self._paths is not None:  # corrupt files are found now, not inside ds[i]
            missing = [p for p in self._paths if not p.is_file()]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} image file(s) do not exist, e.g. "
                    f"{[str(p) for p in missing[:3]]}; fix the paths."
                )
            keep = check_images(_PathFiles(), self._paths, on_corrupt, "GuidedDataset")
            if not keep.all():
                self._paths = [p for p, k in zip(self._paths, keep, strict=True) if k]
                labels, n = labels[keep], int(keep.sum())
                self.labels = torch.from_numpy(labels.astype(np.int64))
                image_ids = (
                    None
                    if image_ids is None
                    else [i for i, k in zip(image_ids, keep, strict=True) if k]
                )
                if meta is not None:
                    meta = pd.DataFrame(meta).reset_index(drop=True)[keep].reset_index(drop=True)

        self.image_ids = (
            [str(i) for i in image_ids]
            if image_ids is not None
            else (
                [str(p) for p in self._paths]
                if self._paths is not None
                else [str(i) for i in range(n)]
            )
        )
        if len(self.image_ids) != n:
            raise ValueError(
                f"got {len(self.image_ids)} image_ids for {n} images; pass one id per image."
            )
        if len(set(self.image_ids)) != n:
            raise ValueError("image_ids must be unique (masks are looked up by id).")
        if meta is not None:
            meta = pd.DataFrame(meta).reset_index(drop=True)
            if len(meta) != n:
                raise ValueError(
                    f"meta has {len(meta)} rows for {n} images; pass one row per image."
                )
        self.meta = meta
        if n and int(self.labels.min()) < 0:
            raise ValueError("labels must be class numbers 0, 1, ...; found a negative label.")
        n_classes = int(self.labels.max()) + 1 if n else 0
        self.class_names = (
            list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
        )

        if size is None and self._tensor is None and n:
            native = self._check_one_size()
        self._native = native  # (H, W) shared by all images when size is None and known

        self._masks = masks
        self._mask_tensor = None
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

        self.mask_kept = self._choose_annotated(annotated_fraction, seed)
        self.annotated_fraction = annotated_fraction
        self._build_transforms()
        self._augment_tf = transform

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

    # ---- alternative constructors
    @classmethod
    def from_synthfrac(cls, s, **kw) -> GuidedDataset:
        """Dataset from a SynthFrac-like object (images, labels, masks, image_ids, meta)."""
        ids = s.image_ids() if callable(s.image_ids) else s.image_ids
        args = dict(
            images=s.images,
            labels=s.labels,
            masks=s.masks,
            image_ids=list(ids),
            meta=getattr(s, "meta", None),
            class_names=getattr(s, "class_names", None) or ["normal", "fractured"],
        )
        args.update(kw)
        return cls(**args)

    @classmethod
    def from_folder(cls, folder, **kw) -> GuidedDataset:
        """Dataset from a folder with labels.csv (image_id,path,label,...), images and masks/.

        Paths in labels.csv are relative to `folder`; masks/ (a MaskStore) is optional.
        All other columns end up in ds.meta.  Keyword arguments go to GuidedDataset.
        """
        from agkit.data.real.folder import read_labels_csv  # real/ imports this module

        folder = Path(folder)
        csv = folder / "labels.csv"
        if not csv.is_file():
            raise FileNotFoundError(
                f"No labels.csv in {folder}; a dataset folder needs labels.csv with columns "
                "image_id,path,label plus <folder>/images/ and optionally <folder>/masks/."
            )
        table = read_labels_csv(folder)
        paths = [folder / p for p in table["path"]]
        missing = [str(p.relative_to(folder)) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image file(s) listed in {csv} are missing, e.g. {missing[:10]}; "
                "restore them or remove their rows."
            )
        masks_dir = folder / "masks"
        args = dict(
            images=paths,
            labels=table["label"].to_numpy(),
            image_ids=list(table["image_id"]),
            meta=table,
            masks=MaskStore(masks_dir) if masks_dir.is_dir() else None,
        )
        args.update(kw)
        return cls(**args)

    # ---- items
    def __len__(self) -> int:
        return len(self.labels)

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

    # ---- conveniences
    def with_transform(self, transform) -> GuidedDataset:
        """A new dataset over the same items that uses `transform(tv_tensors.Image,
        tv_tensors.Mask) -> (image, mask)` (e.g. a v2.Compose) instead of the built-in
        augmentation/resize, seeded per item like it. A deterministic transform (resize and
        centre crop) gives the same item for every seed. This dataset is left as it is."""
        new = copy.copy(self)
        new._augment_tf = transform
        return new

    def set_transform(self, transform) -> GuidedDataset:
        """Use `transform` in place (see with_transform, which leaves this dataset as it is).
        Returns the dataset itself."""
        self._augment_tf = transform
        return self

    @property
    def transform(self):
        """The joint transform given by transform= or with_transform (None: built-in)."""
        return self._augment_tf

    @property
    def channels(self) -> int:
        """Old name of in_channels (deprecated)."""
        warnings.warn(
            "GuidedDataset.channels is now .in_channels", DeprecationWarning, stacklevel=2
        )
        return self.in_channels

    def subset(self, indices) -> GuidedDataset:
        """A GuidedDataset over some items (same masks, same annotated choice, same transforms)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64)).reshape(-1)
        sub = copy.copy(self)
        sub.labels, sub.mask_kept = self.labels[idx], self.mask_kept[idx]
        sub.image_ids = [self.image_ids[k] for k in idx.tolist()]
        sub.meta = None if self.meta is None else self.meta.iloc[idx.numpy()].reset_index(drop=True)
        if self._tensor is not None:
            sub._tensor = self._tensor[idx]
        if self._paths is not None:
            sub._paths = [self._paths[k] for k in idx.tolist()]
        if self._loader is not None:
            sub._loader = _Reindexed(self._loader, idx.tolist())
        if self._mask_tensor is not None:
            sub._mask_tensor = self._mask_tensor[idx]
        return sub

    def __repr__(self) -> str:
        kept = int(self.mask_kept.sum())
        return (
            f"GuidedDataset({len(self)} images, size={self.size}, in_channels={self.in_channels}, "
            f"augment={self.augment}, masks kept for {kept}, classes={self.class_names})"
        )


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


class _PathFiles:
    """File paths behind the `files.open(key)` interface of agkit.data.io.check_images."""

    @staticmethod
    def open(path):
        return open(path, "rb")


class _Reindexed:
    """Callable image source restricted to some indices (picklable for DataLoader workers)."""

    def __init__(self, loader: Callable, indices: Sequence[int]):
        self.loader, self.indices = loader, list(indices)

    def __call__(self, i):
        return self.loader(self.indices[i])


# --------------------------------------------------------------------------- loading
class SeededSampler(Sampler):
    """Yields (index, augmentation seed) pairs; order and seeds come from one seeded generator.

    Each pass (epoch) continues the generator, so epochs differ, but two samplers built with
    the same seed give the same sequence.
    """

    def __init__(self, n: int, *, shuffle: bool = False, seed: int = 0):
        self.n, self.shuffle = n, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = (
            torch.randperm(self.n, generator=self.generator)
            if self.shuffle
            else torch.arange(self.n)
        )
        seeds = torch.randint(0, 2**62, (self.n,), generator=self.generator)
        return iter(zip(order.tolist(), seeds.tolist(), strict=True))


def _seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch in each worker; give numpy and random matching seeds too
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    ds,
    batch_size: int = 64,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """DataLoader yielding (image, label, mask, has_mask) batches, reproducible for a given seed.

    For a GuidedDataset the batches (order and augmentation) depend only on `seed` and the
    epoch number, not on num_workers.  Other datasets get a seeded shuffle.
    """
    generator = torch.Generator().manual_seed(seed)
    common = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        drop_last=drop_last,
        worker_init_fn=_seed_worker,
        generator=generator,
    )
    if isinstance(ds, GuidedDataset):
        return DataLoader(ds, sampler=SeededSampler(len(ds), shuffle=shuffle, seed=seed), **common)
    return DataLoader(ds, shuffle=shuffle, **common)
