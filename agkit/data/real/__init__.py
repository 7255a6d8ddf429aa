"""open_dataset: one call from a downloaded dataset to a GuidedDataset.

    ds = open_dataset("fracatlas", "~/data/FracAtlas", "train")
    image, label, mask, has_mask = ds[0]

Each dataset has its own small module in this package that knows its files
(``fracatlas``, ``grazpedwri``, ``mura``, ``cub``, ``folder``; ``demo`` writes stand-ins
in their formats); ``source`` holds what they share and ``splits`` the seeded splits.
``open_dataset`` picks the split, applies the options every dataset shares, and hands
images and masks to GuidedDataset, which resizes/augments image and mask together.
Image files are decoded by agkit.data.io, so any of them may be DICOM (.dcm, .dicom or the
"DICM" marker; ``pip install "agkit[dicom]"``), windowed as the module docstring says.
data/README.md says where to download each dataset and how its folder must look.

How the split names map onto what each dataset publishes:

==============  ===========================================================================
fracatlas       published train/valid/test lists ("valid" -> "val") for fractured images;
                the rest split seeded in the same proportions (stratified by label, region)
grazpedwri      seeded split of patients, stratified (fractions=(0.7, 0.15, 0.15))
mura            MURA "train" -> train + val (val_fraction of patients); MURA "valid" -> test
cub             N per class from the official train set -> train, val_per_class more -> val,
                official test set -> test
folder          seeded split stratified by class (fractions=(0.7, 0.15, 0.15))
==============  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from agkit.data.corrupt_files import check_images
from agkit.data.corrupt_policy import check_on_corrupt
from agkit.data.dataset import GuidedDataset
from agkit.data.mask_store import MaskStore
from agkit.data.real.cub import TarFiles, load_cub
from agkit.data.real.folder import load_folder
from agkit.data.real.fracatlas import load_fracatlas
from agkit.data.real.grazpedwri import load_grazpedwri
from agkit.data.real.mura import load_mura
from agkit.data.real.source import ImageColumn, RealSource, missing_files_error
from agkit.data.real.splits import REAL_SPLITS

LOADERS: dict[str, Callable[..., RealSource]] = {
    "fracatlas": load_fracatlas,
    "grazpedwri": load_grazpedwri,
    "mura": load_mura,
    "cub": load_cub,
    "folder": load_folder,
}


def open_dataset(
    name: str,
    root,
    split: str,
    *,
    size: int = 224,
    in_channels: int | None = None,
    augment: bool | None = None,
    annotated_fraction: float = 1.0,
    seed: int = 0,
    on_corrupt: str = "load",
    mask_store=None,
    **options,
) -> GuidedDataset:
    """Open one split of a real dataset as a GuidedDataset.

    Args:
        name: "fracatlas", "grazpedwri", "mura", "cub" or "folder".
        root: the folder the dataset was unpacked into (for "cub" also the .tgz itself).
        split: "train", "val" or "test" (see the module docstring for each dataset's rule).
        size: side of the square output images (and masks).
        in_channels: 1 or 3; default 1 for radiographs and folders, 3 for CUB.
        augment: random crop/flip/rotation applied jointly to image and mask;
            default True for "train", False otherwise.
        annotated_fraction: keep masks for only this share of the images (seeded,
            stratified by label); the rest train as unannotated.
        seed: seeds the split, the few-shot draws and annotated_fraction.
        on_corrupt: empty, undecodable or truncated image files, found when the split is
            opened: "load" reads truncated PNG/JPEG files as far as they go and skips the
            others (a truncated DICOM among them),
            "skip" leaves them all out (both warn once with their count), "error" raises
            naming them (see agkit.data.corrupt_policy).
        mask_store: a MaskStore (or its folder) to take masks from instead of the
            dataset's own annotations, e.g. masks drawn with the annotation widget.
        **options: dataset-specific, see load_fracatlas, load_grazpedwri, load_mura,
            load_cub and load_folder (e.g. mask_source, body_parts, images_per_class).

    Returns:
        GuidedDataset whose items are (image C x size x size float32 in [0, 1], label int64,
        mask 1 x size x size float32 0/1, has_mask bool); ``ds.meta`` holds one row of
        metadata per image (image_id, label, split, file, and the dataset's own columns).

    Raises:
        FileNotFoundError naming the first missing files and where to download the data;
        ValueError for an unknown name, split or option value, or a multi-frame DICOM;
        ImportError naming the extra to install for DICOM files without pydicom or
        without the decoder their compression needs.
    """
    on_corrupt = check_on_corrupt(on_corrupt)
    key = name.lower()
    if key not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}.")
    if split not in REAL_SPLITS:
        raise ValueError(
            f"split must be one of {REAL_SPLITS}, got {split!r} "
            "(FracAtlas's 'valid' list is split='val'; MURA's 'valid' set is split='test')."
        )
    source = LOADERS[key](root, seed=seed, **options)

    rows = source.table[source.table["split"] == split].reset_index(drop=True)
    missing = [k for k in rows["key"] if not source.files.exists(k)]
    if missing:
        raise missing_files_error(source.info, source.files.where, missing)
    if isinstance(source.files, TarFiles):
        source.files.wanted = set(rows["key"])  # read only this split's JPEGs from the archive
    if source.cheap_scan or on_corrupt != "load":
        rows = rows[check_images(source.files, list(rows["key"]), on_corrupt, source.info.title)]
        rows = rows.reset_index(drop=True)

    masks = source.masks
    if mask_store is not None:
        masks = mask_store if isinstance(mask_store, MaskStore) else MaskStore(mask_store)
    images = ImageColumn(source.files, rows["key"])
    images.truncated_ok = on_corrupt == "load"
    return GuidedDataset(
        images,
        torch.tensor(rows["label"].to_numpy(), dtype=torch.int64),
        masks,
        image_ids=list(rows["image_id"]),
        size=size,
        in_channels=in_channels or source.in_channels,
        augment=(split == "train") if augment is None else augment,
        annotated_fraction=annotated_fraction,
        seed=seed,
        meta=rows.rename(columns={"key": "file"}),
        class_names=list(source.class_names),
    )
