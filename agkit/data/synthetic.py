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

import numpy as np
import pandas as pd
import torch

from agkit.data.io import scale

SYNTHFRAC_SPLITS = ("train", "val", "test_id", "test_shifted")
GUIDES = ("bone", "fracture")
MIN_SIZE, MAX_SIZE = 32, 256
CHUNK = 128  # images drawn per random stream; makes the first k images independent of n

# Defaults tuned so that, with ~500 training images and a minute of CPU training, the
# tiny CAMNet baseline learns the marker while guided training learns the fracture, and
# the baseline catches up as the training set grows (benchmarks/paper_effect.py).
DEFAULTS = dict(
    positive_fraction=0.5,
    shortcut_strength=0.7,
    subtlety=0.1,
    noise=1.0,
    guide="fracture",
)

# 5 x 7 pixel font for the lead marker: 1 = lead (bright on a radiograph).
_GLYPHS = {
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
}
_CORNERS = ("tl", "tr", "bl", "br")


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
        arrays = {
            "masks": self.masks,
            "masks_bone": self.bone_masks,
            "masks_fracture": self.fracture_masks,
        }
        arrays = {name: (a[:, 0].numpy() > 0.5).astype(np.uint8) for name, a in arrays.items()}
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


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


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


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _col(a):
    """(m,) -> (m, 1, 1) so that per-image parameters broadcast over m x S x S grids."""
    return np.asarray(a, np.float32)[:, None, None]


def _bone(u, v, P, which):
    """Projected thickness of one long bone, m x S x S (0 outside the bone).

    The bone lies along +u in local coordinates (u along the shaft, v across it): a
    hollow tube for u < end (cortex bright, medullary canal darker) that widens into a
    rounded, mostly cancellous epiphysis centred at u = end. The shaft goes on beyond
    the image for u -> -inf.

    Returns (thickness, inside): float m x S x S, and the bool bone mask m x S x S.
    """
    radius, cortex, end, cap = (
        P[which + "_r"],
        P[which + "_ct"],
        P[which + "_end"],
        P[which + "_cap"],
    )
    head = radius * P[which + "_flare"]
    grow = _smoothstep((u - (end - 2.5 * cap)) / (2.5 * cap))
    outer = radius + (head - radius) * grow
    inner = np.maximum(outer - cortex * (1.0 - 0.5 * grow), 0.0)
    v2 = v * v
    tube = 2.0 * (
        np.sqrt(np.maximum(outer * outer - v2, 0.0))
        - 0.8 * np.sqrt(np.maximum(inner * inner - v2, 0.0))
    )
    tube = np.where(u < end, tube, 0.0)
    # Epiphysis: an ellipsoid shell with semi-axes (cap along u, head across), filled at 45 %.
    e = ((u - end) / cap) ** 2 + v2 / (head * head)
    shell = (
        2.0
        * head
        * (
            np.sqrt(np.maximum(1.0 - e, 0.0))
            - 0.55 * 0.85 * np.sqrt(np.maximum(1.0 - e / 0.7225, 0.0))
        )
    )
    thickness = np.maximum(tube, shell)
    inside = (e < 1.0) | ((u < end) & (v2 < outer * outer))
    return thickness, inside


def _rotate(u, v, angle):
    """Rotate the points (u, v) by angle (radians, broadcastable arrays)."""
    c, s = np.cos(angle), np.sin(angle)
    return c * u - s * v, s * u + c * v


def _draw_params(rng, m, size, subtlety):
    """Random pose, anatomy and fracture parameters for m images (dict of (m,) arrays)."""
    P = {}
    # Limbs are usually laid along a detector axis: up, down, left or right, +-25 degrees.
    P["angle"] = rng.integers(0, 4, m) * (np.pi / 2) + rng.uniform(-0.44, 0.44, m)
    P["cx"], P["cy"] = rng.uniform(-0.12, 0.12, m), rng.uniform(-0.12, 0.12, m)
    scale = rng.uniform(0.85, 1.15, m)
    P["main_r"] = 0.17 * scale
    P["main_ct"] = P["main_r"] * rng.uniform(0.32, 0.45, m)
    P["main_flare"] = rng.uniform(1.45, 1.75, m)
    P["main_cap"] = P["main_r"] * rng.uniform(1.0, 1.3, m)
    P["main_end"] = rng.uniform(0.35, 0.55, m)
    # Neighbouring thin bone (ulna/fibula-like) on one side, and the opposite joint bone.
    P["has_side"] = rng.random(m) < 0.5
    P["side_sign"] = rng.choice([-1.0, 1.0], m)
    P["side_r"] = P["main_r"] * rng.uniform(0.5, 0.65, m)
    P["side_ct"] = P["side_r"] * rng.uniform(0.35, 0.5, m)
    P["side_flare"] = rng.uniform(1.2, 1.4, m)
    P["side_cap"] = P["side_r"] * rng.uniform(1.0, 1.3, m)
    P["side_end"] = P["main_end"] - P["main_cap"] - rng.uniform(0.0, 0.15, m)
    P["side_gap"] = (
        P["main_r"] * P["main_flare"] + P["side_r"] * P["side_flare"] + rng.uniform(0.0, 0.05, m)
    )
    P["has_opp"] = rng.random(m) < 0.6
    P["opp_r"] = P["main_r"] * rng.uniform(0.9, 1.2, m)
    P["opp_ct"] = P["opp_r"] * rng.uniform(0.32, 0.45, m)
    P["opp_flare"] = rng.uniform(1.35, 1.6, m)
    P["opp_cap"] = P["opp_r"] * rng.uniform(0.8, 1.0, m)
    P["opp_gap"] = rng.uniform(0.05, 0.1, m)  # joint space between the two bone ends
    P["opp_tilt"] = rng.uniform(-0.35, 0.35, m)
    P["opp_end"] = np.zeros(m)  # the opposite bone is drawn in a frame centred on its end
    # Fracture of the main shaft. Subtlety shrinks gap, depth, displacement and tilt.
    sub = np.clip(subtlety + rng.uniform(-0.15, 0.15, m), 0.0, 1.0)
    P["subtlety"] = sub
    P["oblique"] = rng.random(m) < 0.5
    P["break_angle"] = np.where(
        P["oblique"],
        rng.choice([-1, 1], m) * rng.uniform(0.45, 0.8, m),
        rng.uniform(-0.12, 0.12, m),
    )
    P["break_u"] = rng.uniform(-0.55, -0.05, m) + P["main_end"] - 0.45
    pixel = 2.0 / size  # in the same units: the image spans -1..1
    P["gap"] = np.maximum(0.075 * (1.0 - sub) ** 1.5 + 0.012, 0.6 * pixel)
    P["depth"] = 1.0 - 0.55 * sub**2
    P["shift"] = (
        P["main_r"] * 0.7 * (1.0 - sub) ** 2 * rng.uniform(0.0, 1.0, m) * rng.choice([-1, 1], m)
    )
    P["shorten"] = P["main_r"] * 0.3 * (1.0 - sub) ** 2 * rng.uniform(-1.0, 1.0, m)
    P["tilt"] = np.radians(14.0) * (1.0 - sub) ** 2 * rng.uniform(-1.0, 1.0, m)
    P["jag_amp"] = rng.uniform(0.006, 0.018, m)
    P["jag_freq"] = rng.uniform(25.0, 45.0, m)
    P["jag_phase"] = rng.uniform(0, 2 * np.pi, m)
    # Imaging: brightness of air, tissue and bone; exposure ramp; blur; noise.
    P["air"] = rng.uniform(0.03, 0.12, m)
    P["tissue_w"] = P["main_r"] * rng.uniform(2.4, 3.2, m)
    P["tissue"] = rng.uniform(0.18, 0.32, m)
    P["bone"] = rng.uniform(1.6, 2.2, m)
    P["ramp"] = rng.uniform(0.1, 0.35, m)
    P["ramp_dir"] = rng.uniform(0, 2 * np.pi, m)
    P["gamma"] = rng.uniform(0.8, 1.25, m)
    P["blur"] = rng.uniform(0.45, 0.8, m) * size / 64
    return P


def _render(P, labels, size):
    """Render images (m x S x S float in ~[0, 1]) and masks for one set of parameters."""
    m = len(labels)
    grid = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    x, y = grid[None, None, :], grid[None, :, None]
    col = {k: _col(v) for k, v in P.items()}
    # Local frame of the main bone: u along the shaft toward the joint, v across.
    ca, sa = np.cos(col["angle"]), np.sin(col["angle"])
    dx, dy = x - col["cx"], y - col["cy"]
    u = -sa * dx - ca * dy  # angle 0: the joint end points up (toward y = -1)
    v = ca * dx - sa * dy

    main, main_in = _bone(u, v, col, "main")
    fracture = np.zeros((m, size, size), bool)
    pos = np.flatnonzero(labels == 1)
    if len(pos):
        q = {k: w[pos] for k, w in col.items()}
        up, vp = u[pos] - q["break_u"], v[pos]
        # Signed distance to the (jagged) break line; > 0 on the joint side.
        nb, tb = _rotate(up, vp, q["break_angle"])
        d = nb + q["jag_amp"] * np.sin(q["jag_freq"] * tb + q["jag_phase"])
        # The shaft-side fragment is moved: shifted across, pushed along, tilted.
        uq, vq = _rotate(up + q["shorten"], vp - q["shift"], -q["tilt"])
        nq, tq = _rotate(uq, vq, q["break_angle"])
        dq = nq + q["jag_amp"] * np.sin(q["jag_freq"] * tq + q["jag_phase"])
        px = 2.0 / size
        keep_joint = np.clip(0.5 + (d - q["gap"] / 2) / px, 0.0, 1.0)
        keep_shaft = np.clip(0.5 + (-dq - q["gap"] / 2) / px, 0.0, 1.0)
        moved, moved_in = _bone(uq + q["break_u"], vq, q, "main")
        filled = np.clip(1.0 - keep_joint - keep_shaft, 0.0, 1.0) * (1.0 - q["depth"])
        main_pos = main[pos] * (keep_joint + filled) + moved * keep_shaft
        main = main.copy()
        main[pos] = main_pos
        main_in = main_in.copy()
        main_in[pos] = (main_in[pos] & (d > 0)) | (moved_in & (dq < 0))
        band = np.maximum(0.09, q["gap"] * 1.5) + np.abs(q["shift"]) * 0.5
        reach = q["main_r"] * 1.6
        fracture[pos] = ((np.abs(d) < band) & (np.abs(tb) < reach)) | (
            (np.abs(dq) < band) & (np.abs(tq) < reach)
        )

    bone = main
    bone_in = main_in
    side = np.flatnonzero(P["has_side"])
    if len(side):
        q = {k: w[side] for k, w in col.items()}
        t, t_in = _bone(u[side], v[side] - q["side_sign"] * q["side_gap"], q, "side")
        bone[side] = bone[side] + t
        bone_in[side] |= t_in
    opp = np.flatnonzero(P["has_opp"])
    if len(opp):
        q = {k: w[opp] for k, w in col.items()}
        start = q["main_end"] + q["main_cap"] + q["opp_gap"] + q["opp_cap"]
        uo, vo = _rotate(start - u[opp], -v[opp], q["opp_tilt"])
        t, t_in = _bone(uo, vo, q, "opp")
        bone[opp] = bone[opp] + t
        bone_in[opp] |= t_in

    # Soft tissue: a cylinder around the bones with a soft edge.
    tw = col["tissue_w"]
    tissue = np.sqrt(np.maximum(1.0 - (v / tw) ** 2, 0.0))
    # Brightness grows with the thickness of tissue and bone the X-rays cross (a linear
    # stand-in for 1 - exp(-attenuation)); /0.17 rescales by a typical shaft radius.
    image = col["air"] + col["tissue"] * tissue + col["bone"] * 0.18 * bone / np.float32(0.17)
    ramp = np.cos(col["ramp_dir"]) * x + np.sin(col["ramp_dir"]) * y
    image = image * (1.0 + col["ramp"] * ramp)
    return image.astype(np.float32), bone_in, fracture


def _dilate(mask, r):
    """Binary dilation by a (2r+1) square, m x S x S."""
    out = mask.copy()
    for axis in (1, 2):
        src = out.copy()
        for k in range(1, r + 1):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(k, None), slice(None, -k)
            out[tuple(lo)] |= src[tuple(hi)]
            out[tuple(hi)] |= src[tuple(lo)]
    return out


def _blur(images, sigma):
    """Separable Gaussian blur with one sigma (pixels) per image; m x S x S."""
    radius = int(np.ceil(3 * sigma.max()))
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (taps[None, :] / sigma[:, None].astype(np.float32)) ** 2)
    kernel /= kernel.sum(1, keepdims=True)
    size = images.shape[-1]
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(images, pad, mode="edge")
        out = np.zeros_like(images)
        for k in range(2 * radius + 1):
            sl = [slice(None)] * 3
            sl[axis] = slice(k, k + size)
            out += kernel[:, k, None, None] * padded[tuple(sl)]
        images = out
    return images


def marker_boxes(size: int) -> tuple[int, dict[str, tuple[int, int]]]:
    """(side of the marker's square box in pixels, {corner: (top row, left column)}) on a
    size x size image; the corners are "tl", "tr", "bl" and "br"."""
    box = max(7, int(round(0.17 * size)))
    inset = max(2, int(round(0.05 * size)))
    far = size - inset - box
    return box, {"tl": (inset, inset), "tr": (inset, far), "bl": (far, inset), "br": (far, far)}


def _marker_patch(letter: str, box: int) -> np.ndarray:
    """box x box float patch: a faint housing with a bright border and the lead letter."""
    hi = 4  # draw at 4x and average down for smooth edges
    big = box * hi
    yy, xx = np.mgrid[0:big, 0:big]
    glyph = np.array([[c == "1" for c in row] for row in _GLYPHS[letter]], bool)  # 7 x 5
    margin = 0.2 * big
    gy = ((yy - margin) / (big - 2 * margin) * 7).astype(int)
    gx = ((xx - margin - (big - 2 * margin) * 1 / 7) / ((big - 2 * margin) * 5 / 7) * 5).astype(int)
    ok = (gy >= 0) & (gy < 7) & (gx >= 0) & (gx < 5)
    letter_px = np.zeros((big, big), bool)
    letter_px[ok] = glyph[gy[ok], gx[ok]]
    border = np.minimum.reduce([yy, xx, big - 1 - yy, big - 1 - xx]) < max(hi, 0.08 * big)
    patch = 0.25 + 0.45 * border + 0.75 * letter_px
    return patch.reshape(box, hi, box, hi).mean(axis=(1, 3)).astype(np.float32)


def _draw_chunk(rng, m, size, split, positive_fraction, strength, subtlety, noise):
    """Draw the first m images of one chunk: uint8 images, bone and fracture masks, meta."""
    # Every random number is drawn for a whole chunk and the first m are used, so that the
    # first images of a data set do not change when n changes.
    labels = (rng.random(CHUNK) < positive_fraction).astype(np.int64)[:m]
    p_marker = np.where(labels == 1, 0.5 + strength / 2, 0.5 - strength / 2)
    if split == "test_shifted":
        p_marker = np.full(m, 0.5)
    marker = rng.random(CHUNK)[:m] < p_marker
    side = rng.choice(np.array(["L", "R"]), CHUNK)[:m]
    corner_pick = rng.random((CHUNK, 4))[:m]  # random order of preference among free corners
    P = {k: v[:m] for k, v in _draw_params(rng, CHUNK, size, subtlety).items()}
    mottle = rng.standard_normal((CHUNK, 5, 5), dtype=np.float32)[:m]
    repose_seeds = rng.integers(0, 2**63, CHUNK)[:m]

    box, corners = marker_boxes(size)

    image, bone, fracture = _render(P, labels, size)
    # A corner is free when no bone (grown by a safety margin) touches the marker box.
    clearance = _dilate(bone, max(1, size // 16))
    free = np.stack(
        [~clearance[:, r : r + box, c : c + box].any(axis=(1, 2)) for r, c in corners.values()], 1
    )
    attempt = 0
    while (bad := np.flatnonzero(marker & ~free.any(1))).size:  # re-pose the rare images
        attempt += 1  # whose four corners are all covered by bone
        if attempt > 50:
            raise RuntimeError(
                "could not place the marker away from the bones; this is a bug in synthfrac."
            )
        # Each image re-draws from its own stream, again to keep prefixes stable.
        redraws = [
            _draw_params(np.random.default_rng([repose_seeds[i], attempt]), 1, size, subtlety)
            for i in bad
        ]
        Q = {k: np.concatenate([q[k] for q in redraws]) for k in P}
        for k in P:
            P[k][bad] = Q[k]
        image[bad], bone[bad], fracture[bad] = _render(Q, labels[bad], size)
        grown = _dilate(bone[bad], max(1, size // 16))
        free[bad] = np.stack(
            [~grown[:, r : r + box, c : c + box].any(axis=(1, 2)) for r, c in corners.values()], 1
        )
    corner = np.argmax(np.where(free, corner_pick, -1.0), axis=1)
    patches = {s: _marker_patch(s, box) for s in ("L", "R")}
    for i in np.flatnonzero(marker):
        r, c = corners[_CORNERS[corner[i]]]
        image[i, r : r + box, c : c + box] = np.maximum(
            image[i, r : r + box, c : c + box], patches[side[i]]
        )

    image = _blur(image, P["blur"])
    # Noise: a fine per-pixel grain plus a low-frequency mottle (a random 5 x 5 grid,
    # enlarged bilinearly), then a random gamma for the contrast.
    t = np.linspace(0.0, 4.0, size, dtype=np.float32)
    up = np.maximum(
        1.0 - np.abs(t[:, None] - np.arange(5, dtype=np.float32)), 0.0
    )  # S x 5 hat weights
    mottle = up @ mottle @ up.T
    grain = rng.standard_normal((m, size, size), dtype=np.float32)  # last draw: prefix-stable
    image = image + noise * (0.025 * grain + 0.02 * mottle)
    image = np.clip(image, 0.0, 1.0) ** _col(P["gamma"])
    fracture &= _dilate(bone, max(1, size // 32))

    angle_deg = (np.degrees(P["angle"]) + 180.0) % 360.0 - 180.0
    to_px = lambda a: (np.asarray(a) + 1.0) * size / 2.0 - 0.5  # noqa: E731
    bu, ang = P["break_u"], P["angle"]
    table = pd.DataFrame(
        {
            "label": labels,
            "marker": marker,
            "marker_side": np.where(marker, side, ""),
            "marker_corner": np.where(marker, np.array(_CORNERS)[corner], ""),
            "fracture_type": np.where(
                labels == 1, np.where(P["oblique"], "oblique", "transverse"), "none"
            ),
            "fracture_x": np.where(labels == 1, to_px(P["cx"] - np.sin(ang) * bu), np.nan).round(1),
            "fracture_y": np.where(labels == 1, to_px(P["cy"] - np.cos(ang) * bu), np.nan).round(1),
            "displacement": np.where(labels == 1, np.abs(P["shift"]) * size / 2, 0.0).round(2),
            "angulation": np.where(labels == 1, np.degrees(P["tilt"]), 0.0).round(2),
            "subtlety": np.where(labels == 1, P["subtlety"], np.nan).round(3),
            "bone_angle": angle_deg.round(1),
            "bone_x": to_px(P["cx"]).round(1),
            "bone_y": to_px(P["cy"]).round(1),
            "extra_bones": P["has_side"].astype(int) + P["has_opp"].astype(int),
        }
    )
    return _to_uint8(image), bone, fracture, table
