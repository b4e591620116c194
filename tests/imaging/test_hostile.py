"""Hostile or garbage input is refused quickly, without large allocations or deep recursion."""

from __future__ import annotations

import time

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from backend.imaging.dicomfile import InvalidDicom, Limits, read_dicom
from backend.imaging.pixels import PixelDataError, decode_pixels


def minimal_dataset(transfer_syntax=ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def save(ds: Dataset, path) -> str:
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def test_it_refuses_a_huge_image_with_few_bytes_fast(tmp_path):
    ds = minimal_dataset()
    ds.Rows = ds.Columns = 65535
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = b"\0" * 400
    path = save(ds, tmp_path / "huge.dcm")

    started = time.perf_counter()
    with pytest.raises(PixelDataError, match="exceeds the limit"):
        decode_pixels(read_dicom(path), path)
    assert time.perf_counter() - started < 1


def test_it_refuses_too_many_frames(tmp_path):
    ds = minimal_dataset()
    ds.Rows = ds.Columns = 1
    ds.NumberOfFrames = 20_000
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = b"\0" * 20_000
    path = save(ds, tmp_path / "frames.dcm")

    with pytest.raises(PixelDataError, match="frames exceeds"):
        decode_pixels(read_dicom(path), path)


def test_it_refuses_short_native_pixel_data(tmp_path):
    ds = minimal_dataset()
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = b"\0" * 100
    path = save(ds, tmp_path / "short.dcm")

    with pytest.raises(PixelDataError, match="100 bytes, 8192 expected"):
        decode_pixels(read_dicom(path), path)


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_it_refuses_deeply_nested_sequences_fast(tmp_path, transfer_syntax):
    ds = minimal_dataset(transfer_syntax)
    item = Dataset()
    item.CodeValue = "leaf"
    for _ in range(200):
        outer = Dataset()
        outer.ContentSequence = Sequence([item])
        item = outer
    ds.ContentSequence = item.ContentSequence
    path = save(ds, tmp_path / "nested.dcm")

    started = time.perf_counter()
    with pytest.raises(InvalidDicom, match="nested"):
        read_dicom(path)
    assert time.perf_counter() - started < 2


def test_it_accepts_nesting_within_the_limit(tmp_path):
    ds = minimal_dataset()
    item = Dataset()
    for _ in range(3):
        outer = Dataset()
        outer.ContentSequence = Sequence([item])
        item = outer
    ds.ContentSequence = item.ContentSequence
    path = save(ds, tmp_path / "nested.dcm")

    assert read_dicom(path, Limits(max_sequence_depth=3)).has_pixel_data is False
    with pytest.raises(InvalidDicom, match="deeper than 2"):
        read_dicom(path, Limits(max_sequence_depth=2))


def test_it_refuses_too_many_elements(tmp_path):
    path = save(minimal_dataset(), tmp_path / "small.dcm")

    with pytest.raises(InvalidDicom, match="more than 3 header elements"):
        read_dicom(path, Limits(max_header_elements=3))


def test_it_refuses_bytes_that_are_not_dicom(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a DICOM file\n" * 20)

    with pytest.raises(InvalidDicom, match="DICM"):
        read_dicom(path)


def test_it_refuses_an_empty_file(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")

    with pytest.raises(InvalidDicom, match="not a DICOM Part 10 file"):
        read_dicom(path)


@pytest.mark.parametrize("cut", [140, 200, 300, 380])
def test_it_refuses_a_truncated_header(tmp_path, cut):
    ds = minimal_dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "X" * 40
    whole = tmp_path / "whole.dcm"
    save(ds, whole)
    path = tmp_path / "cut.dcm"
    path.write_bytes(whole.read_bytes()[:cut])

    with pytest.raises(InvalidDicom):
        read_dicom(path)


def test_it_refuses_garbage_after_a_valid_preamble(tmp_path):
    path = tmp_path / "garbage.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)

    with pytest.raises(InvalidDicom):
        read_dicom(path)


def test_it_does_not_load_pixel_data(tmp_path):
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    path = save(ds, tmp_path / "ct.dcm")

    parsed = read_dicom(path)

    assert "PixelData" not in parsed.dataset
    assert parsed.has_pixel_data
