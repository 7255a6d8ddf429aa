"""The one scaling rule of agkit: stored pixel values -> float32 in [0, 1].

How stored values become [0, 1] (the one scaling rule):

==========================  ================================================================
1-bit / bool                0 and 1
8-bit (uint8, PNG/JPEG)     value / 255
more than 8 bits (16-bit    (value - min) / (max - min), min and max taken over the image's
PNG/TIFF, 32-bit integer)   own pixels: its real range, whatever the container's bit depth
                            (a 12-bit radiograph in a 16-bit PNG uses the full [0, 1])
float (TIFF mode "F")       values already in [0, 1] are kept as they are; otherwise scaled
                            by min and max like 16-bit images; NaN or inf is an error
==========================  ================================================================

A constant image that needs min/max scaling (max == min) reads as zeros. Every reader
(``agkit.data.io``, ``agkit.data.dicom``) applies this rule.
"""

from __future__ import annotations

import numpy as np

from agkit.data.corrupt_policy import CorruptImageError

__all__ = ["scale"]


def scale(pixels, name: str = "image") -> np.ndarray:
    """Stored pixel values -> float32 in [0, 1] by the rule in the module docstring."""
    arr = np.asarray(pixels)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name}: pixel dtype {arr.dtype} is not an image; pass numbers.")
    values = arr.astype(np.float64)
    if values.size == 0:
        return values.astype(np.float32)
    if not np.isfinite(values).all():
        raise CorruptImageError(
            f"{name} holds NaN or inf values; fix the image (they have no "
            "brightness) or leave it out with on_corrupt='skip'."
        )
    if np.issubdtype(arr.dtype, np.floating) and values.min() >= 0 and values.max() <= 1:
        return values.astype(np.float32)
    return _stretch(values)


def _stretch(values: np.ndarray) -> np.ndarray:
    """(values - min) / (max - min) as float32; zeros for a constant image."""
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros(values.shape, np.float32)
    return ((values - low) / (high - low)).astype(np.float32)
