"""The one image reader of agkit: every image file or array becomes float32 in [0, 1].

Every path that reads pixels goes through this module: ``read_image``, GuidedDataset
(file paths and callables), the real-dataset loaders, ``load_synthfrac`` and the
annotation widget (``to_array``). It reads what PIL reads (PNG, JPEG, TIFF, BMP, ...) and
DICOM files (named .dcm or .dicom, or with "DICM" at byte 128) through pydicom, the
optional extra ``pip install "agkit[dicom]"``.

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

DICOM files are shown as a DICOM viewer shows them (PS3.3 C.11), through pydicom.pixels:

1. modality LUT: Rescale Slope and Intercept (or a Modality LUT) -> physical values;
2. VOI LUT if the file has one, else its first window (Window Center / Width; LINEAR,
   LINEAR_EXACT or SIGMOID). Its output range is known, and becomes [0, 1] linearly: the
   window's lowest and highest outputs go to 0 and 1 (so values below the window read 0
   and above it 1, whatever the image holds), a VOI LUT of n-bit entries is divided by
   2**n - 1. A file with neither is scaled by its own min and max after step 1;
3. MONOCHROME1 (lowest value white) is inverted, 1 - v, so bone is bright.

Colour DICOM (RGB; YBR arrives as RGB) follows the table by its stored depth. One image per
file: multi-frame files are refused. Compressed transfer syntaxes decode where a pydicom
plugin for them is installed (Pillow, which agkit needs anyway, does JPEG and JPEG 2000;
pydicom itself RLE Lossless; ``pip install "agkit[dicom-codecs]"`` adds the rest);
otherwise reading the file names that extra.

A constant image that needs min/max scaling (max == min) reads as zeros. Colour images
keep 3 channels (alpha dropped, palettes expanded); ``in_channels`` asks for 1 (gray,
ITU-R 601-2 luma weights, as PIL's RGB -> L) or 3 (gray copied three times).

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
    "is_dicom",
    "DICOM_SUFFIXES",
]

ON_CORRUPT = ("error", "skip", "load")
DICOM_SUFFIXES = (".dcm", ".dicom")
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


# ---------------------------------------------------------------------------------- DICOM
_PIP_DICOM = 'pip install "agkit[dicom]"'
_PIP_CODECS = 'pip install "agkit[dicom-codecs]"'
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")


def _name_of(handle) -> str:
    return str(getattr(handle, "name", "") or "the DICOM file")


def is_dicom(handle: BinaryIO, name: str = "") -> bool:
    """True for a file named .dcm/.dicom or holding "DICM" at byte 128 (the DICOM Part 10
    preamble); ``handle`` is back at the start afterwards."""
    handle.seek(0)
    if Path(str(name)).suffix.lower() in DICOM_SUFFIXES:
        return True
    magic = handle.read(132)[128:]
    handle.seek(0)
    return magic == b"DICM"


def _pydicom(name: str):
    """pydicom, or an ImportError that names the extra to install."""
    try:
        import pydicom
        import pydicom.pixels
    except ImportError:
        raise ImportError(
            f"{name} is a DICOM file, and reading DICOM needs pydicom: {_PIP_DICOM}."
        ) from None
    return pydicom


def _read_dicom(handle: BinaryIO, name: str, **options):
    """The file's pydicom Dataset (options go to dcmread), refused when agkit cannot read it:
    more than one frame, an unsupported colour model, or a compression without a decoder."""
    pydicom = _pydicom(name)
    handle.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns as well as we raise below
            # force: also old files without the 128-byte preamble that are named .dcm
            ds = pydicom.dcmread(handle, force=True, **options)
        frames = int(ds.get("NumberOfFrames") or 1)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        syntax = ds.file_meta.get("TransferSyntaxUID")
    except Exception as e:  # pydicom raises many types for a file that is not DICOM
        raise CorruptImageError(
            f"The DICOM file {name} cannot be read ({e}); replace it, or leave it out "
            "with on_corrupt='skip'."
        ) from e
    if frames > 1:
        raise ValueError(
            f"{name} is a multi-frame DICOM ({frames} frames) and agkit reads one image per "
            "file; save the frame you want as a file of its own (pydicom: ds.pixel_array[i])."
        )
    if photometric not in ("MONOCHROME1", "MONOCHROME2", *_COLOUR):
        raise ValueError(
            f"{name} has Photometric Interpretation {photometric}; agkit reads "
            "MONOCHROME1, MONOCHROME2 and RGB/YBR DICOM images, so convert it to one of them."
        )
    if _compressed(syntax):
        try:
            decoder = pydicom.pixels.get_decoder(syntax)
        except NotImplementedError:
            raise ValueError(
                f"{name} uses the transfer syntax {syntax}, which pydicom has no decoder "
                "for; convert it to an uncompressed DICOM or a PNG."
            ) from None
        if not decoder.is_available:
            raise ImportError(
                f"{name} is compressed as {syntax.name}, which needs a decoder that is not "
                f"installed: {_PIP_CODECS} (pydicom's pixel-data plugins)."
            )
    return ds


def _compressed(syntax) -> bool:
    """A compressed transfer syntax (a private or unknown one counts as compressed)."""
    return syntax is not None and (not syntax.is_transfer_syntax or syntax.is_compressed)


def _decode_dicom(handle: BinaryIO, name: str) -> np.ndarray:
    """A DICOM file -> H x W float32 in [0, 1] (gray) or H x W x 3 stored (colour)."""
    ds = _read_dicom(handle, name)
    if "PixelData" not in ds:
        raise CorruptImageError(
            f"The DICOM file {name} holds no pixel data (it is cut short, or not an image); "
            "replace it, or leave it out with on_corrupt='skip'."
        )
    try:
        stored = ds.pixel_array  # decompressed, YBR converted to RGB
        if ds.PhotometricInterpretation in _COLOUR:
            return stored
        return _dicom_gray(stored, ds)
    # pixel data cut short, a missing or contradictory header value
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, KeyError) as e:
        raise CorruptImageError(
            f"The DICOM file {name} cannot be decoded ({e}); replace it, or leave it out "
            "with on_corrupt='skip'."
        ) from e


def _dicom_gray(stored: np.ndarray, ds) -> np.ndarray:
    """H x W stored values -> H x W float32 in [0, 1], bone bright (the module's DICOM rule)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(stored, ds)
    if ds.get("VOILUTSequence"):  # preferred over a window, as apply_voi_lut does
        values = np.rint(values).astype(np.int64)  # a LUT is indexed by whole numbers
        low, high = 0, 2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1  # PS3.3 C.11.2.1.1
        gray = (apply_voi_lut(values, ds) - low) / (high - low)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        # the window's output range: what it gives the darkest and the brightest values
        low, high = apply_voi_lut(np.array([-np.inf, np.inf]), ds)
        gray = (apply_voi_lut(values, ds) - low) / (high - low)
    else:
        gray = _stretch(np.asarray(values, np.float64))
    if ds.PhotometricInterpretation == "MONOCHROME1":
        gray = 1 - gray  # MONOCHROME1 shows its lowest value white
    return np.clip(gray, 0, 1).astype(np.float32)


def _dicom_reason(handle: BinaryIO, name: str) -> str | None:
    """corrupt_reason for a DICOM file: the header parses and the pixel data is complete
    (its bytes are counted, not decoded)."""
    try:
        ds = _read_dicom(handle, name, defer_size=1024)  # pixel data left on disk
    except CorruptImageError:
        return "not a readable DICOM file"
    from pydicom.pixels.utils import get_expected_length

    pixels = ds.get_item(0x7FE00010, keep_deferred=True)  # (7FE0,0010) Pixel Data
    if pixels is None:
        return "DICOM without pixel data (cut short, or not an image)"
    if not _compressed(ds.file_meta.get("TransferSyntaxUID")):
        if pixels.value is not None:
            present = len(pixels.value)
        else:  # deferred: the bytes the file still holds after the value's start
            present = min(pixels.length, handle.seek(0, io.SEEK_END) - pixels.value_tell)
        if present < get_expected_length(ds):
            return "DICOM cut short (it cannot be read in part)"
    return None


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
    their real range; float already in [0, 1] kept; DICOM through its window). RGB becomes
    gray with PIL's luma weights when in_channels=1; gray is copied into 3 channels when
    in_channels=3.
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
    name = str(source) if isinstance(source, (str, os.PathLike)) else _name_of(source)
    with _opened(source) as handle:
        if is_dicom(handle, name):
            header = _read_dicom(handle, name, stop_before_pixels=True)
            return int(header.Rows), int(header.Columns)
        with Image.open(handle) as image:
            width, height = image.size
    return height, width


# -------------------------------------------------------------------- finding bad files
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
