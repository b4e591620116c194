# ruff: noqa: F811 - the fixtures are imported from test_manage_access.py and named as arguments
"""/manage/api/audit: search the audit log (date range, event type, user, outcome, study,
patient, address or AE title, text in the detail), paged newest first; and its CSV export,
streamed, bounded, safe to open in a spreadsheet, and itself audited."""

import csv
import io
from datetime import datetime
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from backend.accounts.audit import FAILURE, record
from backend.accounts.manage.audit_log import spreadsheet_safe
from backend.accounts.models import AuditEvent

from .test_manage_access import (  # noqa: F401 (fixtures)
    admin,
    as_admin,
    fast_passwords,
    post,
    radiologist,
    stranger,
)

pytestmark = pytest.mark.django_db


def on(day: str, event_type: str, *outcome: str, **fields) -> AuditEvent:
    """An event recorded at noon of `day` (local time)."""
    moment = timezone.make_aware(datetime.fromisoformat(f"{day}T12:00:00"))
    with mock.patch("django.utils.timezone.now", return_value=moment):
        return record(event_type, *outcome, **fields)


@pytest.fixture
def events(radiologist):
    on("2026-03-01", "dicom.store", calling_ae="CT_ROOM_1", peer_address="10.1.2.3",
       study_instance_uid="1.2.3.4", patient_id="PAT-7")  # fmt: skip
    on("2026-03-02", "auth.login_failed", FAILURE, peer_address="203.0.113.9",
       detail={"username": "rad", "reason": "invalid"})  # fmt: skip
    on("2026-03-03", "admin.user_created", user=radiologist, peer_address="192.0.2.10",
       detail={"target": {"username": "zoë"}, "note": 'said "hi"'})  # fmt: skip
    on("2026-03-04", "admin.share_created", user=radiologist, study_instance_uid="1.2.3.4")


def search(client, **params) -> list[str]:
    response = client.get("/manage/api/audit", params)
    assert response.status_code == 200, response.content
    return [e["event_type"] for e in response.json()["events"]]


def test_it_lists_events_newest_first(as_admin, events):
    assert search(as_admin) == [
        "admin.share_created",
        "admin.user_created",
        "auth.login_failed",
        "dicom.store",
    ]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"since": "2026-03-03"}, ["admin.share_created", "admin.user_created"]),
        ({"until": "2026-03-01"}, ["dicom.store"]),
        ({"since": "2026-03-02", "until": "2026-03-02"}, ["auth.login_failed"]),
        ({"event_type": "dicom.store"}, ["dicom.store"]),
        ({"event_type": "admin.*"}, ["admin.share_created", "admin.user_created"]),
        ({"event_type": "admin"}, []),
        ({"user": "RAD"}, ["admin.share_created", "admin.user_created"]),
        ({"outcome": "failure"}, ["auth.login_failed"]),
        ({"study_instance_uid": "1.2.3.4"}, ["admin.share_created", "dicom.store"]),
        ({"patient_id": "PAT-7"}, ["dicom.store"]),
        ({"address": "10.1."}, ["dicom.store"]),
        ({"address": "ct_room"}, ["dicom.store"]),
        ({"text": "INVALID"}, ["auth.login_failed"]),
        ({"text": "zoë"}, ["admin.user_created"]),
        ({"text": 'said "hi'}, ["admin.user_created"]),
        ({"text": "%"}, []),
        ({"text": "' OR 1=1 --"}, []),
        ({"event_type": "admin.*", "user": "rad", "since": "2026-03-04"}, ["admin.share_created"]),
    ],
)
def test_it_filters_events(as_admin, events, params, expected):
    assert search(as_admin, **params) == expected


def test_it_pages_by_event(as_admin):
    for n in range(7):
        record("dicom.echo", detail={"n": n})

    first = as_admin.get("/manage/api/audit", {"limit": 3}).json()
    second = as_admin.get("/manage/api/audit", {"limit": 3, "before": first["events"][-1]["id"]})
    last = as_admin.get(
        "/manage/api/audit", {"limit": 3, "before": second.json()["events"][-1]["id"]}
    )

    pages = [first, second.json(), last.json()]
    assert [[e["detail"]["n"] for e in page["events"]] for page in pages] == [
        [6, 5, 4],
        [3, 2, 1],
        [0],
    ]
    assert [page["more"] for page in pages] == [True, True, False]


def test_it_caps_the_page_size(as_admin):
    for _ in range(205):
        record("dicom.echo")
    assert len(as_admin.get("/manage/api/audit", {"limit": 10_000}).json()["events"]) == 200


@pytest.mark.parametrize(
    "params, message",
    [
        ({"since": "2026-13-01"}, "since must be a date"),
        ({"until": "yesterday"}, "until must be a date"),
        ({"outcome": "maybe"}, "outcome must be one of"),
        ({"limit": "ten"}, "limit must be an id"),
        ({"limit": "0"}, "limit must be an id"),
        ({"before": "1 OR 1=1"}, "before must be an id"),
        ({"text": "x" * 201}, "longer than 200"),
        ({"user": "a\x00b"}, "cannot be stored"),
    ],
)
def test_it_refuses_bad_filters(as_admin, params, message):
    response = as_admin.get("/manage/api/audit", params)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_it_answers_404_for_an_unknown_cursor(as_admin):
    assert as_admin.get("/manage/api/audit", {"before": "999999"}).status_code == 404


def test_it_lists_the_event_types(as_admin, events):
    types = as_admin.get("/manage/api/audit/event-types").json()["event_types"]
    assert types == [
        "admin.share_created",
        "admin.user_created",
        "auth.login_failed",
        "dicom.store",
    ]


def read_csv(response) -> list[list[str]]:
    async def body() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return list(csv.reader(io.StringIO(async_to_sync(body)().decode())))


def test_it_exports_the_filter_as_csv(as_admin, admin, events):
    response = as_admin.get("/manage/api/audit.csv", {"event_type": "admin.*"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="lightbox-audit-')
    assert response["X-Lightbox-Truncated"] == "0"
    rows = read_csv(response)
    assert rows[0][:4] == ["id", "time", "event_type", "outcome"]
    assert [row[2] for row in rows[1:]] == ["admin.share_created", "admin.user_created"]
    assert rows[2][4] == "rad" and '"zoë"' in rows[2][10]
    exported = AuditEvent.objects.get(event_type="admin.audit_exported")
    assert (exported.user, exported.peer_address) == (admin, "192.0.2.10")
    assert exported.detail["filter"] == {"event_type": "admin.*"}


def test_it_exports_at_most_the_configured_rows(as_admin, settings):
    settings.LIGHTBOX_AUDIT_EXPORT_MAX_ROWS = 1500
    for n in range(1600):
        record("dicom.echo", detail={"n": n})

    response = as_admin.get("/manage/api/audit.csv", {"event_type": "dicom.echo"})

    assert response["X-Lightbox-Truncated"] == "1"
    rows = read_csv(response)[1:]
    assert len(rows) == 1500  # two batches
    assert rows[0][10] == '{"n": 1599}' and rows[-1][10] == '{"n": 100}'


def test_it_makes_cells_safe_for_spreadsheets(as_admin):
    record("dicom.store", calling_ae="=HYPERLINK(1)", patient_id="+1", peer_address="@x")
    row = read_csv(as_admin.get("/manage/api/audit.csv"))[1]
    assert (row[5], row[6], row[9]) == ("'@x", "'=HYPERLINK(1)", "'+1")


@pytest.mark.parametrize(
    "value, safe",
    [("=1+1", "'=1+1"), ("-2", "'-2"), ("+3", "'+3"), ("@SUM(A1)", "'@SUM(A1)"),
     ("\tx", "'\tx"), ("plain", "plain"), ("", ""), ("a=b", "a=b")],
)  # fmt: skip
def test_it_quotes_what_a_spreadsheet_would_evaluate(value, safe):
    assert spreadsheet_safe(value) == safe


def test_it_refuses_a_bad_export_filter_without_auditing(as_admin):
    assert as_admin.get("/manage/api/audit.csv", {"since": "soon"}).status_code == 400
    assert not AuditEvent.objects.filter(event_type="admin.audit_exported").exists()
