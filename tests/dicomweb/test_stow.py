# ruff: noqa: F811 - the w_ fixtures are imported from fixtures.py and named as arguments
"""STOW-RS (PS3.18 §10.5): multipart/related bodies through the shared ingest service, the
Store Instances Response (Table 10.5.3-1), and the ASGI body limit in front of it."""

import asyncio

import pydicom
import pytest
from django.test import Client

from backend.accounts.tokens import create_token
from backend.archive.models import IngestRecord, Instance
from backend.dicomweb.limits import BodyLimit

from ..conftest import pydicom_file
from .fixtures import build_multipart, changed_copy, w_client, w_user  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

FILES = ["CT_small.dcm", "MR_small.dcm", "SC_rgb_rle.dcm"]
NOT_DICOM = b"this is not a DICOM file\n" * 20
# FailureReason values (PS3.18 Table 10.5.3-2).
CANNOT_UNDERSTAND = 0xC000
STUDY_MISMATCH = 0xA900


@pytest.fixture
def w_writer(w_user) -> dict:
    """Headers of a client holding a read-and-write API token."""
    _, token = create_token(w_user, "uploader")
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def post(client, bodies: list[bytes], path: str = "/dicomweb/studies", **headers):
    body, content_type = build_multipart(bodies)
    return client.post(path, body, content_type=content_type, **headers)


def files(*names: str) -> list[bytes]:
    return [pydicom_file(name).read_bytes() for name in names]


def answer(response) -> pydicom.Dataset:
    assert response["Content-Type"] == "application/dicom+json"
    return pydicom.Dataset.from_json(response.json())


def stored_uids() -> set[str]:
    return set(Instance.objects.values_list("sop_instance_uid", flat=True))


# Access


def test_it_refuses_anonymous_uploads(client):
    response = post(client, files("CT_small.dcm"))
    assert response.status_code == 401
    assert not IngestRecord.objects.exists()


def test_it_refuses_a_token_with_only_the_read_scope(client, w_user):
    _, token = create_token(w_user, "viewer", ["read"])
    response = post(client, files("CT_small.dcm"), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403
    assert not IngestRecord.objects.exists()


def test_it_accepts_a_token_with_only_the_write_scope(client, w_user, tasks):
    _, token = create_token(w_user, "uploader", ["write"])
    response = post(client, files("CT_small.dcm"), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200


def test_it_refuses_a_session_post_without_the_csrf_token(w_user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(w_user)
    response = post(browser, files("CT_small.dcm"))
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]
    assert not IngestRecord.objects.exists()


def test_it_accepts_a_session_post_with_the_csrf_token(w_user, tasks):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(w_user)
    secret = "a" * 32
    browser.cookies["csrftoken"] = secret
    response = post(browser, files("CT_small.dcm"), HTTP_X_CSRFTOKEN=secret)
    assert response.status_code == 200


def test_it_accepts_basic_credentials_without_a_csrf_token(w_user, tasks):
    import base64

    credentials = base64.b64encode(b"w_reader:correct horse battery").decode()
    browser = Client(enforce_csrf_checks=True)
    response = post(browser, files("CT_small.dcm"), HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code == 200


# Storing


def test_it_stores_every_part(client, w_writer, tasks):
    response = post(client, files(*FILES), **w_writer)
    assert response.status_code == 200
    ds = answer(response)
    assert "FailedSOPSequence" not in ds
    sent = [pydicom.dcmread(pydicom_file(name)) for name in FILES]
    assert [
        (item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID)
        for item in ds.ReferencedSOPSequence
    ] == [(s.SOPClassUID, s.SOPInstanceUID) for s in sent]
    for item, s in zip(ds.ReferencedSOPSequence, sent, strict=True):
        assert item.RetrieveURL == (
            f"http://testserver/dicomweb/studies/{s.StudyInstanceUID}"
            f"/series/{s.SeriesInstanceUID}/instances/{s.SOPInstanceUID}"
        )
    # Three studies: no study-level RetrieveURL.
    assert "RetrieveURL" not in ds


def test_it_records_the_parts_through_the_ingest_service(client, w_writer, tasks):
    post(client, files(*FILES), **w_writer)
    records = IngestRecord.objects.all()
    assert [r.source for r in records] == ["stow"] * 3
    assert {r.source_detail for r in records} == {"user w_reader"}
    assert {r.state for r in records} == {"pending"}
    tasks.run()
    assert {r.state for r in IngestRecord.objects.all()} == {"stored"}
    sent = {pydicom.dcmread(pydicom_file(name)).SOPInstanceUID for name in FILES}
    assert stored_uids() == sent


def test_it_names_the_study_when_all_parts_belong_to_one(client, w_writer, tasks, tmp_path):
    second = changed_copy(tmp_path, "CT_small.dcm", SOPInstanceUID="new-uid").read_bytes()
    ds = answer(post(client, [*files("CT_small.dcm"), second], **w_writer))
    study = pydicom.dcmread(pydicom_file("CT_small.dcm")).StudyInstanceUID
    assert ds.RetrieveURL == f"http://testserver/dicomweb/studies/{study}"


def test_it_stores_the_good_parts_beside_a_bad_one(client, w_writer, tasks):
    response = post(client, [*files("CT_small.dcm"), NOT_DICOM, *files("MR_small.dcm")], **w_writer)
    assert response.status_code == 202
    ds = answer(response)
    [failed] = ds.FailedSOPSequence
    assert failed.FailureReason == CANNOT_UNDERSTAND
    assert len(ds.ReferencedSOPSequence) == 2
    assert "part 2" in response["Warning"]
    tasks.run()
    assert len(stored_uids()) == 2
    # The bad part is kept in quarantine with its reason, as from any source.
    states = sorted(IngestRecord.objects.values_list("state", flat=True))
    assert states == ["quarantined", "stored", "stored"]


def test_it_refuses_parts_of_another_type(client, w_writer, tasks):
    body, content_type = build_multipart([b"{}"], part_type="application/dicom+json")
    content_type = content_type.replace('type="application/dicom+json"', 'type="application/dicom"')
    response = client.post("/dicomweb/studies", body, content_type=content_type, **w_writer)
    assert response.status_code == 409
    assert answer(response).FailedSOPSequence[0].FailureReason == CANNOT_UNDERSTAND


def test_it_answers_409_when_no_part_is_stored(client, w_writer, tasks):
    response = post(client, [NOT_DICOM, b"\x00" * 200], **w_writer)
    assert response.status_code == 409
    ds = answer(response)
    assert [item.FailureReason for item in ds.FailedSOPSequence] == [CANNOT_UNDERSTAND] * 2
    assert "ReferencedSOPSequence" not in ds


def test_it_refuses_parts_of_another_study_than_the_path_names(client, w_writer, tasks):
    ct = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    mr = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    path = f"/dicomweb/studies/{ct.StudyInstanceUID}"
    response = post(client, files("CT_small.dcm", "MR_small.dcm"), path=path, **w_writer)
    assert response.status_code == 202
    ds = answer(response)
    [failed] = ds.FailedSOPSequence
    assert failed.FailureReason == STUDY_MISMATCH
    assert (failed.ReferencedSOPClassUID, failed.ReferencedSOPInstanceUID) == (
        mr.SOPClassUID,
        mr.SOPInstanceUID,
    )
    assert [item.ReferencedSOPInstanceUID for item in ds.ReferencedSOPSequence] == [
        ct.SOPInstanceUID
    ]
    assert ds.RetrieveURL == f"http://testserver{path}"
    tasks.run()
    assert stored_uids() == {ct.SOPInstanceUID}
    assert IngestRecord.objects.count() == 1  # the refused part was never recorded


def test_it_keeps_the_complete_parts_of_a_truncated_body(client, w_writer, tasks, data_dir):
    ct, mr = files("CT_small.dcm", "MR_small.dcm")
    body, content_type = build_multipart([ct, mr])
    cut = body[: len(body) - len(mr) // 2 - 40]  # in the middle of the second part
    response = client.post("/dicomweb/studies", cut, content_type=content_type, **w_writer)
    assert response.status_code == 202
    ds = answer(response)
    assert [item.ReferencedSOPInstanceUID for item in ds.ReferencedSOPSequence] == [
        pydicom.dcmread(pydicom_file("CT_small.dcm")).SOPInstanceUID
    ]
    assert ds.FailedSOPSequence[0].FailureReason == CANNOT_UNDERSTAND
    tasks.run()
    assert len(stored_uids()) == 1
    # Nothing of the cut part is left behind in the spool.
    assert not [p for p in (data_dir / "spool").rglob("*") if p.is_file()]


# Refused requests


@pytest.mark.parametrize(
    "content_type",
    [
        "application/dicom",
        "application/json",
        'multipart/related; type="application/dicom+json"; boundary=x',
        "multipart/form-data; boundary=x",
        "",
    ],
)
def test_it_refuses_other_content_types(client, w_writer, content_type):
    body, _ = build_multipart(files("CT_small.dcm"), boundary="x")
    response = client.post("/dicomweb/studies", body, content_type=content_type, **w_writer)
    assert response.status_code == 415
    assert not IngestRecord.objects.exists()


def test_it_refuses_a_multipart_type_without_a_boundary(client, w_writer):
    body, _ = build_multipart(files("CT_small.dcm"))
    content_type = 'multipart/related; type="application/dicom"'
    response = client.post("/dicomweb/studies", body, content_type=content_type, **w_writer)
    assert response.status_code == 400


def test_it_refuses_a_body_larger_than_the_limit(client, w_writer, settings):
    settings.LIGHTBOX_STOW_MAX_BYTES = 10_000
    response = post(client, files("CT_small.dcm"), **w_writer)  # 39 kB
    assert response.status_code == 413
    assert not IngestRecord.objects.exists()


def test_it_refuses_a_multipart_body_without_parts(client, w_writer):
    content_type = 'multipart/related; type="application/dicom"; boundary=w-empty'
    response = client.post(
        "/dicomweb/studies", b"--w-empty--\r\n", content_type=content_type, **w_writer
    )
    assert response.status_code == 400


@pytest.mark.parametrize("body", [b"", b"no delimiter in here\r\n"])
def test_it_refuses_a_body_without_any_delimiter(client, w_writer, body):
    content_type = 'multipart/related; type="application/dicom"; boundary=w-empty'
    # CONTENT_TYPE too: the test client leaves it out of a request without a body.
    response = client.post(
        "/dicomweb/studies", body, content_type=content_type, CONTENT_TYPE=content_type, **w_writer
    )
    assert response.status_code == 400


def test_it_refuses_a_malformed_study_uid_in_the_path(client, w_writer):
    response = post(client, files("CT_small.dcm"), path="/dicomweb/studies/1.2.abc", **w_writer)
    assert response.status_code == 400


# The ASGI body limit (backend/dicomweb/limits.py)


class InnerApp:
    """Reads the whole body as Django does, then answers 200 with its length; gives up
    without an answer when the client disconnects."""

    def __init__(self):
        self.called = False

    async def __call__(self, scope, receive, send):
        self.called = True
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


def run_limited(path: str, chunks: list[bytes], headers=()) -> tuple[InnerApp, list[dict]]:
    inner = InnerApp()
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "method": "POST", "headers": list(headers)}
    asyncio.run(BodyLimit(inner)(scope, receive, send))
    return inner, sent


def test_it_stops_a_chunked_body_past_the_limit(settings):
    settings.LIGHTBOX_STOW_MAX_BYTES = 1000
    inner, sent = run_limited("/dicomweb/studies", [b"x" * 600, b"x" * 600, b"x" * 600])
    assert inner.called
    assert sent[0]["status"] == 413
    assert b"larger than 1000 bytes" in sent[1]["body"]
    assert len(sent) == 2


def test_it_refuses_a_declared_length_past_the_limit(settings):
    settings.LIGHTBOX_STOW_MAX_BYTES = 1000
    headers = [(b"content-length", b"1001")]
    inner, sent = run_limited("/dicomweb/studies", [b"x"], headers)
    assert not inner.called
    assert sent[0]["status"] == 413


def test_it_passes_a_body_within_the_limit(settings):
    settings.LIGHTBOX_STOW_MAX_BYTES = 1000
    headers = [(b"content-length", b"1000")]
    inner, sent = run_limited("/dicomweb/studies", [b"x" * 500, b"x" * 500], headers)
    assert [m.get("status") for m in sent] == [200, None]
    assert sent[1]["body"] == b"1000"


def test_it_leaves_other_paths_alone(settings):
    settings.LIGHTBOX_STOW_MAX_BYTES = 1000
    inner, sent = run_limited("/api/upload", [b"x" * 800, b"x" * 800])
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"1600"
