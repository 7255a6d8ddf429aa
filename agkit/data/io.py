"""The one image reader of agkit: every image file or array becomes float32 in [0, 1].

Every path that reads pixels goes through this module: ``read_image``, GuidedDataset
(file paths and callables), the real-dataset loaders, ``load_synthfrac`` and the
annotation widget (``to_array``).

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

A constant image that needs min/max scaling (max == min) reads as zeros. Colour images
keep 3 channels (alpha dropped, palettes expanded); ``in_channels`` asks for 1 (gray,
ITU-R 601-2 luma weights, as PIL's RGB -> L) or 3 (gray copied three times).

Damaged files: a zero-byte file, a file that is not an image, or a JPEG/PNG cut short is
*corrupt*. Datasets find them when they are built (``check_images``), not later inside
``ds[i]``, and apply the ``on_corrupt`` policy:

* ``"error"``: raise CorruptImageError naming the file(s) and the fix;
* ``"skip"``: leave the corrupt files out, with one warning that counts them;
* ``"load"``: decode truncated files as far as they go (PIL fills the missing rows) and
  skip the files that cannot be decoded at all, with one warning.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageFile

__all__ = [
    "CorruptImageError",
    "ON_CORRUPT",
    "read_image",
    "decode",
    "scale",
    "to_array",
    "image_to_tensor",
    "to_channels",
    "image_size",
    "corrupt_reason",
    "check_images",
]

ON_CORRUPT = ("error", "skip", "load")
_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601-2 weights, the same as PIL's RGB -> L


class CorruptImageError(OSError, ValueError):
    """An image file is empty, not an image, or cut short (an OSError and a ValueError, the
    two types earlier versions raised)."""


def old_names(
    where: str, in_channels: int, on_corrupt: str, channels=None, load_truncated=None
) -> tuple[int, str]:
    """(in_channels, on_corrupt) after applying the deprecated names channels= and
    load_truncated= (kept for one release), with a DeprecationWarning for each one used."""
    if channels is not None:
        warnings.warn(
            f"{where}(channels=...) is now in_channels=...", DeprecationWarning, stacklevel=3
        )
        in_channels = channels
    if load_truncated is not None:
        warnings.warn(
            f"{where}(load_truncated=True) is now on_corrupt='load'",
            DeprecationWarning,
            stacklevel=3,
        )
        on_corrupt = "load" if load_truncated else "error"
    return in_channels, check_on_corrupt(on_corrupt)


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


@contextlib.contextmanager
def _opened(source):
    """A binary handle for a path or an already open binary file."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            yield handle
    else:
        yield source


# ------------------------------------------------------------------------------ decoding
def _pixels(image: Image.Image) -> np.ndarray:
    """A decoded PIL image -> H x W or H x W x 3 array in its stored dtype."""
    mode = image.mode
    if mode == "1":
        return np.array(image, dtype=bool)
    if mode.startswith("I;16"):
        return np.array(image).astype(np.uint16)
    if mode in ("L", "RGB", "I", "F"):
        return np.array(image)  # uint8, uint8, int32, float32; a writable copy
    if mode in ("LA", "La"):
        return np.array(image.convert("L"))
    return np.array(image.convert("RGB"))  # palette, alpha, CMYK, YCbCr, ...


def decode(source, name: str | None = None, *, truncated_ok: bool = False) -> np.ndarray:
    """Decode an image file (path or binary handle) without scaling.

    Returns H x W or H x W x 3 in the stored dtype (bool, uint8, uint16, int32 or float32).
    truncated_ok: decode a file cut short as far as it goes instead of raising.
    Raises CorruptImageError naming the file for an empty, undecodable or truncated file.
    EXIF orientation is not applied.
    """
    name = name or str(source)
    try:
        with _opened(source) as handle, _truncated_allowed(truncated_ok):
            if not handle.read(1):
                raise CorruptImageError(
                    f"The image file {name} is empty (0 bytes); restore it "
                    "or leave it out (on_corrupt='skip')."
                )
            handle.seek(0)
            with Image.open(handle) as image:
                image.load()
                return _pixels(image)
    except CorruptImageError:
        raise
    except FileNotFoundError:
        raise FileNotFoundError(f"No image file at {name}.") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for bad files
        if "truncated" in str(e).lower():
            raise CorruptImageError(
                f"The image file {name} is truncated ({e}); replace it, read "
                "what is there with on_corrupt='load', or leave it out with "
                "on_corrupt='skip'."
            ) from e
        raise CorruptImageError(
            f"The image file {name} cannot be decoded ({e}); replace it, or "
            "leave it out with on_corrupt='skip'."
        ) from e


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
    low, high = values.min(), values.max()
    if np.issubdtype(arr.dtype, np.floating) and low >= 0 and high <= 1:
        return values.astype(np.float32)
    if high == low:
        return np.zeros(arr.shape, np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def _layout(arr: np.ndarray, name: str) -> np.ndarray:
    """H x W, H x W x C or (torch layout) C x H x W -> H x W or H x W x 3 (alpha dropped)."""
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # C x H x W -> H x W x C
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):
        arr = arr[..., :-1]  # drop alpha
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise ValueError(
            f"{name}: expected an H x W, H x W x 3 or C x H x W image, got shape {arr.shape}."
        )
    return arr


def to_array(image_like, name: str | None = None, *, truncated_ok: bool = False) -> np.ndarray:
    """Any image -> H x W (gray) or H x W x 3 (colour) float32 array in [0, 1].

    image_like: a file path, an open binary file, a PIL image, a NumPy array (H x W,
    H x W x C or C x H x W) or a torch tensor (H x W or C x H x W). Values are scaled by
    the module's rule.
    """
    if isinstance(image_like, (str, os.PathLike)) or hasattr(image_like, "read"):
        name = name or str(image_like)
        arr = decode(image_like, name, truncated_ok=truncated_ok)
    elif isinstance(image_like, Image.Image):
        arr = _pixels(image_like)
    elif isinstance(image_like, torch.Tensor):
        arr = image_like.detach().cpu().numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3):
            arr = np.moveaxis(arr, 0, -1)  # a tensor is C x H x W, even 1 x H x 4
    else:
        arr = np.asarray(image_like)
    name = name or "image"
    return np.ascontiguousarray(scale(_layout(arr, name), name))


def to_channels(image: torch.Tensor, in_channels: int) -> torch.Tensor:
    """C x H x W -> in_channels x H x W (gray <-> RGB)."""
    c = image.shape[0]
    if c == in_channels:
        return image
    if c == 1 and in_channels == 3:
        return image.expand(3, -1, -1).clone()
    if c == 3 and in_channels == 1:
        return torch.tensordot(_LUMA.to(image.dtype), image, dims=1).unsqueeze(0)
    raise ValueError(
        f"cannot turn a {c}-channel image into {in_channels} channels; "
        "images must have 1 or 3 channels."
    )


def image_to_tensor(
    image_like, in_channels: int = 1, name: str | None = None, *, truncated_ok: bool = False
) -> torch.Tensor:
    """Any image (see to_array) -> in_channels x H x W float32 tensor in [0, 1]."""
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}.")
    arr = to_array(image_like, name, truncated_ok=truncated_ok)
    image = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
    return to_channels(image, in_channels)


def read_image(
    path, in_channels: int = 1, *, on_corrupt: str = "error", channels=None, load_truncated=None
) -> torch.Tensor:
    """Read an image file as an in_channels x H x W float32 tensor in [0, 1].

    Values are scaled by the rule in the module docstring (uint8 / 255; 16-bit and float by
    their real range; float already in [0, 1] kept). RGB becomes gray with PIL's luma
    weights when in_channels=1; gray is copied into 3 channels when in_channels=3.
    on_corrupt: "error" raises CorruptImageError naming the file; "load" decodes a
    truncated file as far as it goes ("skip" belongs to datasets, not to one file).
    channels, load_truncated: old names of in_channels and on_corrupt="load" (deprecated).
    """
    in_channels, on_corrupt = old_names(
        "read_image", in_channels, on_corrupt, channels, load_truncated
    )
    if on_corrupt == "skip":
        raise ValueError(
            "read_image reads one file and cannot skip it; use on_corrupt='error' "
            "or 'load' (datasets accept 'skip')."
        )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}.")
    return image_to_tensor(path, in_channels, str(path), truncated_ok=on_corrupt == "load")


def image_size(source) -> tuple[int, int]:
    """(H, W) of an image file (path or binary handle), read from its header only."""
    with _opened(source) as handle, Image.open(handle) as image:
        width, height = image.size
    return height, width


# -------------------------------------------------------------------- finding bad files
_END_MARKERS = {b"\xff\xd8": b"\xff\xd9", b"\x89P": b"IEND"}  # JPEG: EOI marker; PNG: IEND


def corrupt_reason(handle: BinaryIO) -> str | None:
    """Why the image in ``handle`` is corrupt ("empty", "not an image", "truncated"), or None.

    Cheap for good files: reads the header and the last 64 bytes; only a JPEG or PNG that
    lacks its end marker is decoded completely.
    """
    start = handle.read(2)
    if not start:
        return "empty (0 bytes)"
    handle.seek(0)
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
