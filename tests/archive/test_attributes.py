"""From a pydicom Dataset to index values: search keys, DA/TM parsing, extract()."""

import datetime

import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from backend.archive.attributes import date, extract, search_key, time
from backend.imaging.dicomfile import InvalidDicom, read_dicom

from ..conftest import PYDICOM_FILES, SMALL, pydicom_file


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Buc^Jérôme", "BUC JEROME"),
        ("müller^zoë", "MULLER ZOE"),
        ("Ðorđe^Ñuñez", "ÐORĐE NUNEZ"),
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", "YAMADA TAROU 山田 太郎 やまだ たろう"),
        ("  Doe ^^ John  ", "DOE JOHN"),
        ("Doe^John^^^", "DOE JOHN"),
        ("", ""),
        ("^=^", ""),
    ],
)
def test_it_builds_search_keys(text, key):
    assert search_key(text) == key


@pytest.mark.parametrize("kana", ["ガ", "ぱ", "ジョン", "ヴ"])
def test_it_keeps_kana_voicing_marks(kana):
    assert search_key(kana) == kana


def test_it_folds_compatibility_forms():
    # NFKD: full-width Latin and half-width katakana become their ordinary forms.
    assert search_key("ＤＯＥ") == "DOE"
    assert search_key("ｶﾞ") == "ガ"


def raw_dataset(ds: Dataset | None = None, **values: str) -> Dataset:
    """Values as a file would carry them: raw bytes, converted (or not) on first access."""
    ds = Dataset() if ds is None else ds
    for keyword, value in values.items():
        tag = tag_for_keyword(keyword)
        encoded = value.encode("latin-1")
        ds[tag] = RawDataElement(
            BaseTag(tag), dictionary_VR(tag), len(encoded), encoded, 0, False, True
        )
    return ds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20240229", datetime.date(2024, 2, 29)),
        ("1999.12.31", datetime.date(1999, 12, 31)),
        ("2001-02-03", datetime.date(2001, 2, 3)),
        (" 20200101 ", datetime.date(2020, 1, 1)),
        ("20230229", None),
        ("20241301", None),
        ("2024", None),
        ("202401011", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_it_parses_da(value, expected):
    ds = raw_dataset(StudyDate=value)
    assert date(ds, "StudyDate") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("07", datetime.time(7)),
        ("0715", datetime.time(7, 15)),
        ("071530", datetime.time(7, 15, 30)),
        ("071530.5", datetime.time(7, 15, 30, 500000)),
        ("071530.123456", datetime.time(7, 15, 30, 123456)),
        ("07:15:30", datetime.time(7, 15, 30)),
        ("235960", datetime.time(23, 59, 59)),  # leap second
        ("240000", None),
        ("076000", None),
        ("071530.1234567", None),
        ("7", None),
        ("noon", None),
        ("", None),
    ],
)
def test_it_parses_tm(value, expected):
    ds = raw_dataset(StudyTime=value)
    assert time(ds, "StudyTime") == expected


def test_it_treats_an_absent_value_as_none():
    assert date(Dataset(), "StudyDate") is None
    assert time(Dataset(), "StudyTime") is None


def test_it_extracts_every_level_of_a_ct():
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    out = extract(ds)
    assert out.patient["patient_name"] == "CompressedSamples^CT1"
    assert out.patient["patient_name_search"] == "COMPRESSEDSAMPLES CT1"
    assert out.patient["patient_id"] == str(ds.PatientID)
    assert out.study["study_instance_uid"] == ds.StudyInstanceUID
    assert out.study["study_date"] == datetime.date(2004, 1, 19)
    assert out.study["study_time"] == datetime.time(7, 27, 30)
    assert out.series["series_instance_uid"] == ds.SeriesInstanceUID
    assert out.series["modality"] == "CT"
    instance = out.instance
    assert instance["sop_instance_uid"] == ds.SOPInstanceUID
    assert (instance["rows"], instance["columns"]) == (128, 128)
    assert instance["image_position_patient"] == [float(v) for v in ds.ImagePositionPatient]
    assert len(instance["image_orientation_patient"]) == 6
    assert instance["pixel_spacing"] == [float(v) for v in ds.PixelSpacing]
    assert instance["number_of_frames"] == 1
    assert instance["bits_stored"] == 16
    assert out.warnings == []


def test_it_extracts_a_multiframe_dose():
    out = extract(pydicom.dcmread(pydicom_file("rtdose.dcm")))
    assert out.instance["number_of_frames"] == 15
    assert out.series["modality"] == "RTDOSE"


def test_it_extracts_an_mr_without_study_date_warnings():
    out = extract(pydicom.dcmread(pydicom_file("MR_small.dcm")))
    assert out.series["modality"] == "MR"
    assert out.instance["window_center"] is None or isinstance(out.instance["window_center"], list)
    assert out.warnings == []


def test_it_warns_about_an_invalid_study_date():
    ds = raw_dataset(pydicom.dcmread(pydicom_file("CT_small.dcm")), StudyDate="20241399")
    out = extract(ds)
    assert out.study["study_date"] is None
    assert any("StudyDate" in w for w in out.warnings)


def test_it_warns_about_a_name_without_searchable_characters():
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.PatientName = "^^^"
    out = extract(ds)
    assert any("PatientName" in w for w in out.warnings)


def test_it_ignores_geometry_of_the_wrong_length():
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.ImagePositionPatient = [1, 2]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1]
    out = extract(ds)
    assert out.instance["image_position_patient"] is None
    assert out.instance["image_orientation_patient"] is None


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_it_tolerates_unparseable_numbers():
    ds = raw_dataset(
        pydicom.dcmread(pydicom_file("CT_small.dcm")), InstanceNumber="12a", SliceThickness="thick"
    )
    out = extract(ds)
    assert out.instance["instance_number"] is None
    assert out.instance["slice_thickness"] is None


SAMPLES = sorted(p for folder in (PYDICOM_FILES, SMALL) for p in folder.rglob("*") if p.is_file())


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_it_extracts_the_same_from_converted_values(path):
    """read_dicom converts every top-level value, and extract then reads the elements
    directly; from a data set whose values pydicom has yet to convert (dcmread's) it goes
    through Dataset.get. Both must give the same."""
    try:
        parsed = read_dicom(path)
    except InvalidDicom:
        pytest.skip("refused at ingest")
    assert extract(parsed.dataset) == extract(pydicom.dcmread(path, stop_before_pixels=True))
