"""Drawn masks a run trains with: where notebook 02 stores them, whether a store holds any,
and the config changes of a notebook's ``masks`` parameter."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agkit.data import MaskStore
from agkit.experiments.errors import NoMasksError

if TYPE_CHECKING:
    from agkit.experiments.profiles import Profile


def check_mask_store(folder, image_ids=None) -> int:
    """The number of masks in the MaskStore ``folder`` (of ``image_ids`` when given).

    Raises NoMasksError, saying how many masks were found and where, when there are none:
    guided training with no mask would silently be the baseline with softmax pooling.
    """
    folder = Path(folder)
    found = set(MaskStore(folder).annotated_ids()) if (folder / "index.json").is_file() else set()
    usable = len(found if image_ids is None else found & set(image_ids))
    if usable == 0:
        where = f"{folder}" + ("" if folder.is_dir() else " (the folder does not exist)")
        matching = (
            ""
            if image_ids is None or not found
            else f", none of them for the {len(image_ids)} training images"
        )
        raise NoMasksError(
            f"found {len(found)} masks in {where}{matching}; guided training needs masks to "
            f"guide it. Draw some in notebook 02 (or run it with annotator='simulated'), or "
            f"train with the built-in masks (masks='builtin')."
        )
    return usable


def mask_changes(masks: str, profile: Profile, runs_dir="runs", seed: int = 0) -> dict:
    """The config changes for a notebook's ``masks`` parameter.

    "builtin": none (SynthFrac's own masks). "annotations": train on the masks drawn in
    notebook 02 (``runs_dir/annotations/synthfrac-<profile>-seed<seed>``), every run on the
    images of that seed so that the masks belong to the training images; raises
    NoMasksError when that store is missing or empty.
    """
    if masks == "builtin":
        return {}
    if masks != "annotations":
        raise ValueError(f"masks must be 'builtin' or 'annotations', got {masks!r}.")
    folder = annotation_folder(profile, runs_dir, seed)
    check_mask_store(folder)
    return {"masks_from": str(folder), "data_seed": seed}


def annotation_folder(profile: Profile, runs_dir="runs", seed: int = 0) -> Path:
    """Where notebook 02 stores the masks drawn for the training images of ``seed``."""
    return Path(runs_dir) / "annotations" / f"synthfrac-{profile.name}-seed{seed}"
