"""read_dicom validates identifiers and decodes text per Specific Character Set."""

from __future__ import annotations

import pydicom
import pytest

from backend.imaging.dicomfile import InvalidDicom, read_dicom

from .helpers import CHARSET_FILES, bundled
from .test_hostile import minimal_dataset, save


def charset_file(name: str):
    path = CHARSET_FILES / name
    if not path.is_file():
        pytest.skip(f"pydicom charset file {name} not installed")
    return path


@pytest.mark.parametrize(
    ("name", "patient_name"),
    [
        ("chrRuss.dcm", "Люкceмбypг"),
        ("chrGreek.dcm", "Διονυσιος"),
        ("chrJapMulti.dcm", "やまだ^たろう"),
    ],
)
def test_it_decodes_names_per_specific_character_set(tmp_path, name, patient_name):
    ds = pydicom.dcmread(charset_file(name))
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if keyword not in ds:
            setattr(ds, keyword, pydicom.uid.generate_uid())
    path = save(ds, tmp_path / name)

    parsed = read_dicom(path)

    assert patient_name in str(parsed.dataset.PatientName)


def test_it_warns_about_an_unknown_character_set(tmp_path):
    ds = minimal_dataset()
    ds.SpecificCharacterSet = "ISO_IR 999"
    ds.PatientName = "Doe^Jane"
    path = save(ds, tmp_path / "charset.dcm")

    parsed = read_dicom(path)

    assert str(parsed.dataset.PatientName) == "Doe^Jane"
    assert any("ISO_IR 999" in warning for warning in parsed.warnings), parsed.warnings


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_it_refuses_a_missing_uid(tmp_path, keyword):
    ds = minimal_dataset()
    delattr(ds, keyword)
    path = save(ds, tmp_path / "missing.dcm")

    with pytest.raises(InvalidDicom, match=f"missing {keyword}"):
        read_dicom(path)


@pytest.mark.parametrize("uid", ["1.2.abc", "1..2", "1.2." + "3" * 70, "1.2.-3"])
def test_it_refuses_a_malformed_uid(tmp_path, uid):
    ds = minimal_dataset()
    ds.SeriesInstanceUID = uid
    path = save(ds, tmp_path / "malformed.dcm")

    with pytest.raises(InvalidDicom, match="malformed SeriesInstanceUID"):
        read_dicom(path)


def test_it_only_warns_about_a_leading_zero(tmp_path):
    ds = minimal_dataset()
    ds.StudyInstanceUID = "1.2.03.4"
    path = save(ds, tmp_path / "zero.dcm")

    parsed = read_dicom(path)

    assert any("leading zero" in warning for warning in parsed.warnings)


def test_it_names_a_bad_value(tmp_path):
    # Written as LO in implicit VR, read back as the dictionary's IS (PS3.5 §7.1.3).
    ds = minimal_dataset(pydicom.uid.ImplicitVRLittleEndian)
    ds.add_new(0x00200013, "LO", "12x")  # InstanceNumber
    path = save(ds, tmp_path / "bad.dcm")

    parsed = read_dicom(path)

    assert any(w.startswith("(0020,0013) InstanceNumber") for w in parsed.warnings)


def test_it_records_where_native_pixel_data_is():
    path = bundled("MR_small.dcm")

    parsed = read_dicom(path)

    assert parsed.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert parsed.has_pixel_data
    assert parsed.pixel_data_length == 64 * 64 * 2
    assert parsed.warnings == []


def test_it_has_no_offset_for_encapsulated_pixel_data():
    parsed = read_dicom(bundled("MR_small_RLE.dcm"))

    assert parsed.has_pixel_data
    assert (parsed.pixel_data_offset, parsed.pixel_data_length) == (None, None)


def test_it_reads_a_file_without_pixel_data():
    parsed = read_dicom(bundled("rtplan.dcm"))

    assert parsed.has_pixel_data is False
    assert parsed.dataset.Modality == "RTPLAN"
