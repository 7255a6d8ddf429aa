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

How an item is read and augmented is ``dataset_items``' part of GuidedDataset, how its inputs
are checked and prepared ``dataset_inputs``'; ``agkit.data.loader.make_loader`` batches it
reproducibly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from agkit.data.corrupt_policy import check_on_corrupt
from agkit.data.dataset_inputs import GuidedDatasetInputs, class_numbers, one_row_per_image
from agkit.data.dataset_items import GuidedDatasetItems
from agkit.data.mask_store import MaskStore

__all__ = ["GuidedDataset"]


# ------------------------------------------------------------------------- the dataset
class GuidedDataset(GuidedDatasetItems, GuidedDatasetInputs, Dataset):
    """Images, labels and optional guidance masks (see the module docstring for the items).

    images: Tensor N x C x H x W in [0, 1] (uint8 is divided by 255; N x H x W means one
        channel), a sequence of N image file paths, or a callable i -> array (H x W or
        H x W x 3). Files and arrays are scaled to [0, 1] by agkit.data.image_scale's one rule.
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
        "load" (read truncated files as far as they go, skip the others); see
        agkit.data.corrupt_policy.
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
    ):
        self.on_corrupt = check_on_corrupt(on_corrupt)
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}.")
        if size is not None and (int(size) != size or size < 1):
            raise ValueError(f"size must be a positive int or None, got {size!r}.")
        self.size, self.in_channels, self.augment = size, in_channels, bool(augment)
        self.seed = seed
        labels = class_numbers(labels, class_names)
        native = self._set_images(images, len(labels))
        if image_ids is not None and len(image_ids) != len(labels):
            raise ValueError(
                f"got {len(image_ids)} image_ids for {len(labels)} images; pass one id per image."
            )
        if self._paths is not None:  # corrupt files are found now, not inside ds[i]
            labels, image_ids, meta = self._drop_unreadable_files(labels, image_ids, meta)
        self.labels = torch.from_numpy(labels.astype(np.int64))  # astype copies: safe to share
        n = len(self.labels)
        self.image_ids = self._unique_ids(image_ids, n)
        self.meta = one_row_per_image(meta, n)
        if n and int(self.labels.min()) < 0:
            raise ValueError("labels must be class numbers 0, 1, ...; found a negative label.")
        n_classes = int(self.labels.max()) + 1 if n else 0
        self.class_names = (
            list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
        )
        if size is None and self._tensor is None and n:
            native = self._check_one_size()
        self._native = native  # (H, W) shared by all images when size is None and known
        self._set_masks(masks)
        self.mask_kept = self._choose_annotated(annotated_fraction, seed)
        self.annotated_fraction = annotated_fraction
        self._build_transforms()
        self._augment_tf = transform

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


class _Reindexed:
    """Callable image source restricted to some indices (picklable for DataLoader workers)."""

    def __init__(self, loader: Callable, indices: Sequence[int]):
        self.loader, self.indices = loader, list(indices)

    def __call__(self, i):
        return self.loader(self.indices[i])
