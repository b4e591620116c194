"""read_dicom reads a plain Little Endian header itself (dicomfile._read_little_endian)
instead of through pydicom.dcmread: everything it gives must be what dcmread's reading
gives, for every sample file, and every file it does not read plainly must go to dcmread."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian, JPEGBaseline8Bit

from backend.imaging import dicomfile
from backend.imaging.dicomfile import Conversions, InvalidDicom, Limits, read_dicom

from .test_conversions import SAMPLES, elements
from .test_hostile import minimal_dataset, save


@pytest.fixture
def conversions(monkeypatch) -> Conversions:
    kept = Conversions()
    monkeypatch.setattr(dicomfile, "_CONVERSIONS", kept)
    return kept


@pytest.fixture
def plain(monkeypatch) -> list[str]:
    """The files _read_little_endian read (rather than left to dcmread)."""
    read: list[str] = []
    reader = dicomfile._read_little_endian

    def spy(fp, limits, value_keys, caught):
        result = reader(fp, limits, value_keys, caught)
        if result is not None:
            read.append(fp.name)
        return result

    monkeypatch.setattr(dicomfile, "_read_little_endian", spy)
    return read


def everything(path: Path | str, limits: Limits = Limits()) -> Any:  # noqa: B008
    """All read_dicom gives for a file, or its refusal."""
    try:
        parsed = read_dicom(path, limits)
    except InvalidDicom as exc:
        return ("refused", str(exc))
    ds = parsed.dataset
    return {
        "elements": elements(ds),
        "file meta": elements(ds.file_meta),
        "warnings": parsed.warnings,
        "syntax": parsed.transfer_syntax_uid,
        "pixel data": (
            parsed.has_pixel_data,
            parsed.pixel_data_tag,
            parsed.pixel_element_offset,
            parsed.pixel_data_offset,
            parsed.pixel_data_length,
        ),
        # Specific Character Set's conversion is kept too when read plainly (dcmread's
        # reading converts it before _check_elements sees it).
        "value keys": {
            int(tag): key for tag, key in parsed.value_keys.items() if tag != 0x00080005
        },
        "encoding": (ds.original_encoding, ds.original_character_set, ds._character_set),
        "file": (ds.preamble, ds.filename, ds.fileobj_type, ds.timestamp, type(ds.buffer)),
        "attributes": sorted(ds.__dict__),
    }


def by_dcmread(monkeypatch, path: Path | str, limits: Limits = Limits()) -> Any:  # noqa: B008
    with monkeypatch.context() as patch:
        patch.setattr(dicomfile, "_read_little_endian", lambda fp, limits, value_keys, caught: None)
        return everything(path, limits)


def test_every_sample_file_reads_as_dcmread_reads_it(conversions, plain, monkeypatch):
    first = [everything(path) for path in SAMPLES]  # converting, and keeping conversions
    again = [everything(path) for path in SAMPLES]  # reusing most of them
    read_plainly = set(plain)
    reference = [by_dcmread(monkeypatch, path) for path in SAMPLES]

    for path, one, two, expected in zip(SAMPLES, first, again, reference, strict=True):
        assert one == expected, path
        assert two == expected, path
    # Most sample files are plain Little Endian; the others (big endian, deflated, with
    # undefined lengths, malformed) went to dcmread.
    assert len(read_plainly) > len(SAMPLES) / 2
    assert len(read_plainly) < len(SAMPLES)


def test_values_read_before_are_reused(conversions, plain, tmp_path):
    paths = []
    for number in range(2):
        ds = minimal_dataset(ImplicitVRLittleEndian)
        ds.StudyDescription = "the same in both"
        ds.InstanceNumber = number
        paths.append(save(ds, tmp_path / f"{number}.dcm"))
    read_dicom(paths[0])

    parsed = read_dicom(paths[1])

    assert plain == paths
    reused = {tag for tag, elem in parsed.dataset._dict.items() if tag in parsed.value_keys}
    assert 0x00081030 in reused  # Study Description
    assert 0x00200013 in reused  # Instance Number: "1" was not read before, but kept now
    assert parsed.dataset.StudyDescription == "the same in both"


def with_bytes_after_meta(tmp_path: Path, name: str, ds: Dataset, change) -> Path:
    """Save `ds`, then replace its data set's bytes (after the File Meta Information)
    with change(data set bytes)."""
    path = Path(save(ds, tmp_path / name))
    raw = path.read_bytes()
    meta_length = struct.unpack("<L", raw[140:144])[0]  # (0002,0000), PS3.10 §7.1
    start = 144 + meta_length
    path.write_bytes(raw[:start] + change(raw[start:]))
    return path


def element(tag: int, vr: bytes, value: bytes) -> bytes:
    """An Explicit VR Little Endian element with a 16-bit length."""
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def undefined_sequence() -> bytes:
    """(0008,1115) Referenced Series Sequence, undefined length, one empty item."""
    return (
        struct.pack("<HH2sHL", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
        + struct.pack("<HHL", 0xFFFE, 0xE000, 0)
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    )


CASES = {
    # What dcmread does with these, read_dicom does: read, warn, or refuse.
    "out of order": lambda data: element(0x00100010, b"PN", b"LATE^ONE") + data,
    "undefined length sequence": lambda data: undefined_sequence() + data,
    "command set": lambda data: element(0x00000002, b"UI", b"1.2.3\0") + data,
    "unknown VR": lambda data: data + element(0x00211010, b"ZZ", b"ab"),
    "cut in a value": lambda data: data[:-3],
    "cut in a header": lambda data: data + struct.pack("<HH", 0x0009, 0x0010),
    "stray bytes": lambda data: data + b"\0" * 9,
    "explicit under an implicit syntax": None,  # made below
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_file_not_plainly_read_reads_as_dcmread_reads_it(
    case, conversions, plain, tmp_path, monkeypatch
):
    ds = minimal_dataset()
    ds.PatientID = "12345"
    ds.StudyDescription = "edge"
    if case == "explicit under an implicit syntax":
        path = Path(save(ds, tmp_path / "explicit.dcm"))
        explicit = b"1.2.840.10008.1.2.1\0"  # the same length as the implicit one, padded
        raw = path.read_bytes()
        assert raw.count(explicit) == 1
        path.write_bytes(raw.replace(explicit, b"1.2.840.10008.1.2\0\0\0"))
    else:
        path = with_bytes_after_meta(tmp_path, f"{case}.dcm", ds, CASES[case])

    for _ in range(2):  # converting, then reusing
        assert everything(path) == by_dcmread(monkeypatch, path), case
    assert plain == []


def test_a_header_longer_than_a_read_ahead(conversions, plain, tmp_path, monkeypatch):
    ds = minimal_dataset()
    ds.add_new(0x00091010, "LO", "CREATOR")
    ds.add_new(0x00091000 | 0x1011, "OB", bytes(range(256)) * 1200)  # 300 kB of header
    ds.StudyDescription = "after the long value"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = b"\1\2\3\4"
    path = save(ds, tmp_path / "long.dcm")

    read = everything(path)

    assert plain == [path]
    assert read == by_dcmread(monkeypatch, path)
    assert read["pixel data"][0] and read["pixel data"][4] == 4


def test_the_element_limit_holds_as_it_reads(conversions, plain, tmp_path, monkeypatch):
    ds = minimal_dataset()
    for number in range(50):
        ds.add_new(0x00091000 | (0x10 + number), "LO", f"value {number}")
    path = save(ds, tmp_path / "many.dcm")

    read = everything(path, Limits(max_header_elements=20))

    assert read == ("refused", "more than 20 header elements")
    assert read == by_dcmread(monkeypatch, path, Limits(max_header_elements=20))


def test_encapsulated_pixel_data_is_found(conversions, plain, tmp_path, monkeypatch):
    ds = minimal_dataset(JPEGBaseline8Bit)
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    item = struct.pack("<HHL", 0xFFFE, 0xE000, 4) + b"\xff\xd8\xff\xd9"
    ds.add(DataElement(0x7FE00010, "OB", struct.pack("<HHL", 0xFFFE, 0xE000, 0) + item))
    ds["PixelData"].is_undefined_length = True
    path = save(ds, tmp_path / "jpeg.dcm")

    read = everything(path)

    assert plain == [path]
    assert read == by_dcmread(monkeypatch, path)
    assert read["pixel data"][0] and read["pixel data"][3] is None  # encapsulated


def test_a_sequence_of_defined_length_is_read_as_dcmread_reads_it(
    conversions, plain, tmp_path, monkeypatch
):
    ds = minimal_dataset()
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedImageSequence = Sequence([item])
    path = save(ds, tmp_path / "sequence.dcm")  # pydicom writes defined lengths

    read = everything(path)

    assert plain == [path]
    assert read == by_dcmread(monkeypatch, path)


def test_a_file_meta_value_that_warns_is_left_for_its_reader(
    conversions, plain, tmp_path, monkeypatch
):
    ds = minimal_dataset()
    ds.file_meta.ImplementationVersionName = "A NAME FAR TOO LONG FOR SH"  # pydicom warns
    path = save(ds, tmp_path / "meta.dcm")

    left = read_dicom(path).dataset.file_meta._dict[0x00020013]
    read = [everything(path) for _ in range(2)]

    assert isinstance(left, RawDataElement)  # as dcmread leaves it, to warn when read
    assert plain == [path, path, path]
    assert read[0] == read[1] == by_dcmread(monkeypatch, path)
