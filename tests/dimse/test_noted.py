"""The study and patient a received instance is counted under in the association's audit
rows: read from the raw data set's first elements, with the same result as pydicom's read,
which is what anything unusual falls back to."""

import struct
from pathlib import Path

import pytest
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import UID

from worker.dimse.handlers import _noted_at_top, _read_noted

from ..conftest import PYDICOM_FILES, SMALL

SAMPLES = sorted(p for folder in (PYDICOM_FILES, SMALL) for p in folder.rglob("*") if p.is_file())
IMPLICIT, EXPLICIT = UID("1.2.840.10008.1.2"), UID("1.2.840.10008.1.2.1")


def by_pydicom(syntax: UID, data_set: bytes) -> tuple[str, str]:
    ds = _read_noted(syntax, b"", data_set)
    return str(ds.get("StudyInstanceUID", "")), str(ds.get("PatientID", ""))


def data_set_of(path: Path) -> tuple[UID, bytes] | None:
    with open(path, "rb") as f:
        try:
            read_preamble(f, False)
            meta = _read_file_meta_info(f)
        except Exception:
            return None
        syntax = UID(str(meta.get("TransferSyntaxUID", "")))
        return (syntax, f.read()) if syntax.is_transfer_syntax else None


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_it_notes_what_pydicom_reads(path):
    found = data_set_of(path)
    if found is None or not found[0].is_little_endian or found[0].is_deflated:
        pytest.skip("not a little endian Part 10 file")
    syntax, data_set = found
    noted = _noted_at_top(data_set, syntax.is_implicit_VR)
    if noted is not None:
        assert noted == by_pydicom(syntax, data_set)


def element(tag: int, value: bytes, vr: bytes | None = None) -> bytes:
    group, number = tag >> 16, tag & 0xFFFF
    if vr is None:
        return struct.pack("<HHI", group, number, len(value)) + value
    if vr in (b"SQ", b"OB", b"UN"):
        return struct.pack("<HH2s2xI", group, number, vr, len(value)) + value
    return struct.pack("<HH2sH", group, number, vr, len(value)) + value


@pytest.mark.parametrize(
    ("patient_id", "study"),
    [
        (b"P-1 ", b"1.2.3\0"),
        (b"  padded  ", b"1.2.840.5 "),  # leading spaces are kept, as pydicom keeps them
        (b"", b""),
        (b"caf\xc3\xa9", b"1.2"),  # not ASCII: the character set decides
        (b"A\\B", b"1.2"),  # two values
        (b"\x1b$B", b"1.2"),  # an ISO 2022 escape
    ],
)
@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT], ids=["implicit", "explicit"])
def test_it_reads_values_as_pydicom_does_or_leaves_them_to_it(patient_id, study, syntax):
    explicit = not syntax.is_implicit_VR
    data_set = b"".join(
        [
            element(0x00080005, b"ISO_IR 192", b"CS" if explicit else None),
            element(0x00100010, b"Doe^J ", b"PN" if explicit else None),
            element(0x00100020, patient_id, b"LO" if explicit else None),
            element(0x00189999, b"\x00" * 300, b"OB" if explicit else None),
            element(0x0020000D, study, b"UI" if explicit else None),
            element(0x0020000E, b"9.9", b"UI" if explicit else None),
        ]
    )
    noted = _noted_at_top(data_set, syntax.is_implicit_VR)
    expected = by_pydicom(syntax, data_set)
    if patient_id.isascii() and b"\\" not in patient_id and b"\x1b" not in patient_id:
        assert noted == expected
    else:
        assert noted is None  # pydicom reads it
        assert expected[1] != ""


def test_it_leaves_a_data_set_in_the_other_vr_encoding_to_pydicom():
    implicit = element(0x00100020, b"P-1") + element(0x0020000D, b"1.2.3\0")
    explicit = element(0x00100020, b"P-1", b"LO") + element(0x0020000D, b"1.2.3\0", b"UI")
    assert _noted_at_top(implicit, implicit_vr=False) is None
    assert _noted_at_top(explicit, implicit_vr=True) is None
    assert by_pydicom(EXPLICIT, implicit) == by_pydicom(IMPLICIT, explicit) == ("1.2.3", "P-1")


def test_it_leaves_an_undefined_length_or_a_cut_value_to_pydicom():
    sequence = struct.pack("<HH2s2xI", 0x0008, 0x1140, b"SQ", 0xFFFFFFFF)
    assert _noted_at_top(sequence + b"\xfe\xff\xdd\xe0\0\0\0\0", False) is None
    cut = element(0x00100020, b"PATIENT-ID", b"LO")[:-3]
    assert _noted_at_top(cut, False) is None
    assert _noted_at_top(b"", True) == ("", "")
