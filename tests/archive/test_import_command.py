"""manage.py import: folders, zip archives, a summary, and an exit code for scripts."""

import io
import shutil
import zipfile

import pytest
from django.core.management import CommandError, call_command

from backend.archive import derive, indexing, queue
from backend.archive.models import IngestRecord, Instance

from ..conftest import pydicom_file

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def synchronous_workers(monkeypatch):
    """Each sent task runs at once, so the command's wait loop sees final states."""
    handlers = {
        queue.INGEST_FILE: indexing.index_received,
        queue.INGEST_BATCH: indexing.index_batch,
        queue.DERIVE_SERIES: derive.derive_series,
    }

    def send(name, *args, countdown=None):
        handlers[name](*args)

    monkeypatch.setattr(queue, "send", send)


def run_import(*paths) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("import", *map(str, paths), stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


@pytest.fixture
def folder(tmp_path):
    """CT at the top, MR two levels down: the import must walk into subfolders."""
    root = tmp_path / "export"
    (root / "a" / "b").mkdir(parents=True)
    shutil.copy(pydicom_file("CT_small.dcm"), root / "a" / "ct.dcm")
    shutil.copy(pydicom_file("MR_small.dcm"), root / "a" / "b" / "mr")
    return root


def test_it_imports_a_folder_recursively(folder):
    code, out = run_import(folder)
    assert code == 0
    assert "stored: 2, replaced: 0, already present: 0, rejected: 0" in out
    assert Instance.objects.count() == 2
    assert set(IngestRecord.objects.values_list("source", flat=True)) == {"cli"}


def test_it_records_each_outcome(folder):
    run_import(folder)
    for record in IngestRecord.objects.select_related("instance__series__study"):
        instance = record.instance
        assert record.state == IngestRecord.State.STORED
        assert record.finished_at is not None and record.attempts == 1
        assert record.object_key == instance.object_key == f"objects/{record.sha256}"
        assert record.sop_instance_uid == instance.sop_instance_uid
        assert record.study_instance_uid == instance.series.study.study_instance_uid
    assert IngestRecord.objects.filter(instance__isnull=False).count() == 2


def test_it_imports_a_zip_archive(tmp_path):
    archive = tmp_path / "cd.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(pydicom_file("CT_small.dcm"), "DICOM/IM0001")
        z.write(pydicom_file("MR_small.dcm"), "DICOM/sub/IM0002")
        z.mkdir("DICOM/empty")
    code, out = run_import(archive)
    assert code == 0
    assert "stored: 2," in out
    labels = sorted(IngestRecord.objects.values_list("source_detail", flat=True))
    assert labels == [f"{archive}:DICOM/IM0001", f"{archive}:DICOM/sub/IM0002"]


def test_it_rejects_what_is_not_dicom_and_exits_1(folder, tmp_path):
    (folder / "a" / "notes.txt").write_text("burned by the modality")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("README", "read me")
        z.write(pydicom_file("rtdose.dcm"), "dose.dcm")

    code, out = run_import(folder, archive)

    assert code == 1
    assert "stored: 3, replaced: 0, already present: 0, rejected: 2" in out
    rejected = [line for line in out.splitlines() if line.startswith("  rejected ")]
    assert len(rejected) == 2
    assert any(f"{folder}/a/notes.txt: not a DICOM Part 10 file" in line for line in rejected)
    assert any(f"{archive}:README: not a DICOM Part 10 file" in line for line in rejected)


def test_it_reports_an_unreadable_file(folder):
    (folder / "dangling").symlink_to(folder / "gone.dcm")
    code, out = run_import(folder)
    assert code == 1
    assert "rejected: 1" in out
    assert f"rejected {folder}/dangling: cannot read" in out


def test_it_says_already_present_on_reimport(folder):
    run_import(folder)
    code, out = run_import(folder)
    assert code == 0
    assert "stored: 0, replaced: 0, already present: 2, rejected: 0" in out
    assert Instance.objects.count() == 2


def test_it_refuses_a_missing_path(tmp_path):
    with pytest.raises(CommandError, match="no such file or folder"):
        call_command("import", str(tmp_path / "nowhere"))
    assert not IngestRecord.objects.exists()


def test_it_can_return_without_waiting(folder, monkeypatch):
    monkeypatch.setattr(queue, "send", lambda *args, **kwargs: None)
    out = io.StringIO()
    call_command("import", str(folder), "--no-wait", stdout=out)
    assert "2 file(s) stored and queued for indexing." in out.getvalue()
    assert set(IngestRecord.objects.values_list("state", flat=True)) == {"pending"}
