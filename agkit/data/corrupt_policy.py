"""Damaged image files: the error they raise and the ``on_corrupt`` policy for them.

Damaged files: a zero-byte file, a file that is not an image, or a JPEG/PNG/DICOM cut
short is *corrupt*. Datasets find them when they are built (``check_images``), not later
inside ``ds[i]``, and apply the ``on_corrupt`` policy:

* ``"error"``: raise CorruptImageError naming the file(s) and the fix;
* ``"skip"``: leave the corrupt files out, with one warning that counts them;
* ``"load"``: decode truncated files as far as they go (PIL fills the missing rows) and
  skip the files that cannot be decoded at all (a DICOM file cut short is one of them),
  with one warning.
"""

from __future__ import annotations

import contextlib

from PIL import ImageFile

__all__ = ["CorruptImageError", "ON_CORRUPT", "check_on_corrupt"]

ON_CORRUPT = ("error", "skip", "load")


class CorruptImageError(OSError, ValueError):
    """An image file is empty, not an image, or cut short (an OSError and a ValueError, the
    two types earlier versions raised)."""


def check_on_corrupt(on_corrupt: str) -> str:
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}.")
    return on_corrupt


@contextlib.contextmanager
def _truncated_allowed(allowed: bool):
    """Let PIL decode truncated files inside the block (PIL's switch is global)."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = allowed
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before
