"""Colour input comes out as sane RGB: the same picture, whatever the colour model."""

from __future__ import annotations

import numpy as np
import pytest

from backend.imaging.dicomfile import read_dicom
from backend.imaging.pixels import decode_pixels, frame_array

from .helpers import bundled

# The same 100x100 test picture in several encodings; SC_rgb_rle.dcm is lossless RGB.
SAME_PICTURE = [
    ("SC_rgb_dcmtk_+eb+cr.dcm", 1),  # JPEG baseline, RGB
    ("SC_rgb_jpeg_dcmtk.dcm", 1),  # JPEG baseline, YBR_FULL
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", 4),  # JPEG baseline, YBR_FULL_422
    ("SC_ybr_full_422_uncompressed.dcm", 1),  # native YBR_FULL_422
    ("SC_rgb_gdcm_KY.dcm", 0),  # JPEG 2000, RGB
    ("SC_rgb_rle_16bit.dcm", 0),  # 16-bit RGB, reduced to 8 bits
]


def first_frame(path) -> np.ndarray:
    pixels = decode_pixels(read_dicom(path), path)
    assert pixels.layout.photometric == "RGB"
    return frame_array(pixels, path, 0).astype(float)


@pytest.mark.parametrize(("name", "tolerance"), SAME_PICTURE)
def test_it_converts_every_colour_model_to_the_same_rgb(name, tolerance):
    reference = first_frame(bundled("SC_rgb_rle.dcm"))

    frame = first_frame(bundled(name))

    assert np.abs(frame - reference).mean() <= tolerance


def test_it_expands_palette_colour_to_8_bit_rgb():
    path = bundled("examples_palette.dcm")

    pixels = decode_pixels(read_dicom(path), path)

    assert (pixels.layout.samples, pixels.layout.dtype) == (3, "|u1")
    assert pixels.max_value > 200  # uses the full 8-bit range, not the low byte of 16
