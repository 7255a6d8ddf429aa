"""The one image reader of agkit: every image file or array becomes float32 in [0, 1].

Every path that reads pixels goes through this module: ``read_image``, GuidedDataset
(file paths and callables), the real-dataset loaders, ``load_synthfrac`` and the
annotation widget (``to_array``). It reads what PIL reads (PNG, JPEG, TIFF, BMP, ...) and
DICOM files (named .dcm or .dicom, or with "DICM" at byte 128) through pydicom, the
optional extra ``pip install "agkit[dicom]"``.

How stored values become [0, 1] is the one scaling rule (``agkit.data.image_scale``);
DICOM files are windowed as a viewer shows them (``agkit.data.dicom``); damaged files follow
the ``on_corrupt`` policy (``agkit.data.corrupt_policy``), and datasets find them when they
are built (``agkit.data.corrupt_files``).

Colour images keep 3 channels (alpha dropped, palettes expanded); ``in_channels`` asks for 1
(gray, ITU-R 601-2 luma weights, as PIL's RGB -> L) or 3 (gray copied three times).
``to_array`` gives H x W or H x W x 3 float32 arrays, ``image_to_tensor`` and ``read_image``
C x H x W float32 tensors.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from agkit.data.corrupt_policy import CorruptImageError, _truncated_allowed, check_on_corrupt
from agkit.data.dicom import _decode_dicom, _name_of, _read_dicom, is_dicom
from agkit.data.image_scale import scale

__all__ = [
    "read_image",
    "decode",
    "to_array",
    "image_to_tensor",
    "to_channels",
    "image_size",
]

_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601-2 weights, the same as PIL's RGB -> L


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

    Returns H x W or H x W x 3 in the stored dtype (bool, uint8, uint16, int32 or float32);
    a gray DICOM file comes back as H x W float32 already in [0, 1], since windowing is how
    DICOM says its values become brightness (see the module docstring).
    truncated_ok: decode a file cut short as far as it goes instead of raising (not DICOM).
    Raises CorruptImageError naming the file for an empty, undecodable or truncated file.
    EXIF orientation is not applied.
    """
    name = name or str(source)
    try:
        with _opened(source) as handle:
            if not handle.read(1):
                raise CorruptImageError(
                    f"The image file {name} is empty (0 bytes); restore it "
                    "or leave it out (on_corrupt='skip')."
                )
            if is_dicom(handle, name):
                return _decode_dicom(handle, name)
            return _decode_pil(handle, name, truncated_ok)
    except FileNotFoundError:
        raise FileNotFoundError(f"No image file at {name}.") from None


def _decode_pil(handle: BinaryIO, name: str, truncated_ok: bool) -> np.ndarray:
    try:
        with _truncated_allowed(truncated_ok), Image.open(handle) as image:
            image.load()
            return _pixels(image)
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


def read_image(path, in_channels: int = 1, *, on_corrupt: str = "error") -> torch.Tensor:
    """Read an image file as an in_channels x H x W float32 tensor in [0, 1].

    Values are scaled by the rule in the module docstring (uint8 / 255; 16-bit and float by
    their real range; float already in [0, 1] kept; DICOM through its window). RGB becomes
    gray with PIL's luma weights when in_channels=1; gray is copied into 3 channels when
    in_channels=3.
    on_corrupt: "error" raises CorruptImageError naming the file; "load" decodes a
    truncated file as far as it goes ("skip" belongs to datasets, not to one file).
    """
    on_corrupt = check_on_corrupt(on_corrupt)
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
    name = str(source) if isinstance(source, (str, os.PathLike)) else _name_of(source)
    with _opened(source) as handle:
        if is_dicom(handle, name):
            header = _read_dicom(handle, name, stop_before_pixels=True)
            return int(header.Rows), int(header.Columns)
        with Image.open(handle) as image:
            width, height = image.size
    return height, width
