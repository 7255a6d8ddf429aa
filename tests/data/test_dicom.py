"""DICOM through the one image reader (agkit.data.io): modality LUT, VOI LUT or window,
MONOCHROME1 inverted, the output range mapped to [0, 1]; checked against the DICOM
standard's formulas written out here (PS3.3 C.11.1, C.11.2.1.2, C.11.2.1.3.1)."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

pydicom = pytest.importorskip(
    "pydicom", minversion="3.0", reason='DICOM needs pydicom: pip install "agkit[dicom]"'
)
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.pixels import get_decoder  # noqa: E402
from pydicom.uid import (  # noqa: E402
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from agkit.data import open_dataset, read_image  # noqa: E402
from agkit.data.corrupt_files import corrupt_reason  # noqa: E402
from agkit.data.corrupt_policy import CorruptImageError  # noqa: E402
from agkit.data.io import decode, image_size  # noqa: E402

torch.set_num_threads(1)


def write_dicom(
    path,
    stored,
    *,
    photometric="MONOCHROME2",
    bits_stored=None,
    signed=False,
    window=None,
    function=None,
    rescale=None,
    lut=None,
    frames=1,
    syntax=ExplicitVRLittleEndian,
    pixel_data=None,
):
    """A DICOM file holding ``stored`` (frames x H x W or H x W, uint8/uint16/int16).

    window: (center, width); rescale: (slope, intercept); lut: (first mapped, bits, entries).
    pixel_data: bytes to store instead (for compressed syntaxes, encapsulated here).
    """
    stored = np.asarray(stored)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX image
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    if frames > 1:
        ds.NumberOfFrames = frames
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if function is not None:
        ds.VOILUTFunction = function
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if lut is not None:
        first, bits, entries = lut
        item = Dataset()
        item.add_new("LUTDescriptor", "US", [len(entries), first, bits])
        item.add_new("LUTData", "US", [int(e) for e in entries])
        ds.VOILUTSequence = [item]
    if pixel_data is None:
        ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
    else:
        ds.PixelData = encapsulate([pixel_data])
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    private = {"implicit_vr": False, "little_endian": True} if syntax.is_private else {}
    ds.save_as(path, enforce_file_format=True, **private)
    return path


def linear_window(x, center, width):
    """PS3.3 C.11.2.1.2.1 with output range [0, 1]."""
    return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0, 1)


def own_range(x):
    x = np.asarray(x, np.float64)
    return (x - x.min()) / (x.max() - x.min())


def read(path):
    return read_image(path)[0].numpy()


# ------------------------------------------------------------ the bundled CR radiograph
def test_bundled_cr_radiograph_is_rescaled_windowed_and_inverted_as_the_standard_says():
    path = get_testdata_file("6154", download=False)
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns, ds.PhotometricInterpretation) == (16, 16, "MONOCHROME1")
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (1600, 2800)
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (0.684, 200)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    # stored values straight from the bytes: 12 of 16 bits, little endian
    stored = np.frombuffer(ds.PixelData, "<u2").reshape(16, 16) & 0x0FFF
    x = stored * 0.684 + 200  # modality LUT (C.11.1.1.2)
    expected = 1 - linear_window(x, 1600, 2800)  # MONOCHROME1: the lowest value is white
    image = read_image(path)
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32
    np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-6)
    assert 0.31 < image.min() < image.max() < 0.52  # the window is wide: mid-gray only
    assert image_size(path) == (16, 16)
    with open(path, "rb") as handle:
        assert corrupt_reason(handle) is None


# ----------------------------------------------------------------- files written here
def test_8_bit_monochrome2_without_a_window_uses_its_own_range(tmp_path):
    stored = np.array([[10, 60], [110, 210]], np.uint8)
    path = write_dicom(tmp_path / "a.dcm", stored)
    np.testing.assert_allclose(read(path), own_range(stored), atol=1e-6)
    np.testing.assert_allclose(read(path), [[0, 0.25], [0.5, 1]], atol=1e-6)


def test_8_bit_monochrome2_with_a_window(tmp_path):
    stored = np.array([[0, 40, 90], [100, 150, 255]], np.uint8)
    path = write_dicom(tmp_path / "a.dcm", stored, window=(100, 101))
    np.testing.assert_allclose(read(path), linear_window(stored, 100, 101), atol=1e-6)
    assert read(path)[0, 0] == 0 and read(path)[1, 2] == 1  # outside the window: 0 and 1


def test_16_bit_monochrome2_without_a_window_is_rescaled_then_uses_its_own_range(tmp_path):
    stored = np.array([[0, 1000, 4095], [2000, 3000, 500]], np.uint16)
    path = write_dicom(tmp_path / "a.dcm", stored, bits_stored=12, rescale=(-2, 100))
    x = stored * -2.0 + 100  # a negative slope turns the image over
    np.testing.assert_allclose(read(path), own_range(x), atol=1e-6)
    assert read(path)[0, 2] == 0 and read(path)[0, 0] == 1


def test_16_bit_signed_ct_with_rescale_and_window(tmp_path):
    stored = np.array([[-1000, 0, 900], [1024, 1064, 1300]], np.int16)
    path = write_dicom(
        tmp_path / "a.dcm", stored, signed=True, rescale=(1, -1024), window=(40, 400)
    )
    x = stored + -1024.0
    np.testing.assert_allclose(read(path), linear_window(x, 40, 400), atol=1e-6)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_sigmoid_window(tmp_path, photometric):
    stored = np.array([[100, 400, 500], [600, 900, 2000]], np.uint16)
    path = write_dicom(
        tmp_path / "a.dcm", stored, photometric=photometric, window=(500, 200), function="SIGMOID"
    )
    y = 1 / (1 + np.exp(-4 * (stored - 500.0) / 200))  # C.11.2.1.3.1, output range [0, 1]
    expected = y if photometric == "MONOCHROME2" else 1 - y
    np.testing.assert_allclose(read(path), expected, atol=1e-6)


def test_voi_lut_output_range_is_its_bit_depth_and_wins_over_a_window(tmp_path):
    stored = np.array([[0, 10, 11], [12, 13, 50]], np.uint16)
    entries = [5, 100, 200, 255]  # 8-bit entries for inputs 10, 11, 12, 13
    path = write_dicom(tmp_path / "a.dcm", stored, lut=(10, 8, entries), window=(1, 1))
    expected = np.array(entries)[np.clip(stored.astype(int) - 10, 0, 3)] / 255
    np.testing.assert_allclose(read(path), expected, atol=1e-6)
    # DX files carry rescale 1 / 0 as well: the LUT still gets whole numbers, no warning
    path = write_dicom(tmp_path / "b.dcm", stored, lut=(10, 8, entries), rescale=(1, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(read(path), expected, atol=1e-6)


def test_a_dicom_folder_reads_through_open_dataset_as_by_hand(tmp_path):
    stored = np.arange(25, dtype=np.uint16).reshape(5, 5) * 60
    root = tmp_path / "xrays"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    write_dicom(root / "a" / "x.dcm", stored, window=(700, 1001))
    write_dicom(root / "a" / "1.2.840.5", stored, window=(700, 1001))  # found by "DICM"
    write_dicom(root / "a" / "1.2.840.6", stored[::-1].copy())
    (root / "a" / "notes.txt").write_text("not an image")
    for k in range(3):
        Image.fromarray(np.full((5, 5), 40 * k, np.uint8)).save(root / "b" / f"p{k}.png")
    expected = {
        "a/x": linear_window(stored, 700, 1001),
        "a/1.2.840.5": linear_window(stored, 700, 1001),
        "a/1.2.840.6": own_range(stored[::-1]),
    }
    np.testing.assert_allclose(decode(root / "a" / "1.2.840.5"), expected["a/x"], atol=1e-6)
    items = {}
    for split in ("train", "val", "test"):
        ds = open_dataset(
            "folder",
            root,
            split,
            size=5,
            augment=False,
            on_corrupt="error",
            fractions=(0.34, 0.33, 0.33),
        )
        items.update({i: ds[n][0] for n, i in enumerate(ds.image_ids)})
    assert sorted(items) == ["a/1.2.840.5", "a/1.2.840.6", "a/x", "b/p0", "b/p1", "b/p2"]
    for image_id, image in expected.items():
        np.testing.assert_allclose(items[image_id][0].numpy(), image, atol=1e-6)


def test_image_size_reads_a_dicom_header(tmp_path):
    path = write_dicom(tmp_path / "wide.dcm", np.zeros((3, 5), np.uint16))
    assert image_size(path) == (3, 5)
    with open(path, "rb") as handle:
        assert image_size(handle) == (3, 5)


@pytest.mark.filterwarnings("ignore:too few images per stratum")
def test_a_multi_frame_file_is_refused_in_one_sentence(tmp_path):
    path = write_dicom(tmp_path / "cine.dcm", np.zeros((2, 4, 4), np.uint8), frames=2)
    with pytest.raises(ValueError, match=r"cine\.dcm is a multi-frame DICOM \(2 frames\)") as e:
        read_image(path)
    assert str(e.value).count(". ") == 0 and "own" in str(e.value)
    root = tmp_path / "f"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for k in range(3):
            write_dicom(root / name / f"{k}.dcm", np.full((4, 4), k, np.uint8))
    write_dicom(root / "a" / "cine.dcm", np.zeros((2, 4, 4), np.uint8), frames=2)
    with pytest.raises(ValueError, match="multi-frame"):  # when the dataset is opened
        for split in ("train", "val", "test"):
            open_dataset("folder", root, split, on_corrupt="skip")


def test_colour_model_agkit_cannot_read_is_named(tmp_path):
    path = write_dicom(tmp_path / "p.dcm", np.zeros((4, 4), np.uint8), photometric="PALETTE COLOR")
    with pytest.raises(ValueError, match="PALETTE COLOR.*MONOCHROME1, MONOCHROME2"):
        read_image(path)


# ---------------------------------------------------------------- compressed syntaxes
def test_rle_lossless_decodes_without_extras(tmp_path):
    assert get_decoder(RLELossless).is_available  # pydicom's own RLE decoder
    stored = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 250) % 4096
    plain = write_dicom(tmp_path / "plain.dcm", stored, bits_stored=12, window=(2000, 3000))
    ds = pydicom.dcmread(plain)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    assert pydicom.dcmread(tmp_path / "rle.dcm").file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_allclose(
        read(tmp_path / "rle.dcm"), linear_window(stored, 2000, 3000), atol=1e-6
    )


def test_a_compression_without_its_decoder_names_the_extra(tmp_path):
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed, so the missing-decoder error cannot occur")
    path = write_dicom(
        tmp_path / "ls.dcm",
        np.zeros((4, 4), np.uint16),
        syntax=JPEGLSLossless,
        pixel_data=b"whatever",
    )
    with pytest.raises(ImportError, match=r'JPEG-LS.*pip install "agkit\[dicom-codecs\]"'):
        read_image(path)
    with open(path, "rb") as handle, pytest.raises(ImportError, match="dicom-codecs"):
        corrupt_reason(handle)  # found when a dataset is opened, not in the first epoch


def test_jpeg_2000_with_bad_bytes_is_corrupt_or_names_the_extra(tmp_path):
    path = write_dicom(
        tmp_path / "j2k.dcm",
        np.zeros((4, 4), np.uint16),
        syntax=JPEG2000Lossless,
        pixel_data=b"whatever",
    )
    if get_decoder(JPEG2000Lossless).is_available:  # Pillow with OpenJPEG, or a plugin
        with pytest.raises(CorruptImageError, match=r"The DICOM file .*j2k\.dcm cannot be decoded"):
            read_image(path)
    else:
        with pytest.raises(ImportError, match="dicom-codecs"):
            read_image(path)


def test_a_syntax_pydicom_has_no_decoder_for_is_named(tmp_path):
    path = write_dicom(
        tmp_path / "x.dcm",
        np.zeros((4, 4), np.uint8),
        syntax=UID("1.2.3.4.5"),
        pixel_data=b"whatever",
    )
    with pytest.raises(ValueError, match=r"x\.dcm uses the transfer syntax 1\.2\.3\.4\.5, which"):
        read_image(path)


# ---------------------------------------------------------------------- corrupt files
def test_zero_byte_and_truncated_dicom_are_corrupt_and_named(tmp_path):
    root = tmp_path / "f"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8)
    for k in range(3):
        write_dicom(root / "a" / f"ok{k}.dcm", stored)
        write_dicom(root / "b" / f"ok{k}.dcm", stored)
    (root / "a" / "empty.dcm").write_bytes(b"")
    whole = write_dicom(tmp_path / "whole.dcm", stored).read_bytes()
    (root / "a" / "cut.dcm").write_bytes(whole[:-40])  # inside the pixel data
    ds = pydicom.dcmread(tmp_path / "whole.dcm")
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    rle = (tmp_path / "rle.dcm").read_bytes()
    (root / "b" / "cut_rle.dcm").write_bytes(rle[: len(rle) - 30])
    (root / "b" / "text.dcm").write_text("not a DICOM file at all")

    reasons = {}
    for name in ("a/empty.dcm", "a/cut.dcm", "b/cut_rle.dcm", "b/text.dcm", "a/ok0.dcm"):
        with open(root / name, "rb") as handle:
            reasons[name] = corrupt_reason(handle)
    assert reasons["a/empty.dcm"] == "empty (0 bytes)"
    assert reasons["a/cut.dcm"] == "DICOM cut short (it cannot be read in part)"
    assert reasons["b/cut_rle.dcm"].startswith("DICOM without pixel data (cut short")
    assert reasons["b/text.dcm"] is not None
    assert reasons["a/ok0.dcm"] is None
    for name, message in [
        ("a/cut.dcm", "cut.dcm cannot be decoded"),
        ("a/empty.dcm", "empty.dcm is empty"),
        ("b/cut_rle.dcm", "cut_rle.dcm holds no pixel data"),
    ]:
        with pytest.raises(CorruptImageError, match=message):
            read_image(root / name)

    with pytest.raises(CorruptImageError, match=r"4 corrupt image file\(s\).*'a/cut.dcm'"):
        open_dataset("folder", root, "train", on_corrupt="error", fractions=(1.0, 0.0, 0.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset("folder", root, "train", on_corrupt="load", fractions=(1.0, 0.0, 0.0))
    assert sorted(ds.image_ids) == [f"{c}/ok{k}" for c in "ab" for k in range(3)]
    assert any("skipped 4" in str(w.message) for w in caught)
    assert all(ds[i][0].shape == (1, 224, 224) for i in range(len(ds)))


# -------------------------------------------------------------------- without pydicom
def test_without_pydicom_a_dicom_names_the_extra(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((4, 4), np.uint8))
    for module in [m for m in sys.modules if m == "pydicom" or m.startswith("pydicom.")]:
        monkeypatch.setitem(sys.modules, module, None)  # "import pydicom" now fails
    with pytest.raises(ImportError, match=r'a\.dcm is a DICOM file.*pip install "agkit\[dicom\]"'):
        read_image(path)
    with open(path, "rb") as handle, pytest.raises(ImportError, match=r"agkit\[dicom\]"):
        corrupt_reason(handle)
    with pytest.raises(ImportError, match=r"agkit\[dicom\]"):
        image_size(path)


def test_importing_agkit_does_not_import_pydicom():
    code = (
        "import sys, agkit, agkit.data, agkit.data.io, agkit.data.real; "
        "print('pydicom' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
