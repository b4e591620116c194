"""Uploads from the worklist (/api/upload): single files and .zip archives through the shared
ingest path, with a result per file, then the indexing outcome (/api/upload/status)."""

import errno
import io
import zipfile

import pytest
from django.test import Client

from backend.accounts.models import AuditEvent
from backend.archive import spool as spool_module
from backend.archive.access import visible_studies
from backend.archive.models import IngestRecord, Study
from backend.archive.spool import get_spool

from ..conftest import pydicom_file
from .helpers import variant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def uploader(client, django_user_model):
    from backend.accounts.models import Profile, Role

    user = django_user_model.objects.create_user("tech", password="x")
    Profile.objects.update_or_create(user=user, defaults={"role": Role.UPLOADER})
    client.force_login(user)
    return user


def post(client, name: str, body: bytes):
    response = client.post(
        f"/api/upload?name={name}", data=body, content_type="application/octet-stream"
    )
    assert response.status_code == 200, response.content
    return response.json()["files"]


def states(client, files) -> dict[str, str]:
    query = "&".join(f"id={f['id']}" for f in files if f["id"])
    answer = client.get(f"/api/upload/status?{query}").json()["files"]
    return {f["id"]: f["state"] for f in answer}


def spooled() -> list:
    return [p for p in get_spool().root.glob("*.dcm")]


def test_a_dicom_file_is_received_then_indexed_and_its_uploader_sees_it(client, uploader, tasks):
    (result,) = post(client, "CT_small.dcm", pydicom_file("CT_small.dcm").read_bytes())
    assert result["status"] == "received"
    assert result["study_instance_uid"]
    record = IngestRecord.objects.get(id=result["id"])
    assert (record.source, record.user) == ("upload", uploader)
    assert get_spool().path(record.id).exists()  # durable before the answer
    assert states(client, [result]) == {result["id"]: "pending"}

    tasks.run()
    assert states(client, [result]) == {result["id"]: "stored"}
    assert (
        visible_studies(uploader).filter(study_instance_uid=result["study_instance_uid"]).exists()
    )
    event = AuditEvent.objects.get(event_type="web.upload")
    assert (event.user, event.detail["received"]) == (uploader, 1)

    (again,) = post(client, "copy.dcm", pydicom_file("CT_small.dcm").read_bytes())
    tasks.run()
    assert states(client, [again]) == {again["id"]: "duplicate"}


def test_a_zip_of_folders_stores_each_dicom_member_and_says_why_others_were_not(
    client, uploader, tasks, tmp_path
):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(pydicom_file("CT_small.dcm"), "study/series1/a.dcm")
        z.write(pydicom_file("MR_small.dcm"), "study/series2/IM0001")  # no extension
        z.writestr("study/readme.txt", "not an image")
        z.writestr("__MACOSX/study/._a.dcm", "resource fork")
        z.writestr("study/.DS_Store", "junk")
        z.writestr("study/empty/", "")
    files = post(client, "export.zip", buffer.getvalue())
    by_name = {f["name"]: f for f in files}
    assert set(by_name) == {
        "export.zip/study/series1/a.dcm",
        "export.zip/study/series2/IM0001",
        "export.zip/study/readme.txt",
    }
    assert by_name["export.zip/study/series1/a.dcm"]["status"] == "received"
    assert by_name["export.zip/study/series2/IM0001"]["status"] == "received"
    skipped = by_name["export.zip/study/readme.txt"]
    assert skipped["status"] == "skipped" and "not a DICOM file" in skipped["reason"]
    assert len(spooled()) == 2  # the text file was not kept
    tasks.run()
    assert Study.objects.count() == 2


def test_a_file_that_is_not_dicom_is_not_stored_and_says_so(client, uploader, tasks):
    (result,) = post(client, "photo.jpg", b"\xff\xd8\xff\xe0" + b"x" * 5000)
    assert result["status"] == "skipped"
    assert "not a DICOM file" in result["reason"]
    assert (spooled(), IngestRecord.objects.count()) == ([], 0)


def test_a_dicomdir_is_skipped_as_an_index(client, uploader, tmp_path):
    from pydicom.data import get_testdata_file

    (result,) = post(client, "DICOMDIR", open(get_testdata_file("DICOMDIR"), "rb").read())
    assert result["status"] == "skipped" and "DICOMDIR" in result["reason"]
    assert IngestRecord.objects.count() == 0


def test_a_damaged_zip_is_refused_in_words(client, uploader):
    (result,) = post(client, "broken.zip", b"PK\x03\x04" + b"\x00" * 100)
    assert result["status"] == "skipped"
    assert "not a readable .zip" in result["reason"]
    assert IngestRecord.objects.count() == 0


def test_a_zip_member_with_a_bad_checksum_is_skipped_and_the_others_kept(client, uploader):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.write(pydicom_file("CT_small.dcm"), "a.dcm")
        z.write(pydicom_file("MR_small.dcm"), "b.dcm")
    data = bytearray(buffer.getvalue())
    position = data.index(b"DICM", data.index(b"b.dcm")) + 200  # inside b.dcm's content
    data[position] ^= 0xFF
    files = {f["name"]: f for f in post(client, "x.zip", bytes(data))}
    assert files["x.zip/a.dcm"]["status"] == "received"
    assert files["x.zip/b.dcm"]["status"] == "skipped"
    assert (
        "damaged" in files["x.zip/b.dcm"]["reason"] or "unpacked" in files["x.zip/b.dcm"]["reason"]
    )
    assert len(spooled()) == 1  # nothing half-written left behind
    assert not list(get_spool().tmp.iterdir())


def test_a_zip_that_unpacks_beyond_the_limit_is_refused(client, uploader, settings):
    settings.LIGHTBOX_UPLOAD_MAX_BYTES = 1 << 20
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.dcm", b"\x00" * (2 << 20))  # 2 MB of zeros: a few kB compressed
    assert len(buffer.getvalue()) < 50_000
    (result,) = post(client, "bomb.zip", buffer.getvalue())
    assert result["status"] == "skipped" and "unpacks to more than" in result["reason"]
    assert spooled() == []


def test_a_full_disk_fails_the_file_in_words_and_records_nothing(client, uploader, monkeypatch):
    def full(self, chunks, sync_dir=True):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.Spool, "receive", full)
    (result,) = post(client, "CT_small.dcm", pydicom_file("CT_small.dcm").read_bytes())
    assert result["status"] == "failed"
    assert "disk is full" in result["reason"]
    assert IngestRecord.objects.count() == 0


def test_status_answers_only_for_the_users_own_uploads(client, uploader, django_user_model):
    (result,) = post(client, "CT_small.dcm", pydicom_file("CT_small.dcm").read_bytes())
    other = Client()
    other.force_login(django_user_model.objects.create_user("other", password="x"))
    answer = other.get(f"/api/upload/status?id={result['id']}&id=not-a-uuid").json()
    assert answer == {"files": []}


def test_upload_needs_a_session_and_the_csrf_token(django_user_model, tmp_path):
    anonymous = Client()
    response = anonymous.post(
        "/api/upload?name=a.dcm", data=b"x", content_type="application/octet-stream"
    )
    assert response.status_code == 401
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(django_user_model.objects.create_user("u", password="x"))
    response = strict.post(
        "/api/upload?name=a.dcm", data=b"x", content_type="application/octet-stream"
    )
    assert response.status_code == 403
    assert IngestRecord.objects.count() == 0
    assert anonymous.get("/api/upload/status?id=x").status_code == 401
    assert anonymous.get("/api/upload").status_code == 405


def test_a_hostile_file_name_is_only_text(client, uploader, tasks, tmp_path):
    name = "<script>alert(1)</script>%00.dcm"
    path = variant(tmp_path, StudyInstanceUID="new-uid")
    (result,) = post(client, name, path.read_bytes())
    assert result["status"] == "received"
    assert result["name"] == "<script>alert(1)</script>.dcm"  # NUL dropped, nothing else
