"""decode_pixels matches pydicom's own decode for every transfer syntax and colour model,
using the files bundled with pydicom (always available)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.imaging.dicomfile import read_dicom
from backend.imaging.pixels import decode_pixels

from .helpers import all_frames, bundled, part10_copy, reference_frames

# (file, transfer syntax, Photometric Interpretation in the file)
BUNDLED = [
    ("MR_small_implicit.dcm", "1.2.840.10008.1.2", "MONOCHROME2"),
    ("rtdose.dcm", "1.2.840.10008.1.2", "MONOCHROME2"),  # 32-bit, 15 frames
    ("CT_small.dcm", "1.2.840.10008.1.2.1", "MONOCHROME2"),
    ("liver_1frame.dcm", "1.2.840.10008.1.2.1", "MONOCHROME2"),  # 1-bit SEG
    ("SC_rgb_small_odd.dcm", "1.2.840.10008.1.2.1", "RGB"),
    ("examples_palette.dcm", "1.2.840.10008.1.2.1", "PALETTE COLOR"),
    ("SC_ybr_full_422_uncompressed.dcm", "1.2.840.10008.1.2.1", "YBR_FULL_422"),
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2", "MONOCHROME2"),
    ("SC_rgb_small_odd_big_endian.dcm", "1.2.840.10008.1.2.2", "RGB"),
    ("rtdose_expb.dcm", "1.2.840.10008.1.2.2", "MONOCHROME2"),
    ("image_dfl.dcm", "1.2.840.10008.1.2.1.99", "MONOCHROME2"),
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5", "MONOCHROME2"),
    ("SC_rgb_rle.dcm", "1.2.840.10008.1.2.5", "RGB"),
    ("SC_rgb_rle_16bit_2frame.dcm", "1.2.840.10008.1.2.5", "RGB"),
    ("SC_rgb_rle_32bit.dcm", "1.2.840.10008.1.2.5", "RGB"),
    ("rtdose_rle.dcm", "1.2.840.10008.1.2.5", "MONOCHROME2"),
    ("SC_rgb_dcmtk_+eb+cr.dcm", "1.2.840.10008.1.2.4.50", "RGB"),
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50", "YBR_FULL"),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "1.2.840.10008.1.2.4.50", "YBR_FULL_422"),
    ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51", "MONOCHROME2"),
    ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70", "RGB"),
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", "MONOCHROME2"),
    ("JPEGLSNearLossless_08.dcm", "1.2.840.10008.1.2.4.81", "MONOCHROME2"),
    ("SC_rgb_jls_lossy_sample.dcm", "1.2.840.10008.1.2.4.81", "RGB"),
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90", "MONOCHROME2"),
    ("GDCMJ2K_TextGBR.dcm", "1.2.840.10008.1.2.4.90", "YBR_RCT"),
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", "MONOCHROME2"),
    ("SC_rgb_gdcm_KY.dcm", "1.2.840.10008.1.2.4.91", "RGB"),
]


@pytest.mark.parametrize(
    ("name", "transfer_syntax", "photometric"), BUNDLED, ids=[b[0] for b in BUNDLED]
)
def test_it_decodes_like_pydicom(tmp_path, name, transfer_syntax, photometric):
    path = part10_copy(bundled(name), tmp_path)
    parsed = read_dicom(path)
    assert parsed.transfer_syntax_uid == transfer_syntax
    assert parsed.dataset.PhotometricInterpretation == photometric

    pixels = decode_pixels(parsed, path)

    expected = reference_frames(path)
    ours = all_frames(pixels, path)
    assert ours.shape == expected.shape
    assert ours.dtype == np.dtype(pixels.layout.dtype)
    np.testing.assert_array_equal(ours, expected)
    assert pixels.min_value == float(expected.min())
    assert pixels.max_value == float(expected.max())


@pytest.mark.parametrize(
    ("name", "transfer_syntax", "photometric"), BUNDLED, ids=[b[0] for b in BUNDLED]
)
def test_it_normalises_the_layout(tmp_path, name, transfer_syntax, photometric):
    path = part10_copy(bundled(name), tmp_path)
    pixels = decode_pixels(read_dicom(path), path)
    layout = pixels.layout

    assert layout.photometric == ("MONOCHROME2" if photometric == "MONOCHROME2" else "RGB")
    assert layout.samples == (1 if layout.photometric == "MONOCHROME2" else 3)
    assert layout.dtype[0] in "<|"
    if layout.samples == 3:
        assert layout.dtype == "|u1"
    if pixels.array is not None:
        assert pixels.array.flags.c_contiguous
        assert pixels.array.dtype.str == layout.dtype
        assert pixels.array.nbytes == layout.frames * layout.frame_bytes
