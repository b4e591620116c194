"""Shared helpers for the imaging tests: where test files are and what pydicom makes of them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_color_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from backend.imaging.dicomfile import REQUIRED_UIDS

# ../shared/testdata relative to the repository root; absent on a fresh checkout.
TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
SMALL = TESTDATA / "small"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
CHARSET_FILES = Path(pydicom.__file__).parent / "data" / "charset_files"

needs_testdata = pytest.mark.skipif(
    not (SMALL / "manifest.json").is_file(),
    reason=f"real DICOM test data not found at {SMALL} (see /work/shared/testdata/README.md)",
)


def manifest() -> list[dict]:
    """Entries of small/manifest.json, or [] when the test data is absent."""
    path = SMALL / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else []


def bundled(name: str) -> Path:
    """A file shipped inside the pydicom package (never downloaded)."""
    path = PYDICOM_FILES / name
    if not path.is_file():
        pytest.skip(f"pydicom bundled file {name} not installed")
    return path


def part10_copy(src: Path, tmp_path: Path) -> Path:
    """Copy `src` into tmp_path as a conforming Part 10 file with the identifying UIDs.

    Several codec test files lack StudyInstanceUID or a preamble; read_dicom rightly refuses
    them, but their pixels are still worth comparing.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(src, force=True)
    for keyword in REQUIRED_UIDS:
        if not ds.get(keyword):
            setattr(
                ds,
                keyword,
                "1.2.840.10008.5.1.4.1.1.7" if keyword == "SOPClassUID" else generate_uid(),
            )
    meta = FileMetaDataset(ds.file_meta) if hasattr(ds, "file_meta") else FileMetaDataset()
    meta.TransferSyntaxUID = meta.get("TransferSyntaxUID") or ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta
    out = tmp_path / src.name
    ds.save_as(out, enforce_file_format=True)
    return out


def reference_frames(path: Path) -> np.ndarray:
    """pydicom's own decode, normalised the way decode_pixels promises.

    pydicom's pixel_array already converts YBR_FULL/YBR_FULL_422 to RGB; palette colour is
    applied with apply_color_lut and scaled to 8 bits; deep RGB keeps its top 8 bits.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames") or 1)
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        arr = (arr >> 8 if arr.max() > 255 else arr).astype(np.uint8)
    elif ds.SamplesPerPixel == 3 and arr.dtype.itemsize > 1:
        arr = (arr >> (ds.BitsStored - 8)).astype(np.uint8)
    tail = arr.shape[-1:] if arr.ndim > 2 and arr.shape[-1] == 3 else ()
    return arr.reshape((frames, ds.Rows, ds.Columns, *tail))


def all_frames(pixels, path: Path) -> np.ndarray:
    """Every frame through frame_array, stacked: what the viewer would receive."""
    from backend.imaging.pixels import frame_array

    return np.stack([frame_array(pixels, path, i) for i in range(pixels.layout.frames)])
