"""Broken and hostile files through the whole pipeline: each ends in a final state with a
reason, nothing crashes, and no half-written rows are left."""

import struct

import pydicom
import pytest
from pydicom.uid import generate_uid

from backend.archive.models import IngestRecord, Instance, Patient, Series, Study

from ..conftest import SMALL, pydicom_file
from ..imaging.test_malformed import EXPECTED, INVALID, PIXELS, WARNING
from .helpers import receive_file

pytestmark = pytest.mark.django_db(transaction=True)
State = IngestRecord.State
MALFORMED = SMALL / "malformed"
needs_malformed = pytest.mark.skipif(
    not MALFORMED.is_dir(), reason=f"malformed test files not found at {MALFORMED}"
)


def assert_consistent() -> None:
    """Every record final; every Instance complete up to its Patient; nothing orphaned."""
    assert all(r.is_final for r in IngestRecord.objects.all())
    for instance in Instance.objects.select_related("series__study__patient"):
        assert instance.series.study.patient is not None
    assert not Series.objects.filter(instances=None).exists()
    assert not Study.objects.filter(series=None).exists()


def assert_quarantined(record: IngestRecord) -> None:
    assert record.state == State.QUARANTINED
    assert record.reason
    assert record.instance is None
    assert not Instance.objects.exists() and not Study.objects.exists()
    assert not Patient.objects.exists()


@needs_malformed
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_it_gives_every_malformed_file_an_outcome(tasks, name):
    expected, words = EXPECTED[name]

    record = receive_file(MALFORMED / name, tasks)

    if expected == INVALID:
        assert_quarantined(record)
        assert words in record.reason
    else:
        assert record.state == State.STORED
        instance = Instance.objects.get()
        assert record.instance == instance
        if expected == PIXELS:
            assert not instance.viewable
            assert words in instance.not_viewable_reason
        else:
            assert expected == WARNING
            assert instance.viewable
            assert any(words in w for w in instance.warnings), instance.warnings
    assert_consistent()


@needs_malformed
def test_it_ingests_all_malformed_files_together(tasks):
    for path in sorted(MALFORMED.iterdir()):
        receive_file(path, tasks)
    assert IngestRecord.objects.count() == len(EXPECTED)
    assert_consistent()


def hostile_copy(tmp_path, name="CT_small.dcm", **changes):
    ds = pydicom.dcmread(pydicom_file(name))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_it_refuses_to_decode_a_huge_claimed_size(tasks, tmp_path):
    path = hostile_copy(tmp_path, Rows=65535, Columns=65535, PixelData=bytes(300))

    record = receive_file(path, tasks)

    assert record.state == State.STORED
    instance = Instance.objects.get()
    assert (instance.rows, instance.columns) == (65535, 65535)
    assert not instance.viewable
    assert "65535" in instance.not_viewable_reason
    assert instance.frames_key == ""
    assert_consistent()


def nested_sequences(depth: int) -> bytes:
    """(0040,A730) ContentSequence nested `depth` deep, undefined lengths, Explicit VR LE."""
    sequence = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    sequence_end = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    return (sequence + item) * depth + (item_end + sequence_end) * depth


def test_it_quarantines_deeply_nested_sequences(tasks, tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    for tag in [t for t in ds.keys() if t >= 0x0040A730]:
        del ds[tag]
    path = tmp_path / "nested.dcm"
    ds.save_as(path, enforce_file_format=True)
    with open(path, "ab") as f:
        f.write(nested_sequences(200))

    record = receive_file(path, tasks)

    assert_quarantined(record)
    assert "nested" in record.reason
    assert_consistent()


HOSTILE = {
    "markup": "<script>alert('x')</script>",
    "sql": "O'Brien\"; DROP TABLE archive_study; --",
    "rtl": "\u202eevil\u202c^Name",
    "long": "A" * 10_000,
}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_it_stores_hostile_strings_verbatim(tasks, tmp_path, value):
    path = hostile_copy(
        tmp_path, SpecificCharacterSet="ISO_IR 192", PatientName=value, StudyDescription=value
    )

    record = receive_file(path, tasks)

    assert record.state == State.STORED
    assert Patient.objects.get().patient_name == value
    assert Study.objects.get().study_description == value
    assert_consistent()


def test_it_drops_nuls_from_strings(tasks, tmp_path):
    path = hostile_copy(tmp_path, PatientName="Doe\x00^Jane", StudyDescription="head\x00 ct")

    record = receive_file(path, tasks)

    assert record.state == State.STORED
    assert Patient.objects.get().patient_name == "Doe^Jane"
    assert Study.objects.get().study_description == "head ct"
    assert_consistent()


def test_it_quarantines_an_empty_file(tasks, tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")

    record = receive_file(path, tasks)

    assert_quarantined(record)
    assert record.size == 0
    assert_consistent()
