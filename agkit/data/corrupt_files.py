"""Finding corrupt image files cheaply, when a dataset is built (not later in ``ds[i]``).

``corrupt_reason`` says why one file is corrupt (empty, not an image, truncated), and
``check_images`` applies the on_corrupt policy of ``agkit.data.corrupt_policy`` to many.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
from PIL import Image

from agkit.data.corrupt_policy import CorruptImageError, _truncated_allowed, check_on_corrupt
from agkit.data.dicom import _dicom_reason, _name_of, is_dicom

__all__ = ["corrupt_reason", "check_images"]

_END_MARKERS = {b"\xff\xd8": b"\xff\xd9", b"\x89P": b"IEND"}  # JPEG: EOI marker; PNG: IEND


def corrupt_reason(handle: BinaryIO) -> str | None:
    """Why the image in ``handle`` is corrupt ("empty", "not an image", "truncated"), or None.

    Cheap for good files: reads the header and the last 64 bytes; only a JPEG or PNG that
    lacks its end marker is decoded completely. A DICOM file's header is read and its pixel
    data's length checked, without decoding it.
    Raises ImportError (naming the extra to install) for a DICOM file pydicom or one of
    its plugins is needed for, ValueError for a multi-frame DICOM.
    """
    start = handle.read(2)
    if not start:
        return "empty (0 bytes)"
    handle.seek(0)
    if is_dicom(handle, _name_of(handle)):
        return _dicom_reason(handle, _name_of(handle))
    try:
        with Image.open(handle) as image:
            image.size  # noqa: B018 - the header parsed
    except Exception:  # PIL raises many types for a file that is not an image
        return "not a readable image"
    end_marker = _END_MARKERS.get(start)
    if end_marker is None:
        return None  # other formats: PIL's header check is all we do up front
    handle.seek(0, io.SEEK_END)
    handle.seek(max(0, handle.tell() - 64))
    if end_marker in handle.read().rstrip(b"\x00 \r\n"):
        return None
    handle.seek(0)
    try:
        with _truncated_allowed(False), Image.open(handle) as image:
            image.load()
    except Exception:
        return "truncated"
    return None


def check_images(files, keys: Sequence[str], on_corrupt: str, title: str) -> np.ndarray:
    """Apply the on_corrupt policy to the images ``files.open(key)`` gives.

    Returns a bool array: True for the keys to keep. "error" raises CorruptImageError
    naming the files; "skip" and "load" warn once with the count (see the module docstring).
    """
    check_on_corrupt(on_corrupt)
    bad = {}
    for key in keys:
        with files.open(key) as handle:
            reason = corrupt_reason(handle)
        if reason is not None:
            bad[key] = reason
    if not bad:
        return np.ones(len(keys), dtype=bool)
    shown = ", ".join(f"{k!r} ({r})" for k, r in list(bad.items())[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    if on_corrupt == "error":
        raise CorruptImageError(
            f"{title}: {len(bad)} corrupt image file(s): {shown}{more}. Replace or delete them, "
            "or pass on_corrupt='skip' to leave them out (on_corrupt='load' reads truncated "
            "files as far as they go)."
        )
    dropped = {k for k, r in bad.items() if on_corrupt == "skip" or r != "truncated"}
    kept = len(bad) - len(dropped)
    message = f"{title}: {len(bad)} corrupt image file(s): {shown}{more}; "
    message += (
        f"skipped {len(dropped)}"
        + (f", loading {kept} truncated one(s) as far as they go" if kept else "")
        + "."
    )
    warnings.warn(message, stacklevel=3)
    return np.array([k not in dropped for k in keys], dtype=bool)
