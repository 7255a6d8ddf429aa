"""SynthFrac's anatomy: random pose, bone and fracture parameters, and their rendering.

``_draw_params`` draws the parameters of m images (a dict of (m,) arrays); ``_render``
turns them into m x S x S float images (soft tissue and bones, brighter where the X-rays
cross more of them), m x S x S bool bone masks and m x S x S bool break regions. Bones are
drawn in a local frame (u along the shaft toward the joint, v across) on coordinate grids
that span -1..1 across the image.
"""

from __future__ import annotations

import numpy as np


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
