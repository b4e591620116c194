"""manage.py import through a real Celery worker on PostgreSQL and Redis: a real CT series is
indexed, ordered and derived once; importing it again changes nothing."""

from io import StringIO

import pydicom
import pytest
from django.core.management import call_command

from backend.archive.models import Instance, Series, Study
from backend.archive.ordering import slice_normal
from backend.archive.storage import get_storage

from ..conftest import SMALL, needs_testdata
from .helpers import record_states, spooled, wait_spool_empty, wait_until

CT_SERIES = SMALL / "series" / "CT_LIDC-IDRI-0314_10of275"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    needs_testdata(CT_SERIES),
]


def run_import(*args: str) -> str:
    out = StringIO()
    call_command("import", *args, wait_timeout=60, stdout=out)
    return out.getvalue()


def slice_order_of_files() -> list[str]:
    """SOPInstanceUIDs sorted by position along the slice normal (PS3.3 §C.7.6.2.1.1)."""
    positions = []
    for path in CT_SERIES.glob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        normal = slice_normal([float(v) for v in ds.ImageOrientationPatient])
        distance = sum(float(p) * n for p, n in zip(ds.ImagePositionPatient, normal, strict=True))
        positions.append((distance, str(ds.SOPInstanceUID)))
    return [uid for _, uid in sorted(positions)]


def derived_series() -> Series | None:
    series = Series.objects.first()
    if series and series.is_derived and series.thumbnail_key and series.metadata_key:
        return series
    return None


def test_it_indexes_and_derives_a_series_once(start_worker, data_dir):
    start_worker()
    files = sorted(CT_SERIES.glob("*.dcm"))
    assert len(files) == 10

    output = run_import(str(CT_SERIES))

    assert "stored: 10, replaced: 0, already present: 0, rejected: 0" in output
    assert record_states() == {"stored": 10}
    assert Instance.objects.count() == 10
    study = Study.objects.get()
    assert (study.number_of_series, study.number_of_instances) == (1, 10)
    assert study.modalities_in_study == "CT"
    assert study.size_bytes == sum(f.stat().st_size for f in files)
    assert Series.objects.get().number_of_instances == 10
    for instance in Instance.objects.all():
        assert get_storage().exists(instance.object_key)
        assert instance.viewable, instance.not_viewable_reason

    series = wait_until(derived_series, 30, lambda: f"series not derived: {Series.objects.all()}")
    ordered = series.instances.order_by("slice_index")
    assert [i.slice_index for i in ordered] == list(range(10))
    assert [i.sop_instance_uid for i in ordered] == slice_order_of_files()
    assert get_storage().read(series.thumbnail_key)[:3] == b"\xff\xd8\xff"  # a JPEG
    wait_spool_empty(data_dir)


def test_it_reports_a_second_import_as_already_present(start_worker, data_dir):
    start_worker()
    run_import(str(CT_SERIES))
    first = set(Instance.objects.values_list("pk", "sha256", "object_key"))

    output = run_import(str(CT_SERIES))

    assert "stored: 0, replaced: 0, already present: 10, rejected: 0" in output
    assert record_states() == {"stored": 10, "duplicate": 10}
    assert set(Instance.objects.values_list("pk", "sha256", "object_key")) == first
    study = Study.objects.get()
    assert (study.number_of_series, study.number_of_instances) == (1, 10)
    assert Series.objects.get().number_of_instances == 10
    wait_spool_empty(data_dir)
    assert spooled(data_dir) == []
