"""One mask PNG of a MaskStore: its file name, its text chunks, and reading it back.

A mask PNG is 8-bit grayscale, background 0 and mask 255 (readable in any image viewer),
and carries its image id and provenance in PNG text chunks, so a folder can be re-indexed
from the PNGs alone. ``_read_png`` gives it back as an H x W uint8 array of 0/1.

Image ids can be any string, including paths such as
"MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png".  The PNG name is the id
with every character outside [A-Za-z0-9._-] replaced by "_" (shortened to 80 characters),
followed by "-" and the first 10 hex digits of the SHA-1 of the id, e.g.
"MURA-v1.1_train_XR_WRIST_patient00001_study1_positive_image1.png-3f2a9c01be.png".
The hash keeps two ids apart even when they sanitise to the same text.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["CorruptMaskError", "safe_file_name"]

_ID_KEY = "agkit:image_id"  # PNG text chunk names
_PROV_KEY = "agkit:provenance"


class CorruptMaskError(ValueError):
    """A mask PNG cannot be read (truncated, not a PNG, wrong content)."""


# ----------------------------------------------------------------------------- helpers
def safe_file_name(image_id: str) -> str:
    """Readable, unique PNG file name for an image id (see the module docstring)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", image_id)[:80].lstrip(".") or "mask"
    digest = hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:10]
    return f"{stem}-{digest}.png"


def _read_png(path: Path, fix: str) -> tuple[np.ndarray, str | None, dict]:
    """Read a mask PNG -> (H x W uint8 0/1, stored image id or None, stored provenance)."""
    fix = fix or "delete or replace the file"
    try:
        with Image.open(path) as im:
            im.load()
            mode, text = im.mode, dict(getattr(im, "text", {}) or {})
            arr = np.asarray(im)
    except (
        Exception
    ) as e:  # PIL raises OSError, SyntaxError, ValueError, zlib errors ... for bad files
        raise CorruptMaskError(
            f"The mask file {path} is truncated or not a valid PNG ({e}); {fix}."
        ) from e
    if mode not in ("L", "1"):
        raise CorruptMaskError(
            f"The mask file {path} is a {mode} image, not 8-bit grayscale; {fix}."
        )
    if arr.dtype != bool and arr.max(initial=0) > 1:
        if np.any((arr != 0) & (arr != 255)):
            raise CorruptMaskError(f"The mask file {path} has values other than 0 and 255; {fix}.")
    try:
        prov = json.loads(text.get(_PROV_KEY, "{}"))
    except json.JSONDecodeError:
        prov = {}
    return (arr > 0).astype(np.uint8), text.get(_ID_KEY), prov if isinstance(prov, dict) else {}
