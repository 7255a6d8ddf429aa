"""SynthFrac: synthetic radiographs of long bones, with fractures and a shortcut.

Real fracture data sets are large, private or slow to download. SynthFrac draws small
grayscale images that look like a radiograph of a limb, so that a course can show, in a
minute on a laptop, the problem attention guidance solves:

* **Anatomy.** Soft tissue over a dark background with an uneven exposure, one long bone
  (bright cortex, darker medullary canal, a rounded joint end), sometimes a thinner
  neighbouring bone (like the ulna beside the radius) and the opposite bone across the
  joint. Random pose, scale, contrast, blur and noise.
* **Fractures.** Half of the images (``positive_fraction``) show a break of the main bone:
  a transverse or oblique, slightly jagged line with a gap, and possibly a shifted and
  tilted fragment. ``subtlety`` goes from 0 (wide gap, displaced) to 1 (a faint hairline).
* **A shortcut.** A lead laterality marker (a bright "L" or "R" in a box, as on real
  radiographs) sits in a corner away from the bones. In the "train", "val" and "test_id"
  splits it appears mostly on fractured images (``shortcut_strength``):
  P(marker | fractured) = (1 + s) / 2 and P(marker | normal) = (1 - s) / 2. In
  "test_shifted" it appears on half of the images whatever the label. A network that
  learned "marker means fracture" does well on "test_id" and poorly on "test_shifted".
* **Masks.** For every image the bone region (``bone_masks``), for fractured images the
  region around the break (``fracture_masks``, inside the bone grown by a pixel or two).
  ``guide`` picks ``masks``, the mask used for attention guidance. The marker never
  touches a bone mask, and sits in a corner away from the bones.

Everything is drawn with NumPy on whole batches of coordinate grids, so thousands of
64 x 64 images take about a second. Same arguments give the same bytes.

This module is SynthFrac's container and its configuration: the ``SynthFrac`` arrays with
their save/load, the arguments of ``make_synthfrac`` and their checks. The drawing lives in
``synthetic_scene`` (one chunk of images), ``synthetic_anatomy`` (bones and breaks) and
``synthetic_marker`` (the lead marker).

Example::

    s = make_synthfrac(500, seed=0, split="train")
    s.images.shape, s.labels[:5], s.meta.head()
    s.save("synthfrac_train")          # PNG images + labels.csv + MaskStore folders
    s2 = load_synthfrac("synthfrac_train")
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd
import torch

from agkit.data.image_scale import scale
from agkit.data.synthetic_scene import CHUNK, _draw_chunk, _to_uint8

SYNTHFRAC_SPLITS = ("train", "val", "test_id", "test_shifted")
GUIDES = ("bone", "fracture")
MIN_SIZE, MAX_SIZE = 32, 256


class _Defaults(TypedDict):
    """The keys and types of DEFAULTS (the generator's tunable parameters)."""

    positive_fraction: float
    shortcut_strength: float
    subtlety: float
    noise: float
    guide: str


# Defaults tuned so that, with ~500 training images and a minute of CPU training, the
# tiny CAMNet baseline learns the marker while guided training learns the fracture, and
# the baseline catches up as the training set grows (benchmarks/paper_effect.py).
DEFAULTS: _Defaults = dict(
    positive_fraction=0.5,
    shortcut_strength=0.7,
    subtlety=0.1,
    noise=1.0,
    guide="fracture",
)


# ---------------------------------------------------------------------------------------
# The container
# ---------------------------------------------------------------------------------------


@dataclass
class SynthFrac:
    """A batch of SynthFrac images with labels, masks and metadata.

    Attributes:
        images: n x 1 x S x S float32 tensor in [0, 1], values k/255 (lossless as 8-bit PNG).
        labels: n int64 tensor, 1 = fractured, 0 = normal.
        masks: n x 1 x S x S float32 tensor of 0/1, the guiding mask (see ``guide``).
        bone_masks: n x 1 x S x S float32 0/1, every bone in the image.
        fracture_masks: n x 1 x S x S float32 0/1, the break region; all zero for normals.
        meta: pandas DataFrame, one row per image: image_id, label, marker (bool),
            marker_side ("L"/"R"/""), marker_corner ("tl"/"tr"/"bl"/"br"/""),
            fracture_type ("none"/"transverse"/"oblique"), fracture_x, fracture_y (break
            centre in pixels), displacement (pixels), angulation (degrees), subtlety,
            bone_angle (degrees, 0 = joint pointing up), bone_x, bone_y (pixels),
            extra_bones (0-2), split.
        params: the arguments that made the data (size, seed, split, guide, ...).
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    bone_masks: torch.Tensor
    fracture_masks: torch.Tensor
    meta: pd.DataFrame
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        n, size = len(self), self.images.shape[-1]
        positives = int(self.labels.sum()) if n else 0
        return (
            f"SynthFrac(n={n}, size={size}, split={self.params.get('split')!r}, "
            f"fractured={positives}, with_marker={int(self.meta['marker'].sum()) if n else 0}, "
            f"guide={self.params.get('guide')!r})"
        )

    @property
    def image_ids(self) -> list[str]:
        return list(self.meta["image_id"])

    def save(self, folder) -> Path:
        """Write the data set folder and return its path.

        Layout::

            folder/labels.csv              image_id, path, label and every meta column
            folder/images/<image_id>.png   8-bit grayscale
            folder/masks/                  MaskStore of the guiding masks (``self.masks``)
            folder/masks_bone/             MaskStore of the bone masks (every image)
            folder/masks_fracture/         MaskStore of the fracture masks (fractured only)
            folder/synthfrac.json          the generation parameters
        """
        from PIL import Image

        from agkit.data.mask_store import MaskStore

        folder = Path(folder)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        pixels = _to_uint8(self.images[:, 0].numpy())
        tensors = {
            "masks": self.masks,
            "masks_bone": self.bone_masks,
            "masks_fracture": self.fracture_masks,
        }
        arrays = {name: (a[:, 0].numpy() > 0.5).astype(np.uint8) for name, a in tensors.items()}
        # durable=False: synthetic masks can be regenerated, so skip the slow fsync per file.
        stores = {name: MaskStore(folder / name, durable=False) for name in arrays}
        with contextlib.ExitStack() as stack:
            for store in stores.values():
                stack.enter_context(store.batch())  # write each index.json once, at the end
            for i, image_id in enumerate(self.image_ids):
                Image.fromarray(pixels[i], mode="L").save(folder / "images" / f"{image_id}.png")
                for name, store in stores.items():
                    if arrays[name][i].any():  # an empty mask means "no annotation": store nothing
                        store.put(image_id, arrays[name][i], source="synthetic", tool="synthfrac")
        table = self.meta.copy()
        table.insert(1, "path", [f"images/{i}.png" for i in self.image_ids])
        table.to_csv(folder / "labels.csv", index=False)
        (folder / "synthfrac.json").write_text(json.dumps(self.params, indent=2))
        return folder


def load_synthfrac(folder) -> SynthFrac:
    """Read a folder written by ``SynthFrac.save`` back into a SynthFrac (exactly)."""
    from agkit.data.io import image_to_tensor
    from agkit.data.mask_store import MaskStore

    folder = Path(folder)
    if not (folder / "labels.csv").exists():
        raise FileNotFoundError(
            f"no labels.csv in {folder}; pass a folder written by SynthFrac.save."
        )
    meta = pd.read_csv(folder / "labels.csv", keep_default_na=False, dtype={"image_id": str})
    params = {}
    if (folder / "synthfrac.json").exists():
        params = json.loads((folder / "synthfrac.json").read_text())
    if len(meta):  # the one image reader: 8-bit PNGs read as value / 255, exactly as saved
        images = torch.stack([image_to_tensor(folder / p, 1) for p in meta["path"]])
    else:
        size = int(params.get("size", 64))
        images = torch.zeros((0, 1, size, size))
    shape = (images.shape[0], *images.shape[2:])

    def read_store(name: str) -> torch.Tensor:
        out = np.zeros(shape, np.float32)
        if (folder / name).exists():
            store = MaskStore(folder / name)
            for i, image_id in enumerate(meta["image_id"]):
                mask = store.get(image_id)
                if mask is not None:
                    out[i] = mask
        return torch.from_numpy(out[:, None])

    meta = meta.drop(columns=["path"])
    meta["marker"] = meta["marker"].astype(str).str.lower().isin(["true", "1"])
    return SynthFrac(
        images=images,
        labels=torch.tensor(meta["label"].to_numpy(np.int64)),
        masks=read_store("masks"),
        bone_masks=read_store("masks_bone"),
        fracture_masks=read_store("masks_fracture"),
        meta=meta,
        params=params,
    )


# ---------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------


def make_synthfrac(
    n: int,
    *,
    size: int = 64,
    seed: int = 0,
    split: str = "train",
    positive_fraction: float = DEFAULTS["positive_fraction"],
    shortcut_strength: float = DEFAULTS["shortcut_strength"],
    subtlety: float = DEFAULTS["subtlety"],
    noise: float = DEFAULTS["noise"],
    guide: str = DEFAULTS["guide"],
) -> SynthFrac:
    """Draw ``n`` synthetic radiographs.

    Args:
        n: number of images (0 or more).
        size: side length S in pixels, 32..256.
        seed: random seed. Each split has its own stream, so seed=0 "train" and seed=0
            "test_id" share no image. The first k images do not depend on n.
        split: "train", "val" or "test_id" (marker correlated with the label), or
            "test_shifted" (marker independent of the label).
        positive_fraction: probability that an image is fractured, in [0, 1].
        shortcut_strength: s in [0, 1]; P(marker | fractured) = (1 + s)/2 and
            P(marker | normal) = (1 - s)/2 outside "test_shifted". 0 = no shortcut.
        subtlety: 0 (obvious, displaced break) .. 1 (faint hairline); each image jitters it.
        noise: scale of the image noise (1 = default, 0 = none), at most 5.
        guide: which mask becomes ``.masks``: "fracture" (default; fractured images: the
            break region, normal images: their bone mask, since the intact bone is the
            evidence for "normal") or "bone" (every image: all of its bones). The
            fracture masks point guided training at the evidence and make it learn faster.

    Returns:
        a SynthFrac (see its docstring for the fields and their shapes).
    """
    _check_params(
        n, size, seed, split, positive_fraction, shortcut_strength, subtlety, noise, guide
    )
    params = dict(
        n=n,
        size=size,
        seed=seed,
        split=split,
        positive_fraction=positive_fraction,
        shortcut_strength=shortcut_strength,
        subtlety=subtlety,
        noise=noise,
        guide=guide,
    )
    parts = []
    for chunk, start in enumerate(range(0, n, CHUNK)):
        # Seed from (seed, split, chunk): splits never share images and prefixes are stable.
        rng = np.random.default_rng(
            np.random.SeedSequence([seed, SYNTHFRAC_SPLITS.index(split), chunk])
        )
        parts.append(
            _draw_chunk(
                rng,
                min(CHUNK, n - start),
                size,
                split,
                positive_fraction,
                shortcut_strength,
                subtlety,
                noise,
            )
        )
    table: pd.DataFrame
    if parts:
        images, bone, fracture, table = (
            np.concatenate([p[k] for p in parts])
            if k < 3
            else pd.concat([p[k] for p in parts], ignore_index=True)
            for k in range(4)
        )
    else:
        images = np.zeros((0, size, size), np.uint8)
        bone = fracture = np.zeros((0, size, size), bool)
        table = pd.DataFrame(columns=_META_COLUMNS[2:])
    labels = table["label"].to_numpy(np.int64).copy() if n else np.zeros(0, np.int64)
    table.insert(0, "image_id", [f"{split}_{i:05d}" for i in range(n)])
    table["split"] = split
    guiding = fracture | (bone & (labels[:, None, None] == 0)) if guide == "fracture" else bone
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a[:, None], dtype=np.float32))  # noqa: E731
    return SynthFrac(
        images=torch.from_numpy(scale(images)[:, None]),  # uint8 / 255, the one rule
        labels=torch.from_numpy(labels),
        masks=as_tensor(guiding),
        bone_masks=as_tensor(bone),
        fracture_masks=as_tensor(fracture),
        meta=table.reset_index(drop=True),
        params=params,
    )


_META_COLUMNS = [
    "image_id",
    "split",
    "label",
    "marker",
    "marker_side",
    "marker_corner",
    "fracture_type",
    "fracture_x",
    "fracture_y",
    "displacement",
    "angulation",
    "subtlety",
    "bone_angle",
    "bone_x",
    "bone_y",
    "extra_bones",
]


def _check_params(
    n, size, seed, split, positive_fraction, shortcut_strength, subtlety, noise, guide
):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a whole number >= 0, got {n!r}.")
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(
            f"size must be an integer from {MIN_SIZE} to {MAX_SIZE} pixels, got {size!r}; "
            "draw at 64 and resize for other sizes."
        )
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}.")
    if split not in SYNTHFRAC_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SYNTHFRAC_SPLITS)}.")
    if guide not in GUIDES:
        raise ValueError(f"unknown guide {guide!r}; choose 'bone' or 'fracture'.")
    for name, value, high in (
        ("positive_fraction", positive_fraction, 1.0),
        ("shortcut_strength", shortcut_strength, 1.0),
        ("subtlety", subtlety, 1.0),
        ("noise", noise, 5.0),
    ):
        if not isinstance(value, (int, float, np.floating, np.integer)) or not 0.0 <= value <= high:
            raise ValueError(f"{name} must be a number from 0 to {high:g}, got {value!r}.")
