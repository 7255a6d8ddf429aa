"""Reading DICOM files: the header checks, the decoding, and windowing to [0, 1].

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

DICOM needs pydicom, the optional extra ``pip install "agkit[dicom]"``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np

from agkit.data.corrupt_policy import CorruptImageError
from agkit.data.image_scale import _stretch

__all__ = ["DICOM_SUFFIXES", "is_dicom"]

DICOM_SUFFIXES = (".dcm", ".dicom")

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
