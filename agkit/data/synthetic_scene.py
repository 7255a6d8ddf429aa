"""One chunk of SynthFrac images: anatomy, the marker in a free corner, blur and noise.

``_draw_chunk`` draws up to CHUNK images from one random stream and returns m x S x S uint8
images, m x S x S bool bone and fracture masks and the per-image meta table. Every random
number is drawn for the whole chunk, so the first images of a data set do not depend on n.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from agkit.data.synthetic_anatomy import _col, _draw_params, _render
from agkit.data.synthetic_marker import _CORNERS, _marker_patch, marker_boxes

CHUNK = 128  # images drawn per random stream; makes the first k images independent of n


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape, e.g. m x S x S) -> uint8 k of the same shape, k/255 nearest."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


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
