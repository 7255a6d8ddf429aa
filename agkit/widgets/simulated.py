"""A simulated annotator: marks the evidence with the widget's own tools, as a person would.

A person does not trace SynthFrac's masks pixel by pixel. Following the guide of notebook 2
they drag a **box** around the break of a fractured bone and paint the intact bone of a
normal image with the **brush**: one stroke along each bone, about as wide as the bone,
the hand a pixel or two off. ``gestures`` turns a true mask into those gestures, with
``jitter`` pixels of imprecision; ``draw`` replays them on anything with the widget's
``draw_box`` and ``paint`` (a ``MaskAnnotator``, which saves to its store as the mouse
does, or a bare ``MaskEditor``); ``simulated_mask`` gives the pixels a simulated person
would draw for one image, and ``simulate_annotator`` marks a widget's proposed images.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import ndimage

from agkit.widgets.editor import MaskEditor

FRACTURED = 1  # the label whose evidence is boxed; the other class's bones are painted


def gestures(truth, label: int, rng: np.random.Generator, jitter: float = 2) -> list[tuple]:
    """The gestures a person makes to mark ``truth`` (an H x W 0/1 array).

    Returns ("box", x0, y0, x1, y1) for a fractured image (``label`` 1): the box around the
    mask, each corner moved by up to ``jitter`` pixels; for a normal one ("stroke", points,
    radius) per bone (a connected part of the mask): points along the bone's long axis,
    each off by about ``jitter`` / 2 pixels, and a radius of half the bone's mean width.
    An empty ``truth`` gives no gesture.
    """
    truth = np.asarray(truth) > 0
    if not truth.any():
        return []
    h, w = truth.shape
    if label == FRACTURED:
        ys, xs = np.nonzero(truth)
        corners = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
        corners += rng.integers(-int(jitter), int(jitter) + 1, size=4)
        x0, y0, x1, y1 = np.clip(corners, 0, [w, h, w, h]).astype(int).tolist()
        return [("box", x0, y0, x1, y1)] if x1 > x0 and y1 > y0 else []
    parts, count = ndimage.label(truth)
    strokes = []
    for part in range(1, count + 1):
        ys, xs = np.nonzero(parts == part)
        if len(xs) < 4:
            continue  # a speck no one would paint
        centre = np.array([xs.mean(), ys.mean()]) + 0.5
        points = np.stack([xs, ys], axis=1) + 0.5 - centre
        axis = np.linalg.eigh(np.cov(points.T))[1][:, -1]  # the long axis of the bone
        along = points @ axis
        length = along.max() - along.min() + 1
        radius = max(1.0, len(xs) / length / 2)  # area / length: the mean width
        ends = np.linspace(along.min() + radius / 2, along.max() - radius / 2, 8)
        path = centre + ends[:, None] * axis + rng.normal(0, jitter / 2, size=(8, 2))
        strokes.append(("stroke", np.clip(path, 0, [w, h]).tolist(), radius))
    return strokes


def draw(target, moves: list[tuple]) -> None:
    """Replay ``gestures`` on ``target`` (a MaskAnnotator or a MaskEditor)."""
    for move in moves:
        if move[0] == "box":
            target.draw_box(*move[1:])
        else:
            target.paint(*move[1:])


def simulated_mask(truth, label: int, rng: np.random.Generator, jitter: float = 2) -> np.ndarray:
    """H x W uint8 0/1: what the simulated person draws for one image (``gestures``)."""
    editor = MaskEditor(np.zeros(np.asarray(truth).shape, np.uint8))
    draw(editor, gestures(truth, label, rng, jitter))
    return editor.mask


def simulate_annotator(widget, truth, labels, order, n: int, jitter: float = 2, seed: int = 0):
    """Mark the first ``n`` images of ``order`` (indices into the widget's images) through
    ``widget``, from their true masks (``truth`` n x 1 x H x W) and ``labels``; an image
    that already has a mask is left as it is (a person's drawing is never overwritten).
    Returns the number of images marked now."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n must be a whole number >= 0 (the images to mark), got {n!r}.")
    if (
        isinstance(jitter, bool)
        or not isinstance(jitter, numbers.Real)
        or not 0 <= jitter < math.inf
    ):
        raise ValueError(
            f"jitter must be a finite number >= 0 (pixels the hand is off), got {jitter!r}."
        )
    rng = np.random.default_rng(seed)
    marked = 0
    for index in order[:n]:
        widget.go_to(index)
        if widget.current_mask.any():
            continue
        draw(widget, gestures(np.asarray(truth[index, 0]), int(labels[index]), rng, jitter))
        marked += 1
    return marked
