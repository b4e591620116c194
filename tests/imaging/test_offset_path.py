"""Native little-endian greyscale is served straight from the original file bytes."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian

from backend.imaging.dicomfile import read_dicom
from backend.imaging.pixels import decode_pixels, frame_array

from .helpers import PYDICOM_FILES, bundled, reference_frames


def test_it_serves_a_single_frame_from_the_file():
    path = bundled("CT_small.dcm")
    parsed = read_dicom(path)

    pixels = decode_pixels(parsed, path)

    assert pixels.offset == parsed.pixel_data_offset
    assert pixels.array is None
    np.testing.assert_array_equal(frame_array(pixels, path, 0), pydicom.dcmread(path).pixel_array)


def test_it_serves_every_frame_of_a_multiframe_file():
    path = bundled("rtdose.dcm")  # implicit VR, 32-bit, 15 frames

    pixels = decode_pixels(read_dicom(path), path)

    assert pixels.offset is not None
    expected = reference_frames(path)
    for index in range(pixels.layout.frames):
        np.testing.assert_array_equal(frame_array(pixels, path, index), expected[index])
    assert pixels.min_value == expected.min()
    assert pixels.max_value == expected.max()


def test_it_points_at_the_pixel_data_value():
    path = bundled("CT_small.dcm")
    parsed = read_dicom(path)
    raw = pydicom.dcmread(path).PixelData

    with open(path, "rb") as fp:
        fp.seek(parsed.pixel_data_offset)
        assert fp.read(parsed.pixel_data_length) == raw


def test_it_decodes_when_bits_above_bits_stored_are_dirty(tmp_path):
    # PS3.5 §8.1.1: bits above BitsStored are not part of the value; they must be masked,
    # so such a file cannot be served raw.
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    arr = ds.pixel_array.astype(np.uint16)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    arr = (arr & 0x0FFF) | 0xF000
    ds.PixelData = arr.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "dirty.dcm"
    ds.save_as(path)

    pixels = decode_pixels(read_dicom(path), path)

    assert pixels.offset is None
    np.testing.assert_array_equal(frame_array(pixels, path, 0), arr & 0x0FFF)
    assert pixels.max_value < 4096


def test_it_keeps_sign_extended_values_on_the_offset_path(tmp_path):
    ds = pydicom.dcmread(bundled("CT_small.dcm"))  # signed 16 bits allocated, 16 stored
    path = tmp_path / "signed.dcm"
    ds.save_as(path)

    pixels = decode_pixels(read_dicom(path), path)

    assert pixels.offset is not None
    assert pixels.layout.dtype == "<i2"
    np.testing.assert_array_equal(frame_array(pixels, path, 0), ds.pixel_array)


def test_the_length_served_files_need_is_pydicoms():
    """_decode checks a servable file's Pixel Data length with its own product; for every
    bundled file it serves, that is the length pydicom's rules give."""
    from pydicom.pixels.utils import get_expected_length

    from backend.imaging import pixels as module
    from backend.imaging.dicomfile import InvalidDicom

    served = 0
    for name in sorted(PYDICOM_FILES.rglob("*.dcm")):  # bundled, never downloaded
        try:
            parsed = read_dicom(name)
            image = module._image_pixel(parsed.dataset, parsed.pixel_data_tag)
        except (InvalidDicom, module.PixelDataError):
            continue
        if not parsed.has_pixel_data or not module._servable_from_file(parsed, image):
            continue
        ours = image.rows * image.columns * image.frames * image.bits_allocated // 8
        assert ours == get_expected_length(parsed.dataset, "bytes"), name
        served += 1
    assert served >= 5  # 8 with pydicom 3.0
