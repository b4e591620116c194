"""Every deliberately broken file in ../shared/testdata/small/malformed gets a reason."""

from __future__ import annotations

import numpy as np
import pytest

from backend.imaging.dicomfile import InvalidDicom, read_dicom
from backend.imaging.pixels import PixelDataError, decode_pixels

from .helpers import SMALL, all_frames, needs_testdata, reference_frames

INVALID, PIXELS, WARNING = "InvalidDicom", "PixelDataError", "warning"

# file -> (outcome, words the reason must contain)
EXPECTED = {
    "pydicom-data_OT-PAL-8-face.dcm": (INVALID, "DICM"),
    "pydicom-data_bad_sequence.dcm": (INVALID, "malformed SOPInstanceUID"),
    "pydicom-data_emri_small_jpeg_2k_lossless_too_short.dcm": (PIXELS, "truncated"),
    "pydicom-data_explicit_VR-UN.dcm": (WARNING, "encoded as UN"),
    "pydicom_ExplVR_BigEndNoMeta.dcm": (INVALID, "DICM"),
    "pydicom_J2K_pixelrep_mismatch.dcm": (WARNING, "JPEG 2000 codestream is unsigned"),
    "pydicom_JPEG-lossy.dcm": (PIXELS, "JPEG Extended"),
    "pydicom_JPEG2000-embedded-sequence-delimiter.dcm": (PIXELS, "JPEG 2000"),
    "pydicom_MR_truncated.dcm": (PIXELS, "8130 bytes, 8192 expected"),
    "pydicom_UN_sequence.dcm": (INVALID, "missing SOPClassUID"),
    "pydicom_badVR.dcm": (PIXELS, "invalid NumberOfFrames '1A'"),
    "pydicom_empty_charset_LEI.dcm": (INVALID, "missing SOPClassUID"),
    "pydicom_meta_missing_tsyntax.dcm": (INVALID, "TransferSyntaxUID"),
    "pydicom_nested_priv_SQ.dcm": (INVALID, "missing SOPClassUID"),
    "pydicom_no_meta.dcm": (INVALID, "DICM"),
    "pydicom_rtplan_truncated.dcm": (INVALID, "truncated in (300A,00B0) BeamSequence"),
    "pylibjpeg-data_RG2_JPLY_nonconformant_SOS.dcm": (PIXELS, "misplaced marker"),
    "pynetdicom_CTImageStorage_bad_meta.dcm": (WARNING, "lacks MediaStorageSOPClassUID"),
}


def outcome(path) -> tuple[str, str]:
    """(which outcome, its reason) for one file."""
    try:
        parsed = read_dicom(path)
    except InvalidDicom as exc:
        return INVALID, str(exc)
    try:
        decode_pixels(parsed, path)
    except PixelDataError as exc:
        return PIXELS, str(exc)
    return WARNING, "; ".join(parsed.warnings)


@needs_testdata
def test_it_knows_every_malformed_file():
    assert sorted(p.name for p in (SMALL / "malformed").iterdir()) == sorted(EXPECTED)


@needs_testdata
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_it_gives_a_reason(name):
    expected_outcome, words = EXPECTED[name]

    got, reason = outcome(SMALL / "malformed" / name)

    assert (got, words in reason) == (expected_outcome, True), reason


@needs_testdata
@pytest.mark.parametrize("name", [n for n, (o, _) in EXPECTED.items() if o == WARNING])
def test_it_decodes_benign_defects_like_pydicom(name):
    path = SMALL / "malformed" / name

    pixels = decode_pixels(read_dicom(path), path)

    np.testing.assert_array_equal(all_frames(pixels, path), reference_frames(path))
