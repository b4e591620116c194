"""Every file in ../shared/testdata/small that pydicom decodes, decoded by us identically."""

from __future__ import annotations

import numpy as np
import pytest

from backend.imaging.dicomfile import InvalidDicom, read_dicom
from backend.imaging.pixels import decode_pixels

from .helpers import SMALL, all_frames, manifest, needs_testdata, part10_copy, reference_frames

# malformed/ has its own test (test_malformed.py): there, refusing a file is the point.
DECODABLE = [
    entry
    for entry in manifest()
    if entry["decode"] == "ok" and not entry["path"].startswith("malformed/")
]


@needs_testdata
def test_it_finds_the_test_data():
    assert len(DECODABLE) > 300


@needs_testdata
@pytest.mark.parametrize("entry", DECODABLE, ids=[e["path"] for e in DECODABLE])
def test_it_decodes_like_pydicom(tmp_path, entry):
    path = SMALL / entry["path"]
    try:
        parsed = read_dicom(path)
    except InvalidDicom as exc:
        # Codec samples without StudyInstanceUID or a preamble: compare their pixels anyway.
        assert "missing" in str(exc) or "Part 10" in str(exc)
        path = part10_copy(path, tmp_path)
        parsed = read_dicom(path)
    assert parsed.transfer_syntax_uid == entry["ts"]

    pixels = decode_pixels(parsed, path)

    layout = pixels.layout
    assert (layout.rows, layout.columns, layout.frames) == (
        entry["rows"],
        entry["cols"],
        int(entry["frames"]),
    )
    expected = reference_frames(path)
    ours = all_frames(pixels, path)
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)
