# ruff: noqa: F811 - the fixtures are imported from test_manage_access.py and named as arguments
"""/manage/api/shares and /manage/api/studies: share a study (found by search or by UID)
with a user or a group, optionally until a date; list and revoke shares. A share is what
access.py then lets the user see."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from backend.accounts.models import AccessGroup, AuditEvent, StudyShare
from backend.archive.access import can_see
from backend.archive.models import Study

from ..archive.helpers import receive_file
from ..conftest import pydicom_file
from .test_manage_access import (  # noqa: F401 (fixtures)
    admin,
    as_admin,
    fast_passwords,
    post,
    radiologist,
    stranger,
)

pytestmark = pytest.mark.django_db(transaction=True)
CT_UID = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


@pytest.fixture
def study(tasks) -> Study:
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    receive_file(pydicom_file("MR_small.dcm"), tasks)
    return Study.objects.get(study_instance_uid=CT_UID)


def share(client, **body):
    return post(client, "/manage/api/shares", {"study_instance_uid": CT_UID, **body})


@pytest.mark.parametrize("q", ["ct1", "compressedsamples^ct1", "1ct1", CT_UID[:24]])
def test_it_finds_studies_to_share(as_admin, study, q):
    found = as_admin.get("/manage/api/studies", {"q": q}).json()["studies"]
    assert [s["study_instance_uid"] for s in found] == [CT_UID]
    assert found[0]["patient_name"] == "CompressedSamples^CT1"


def test_it_finds_every_study_of_a_name(as_admin, study):
    found = as_admin.get("/manage/api/studies", {"q": "Compressed"}).json()["studies"]
    assert {s["patient_id"] for s in found} == {"1CT1", "4MR1"}


def test_it_finds_nothing_for_an_empty_search(as_admin, study):
    assert as_admin.get("/manage/api/studies", {"q": " "}).json() == {"studies": []}


def test_it_shares_a_study_with_a_user(as_admin, admin, study, stranger):
    assert not can_see(stranger, study)

    response = share(as_admin, user=stranger.pk)

    assert response.status_code == 201, response.content
    row = response.json()["share"]
    assert (row["user"]["username"], row["expires_at"], row["created_by"]) == (
        "stranger",
        None,
        "root",
    )
    assert can_see(stranger, study)
    event = AuditEvent.objects.get(event_type="admin.share_created")
    assert (event.user, event.study_instance_uid, event.patient_id) == (admin, CT_UID, "1CT1")
    assert event.detail["with"]["username"] == "stranger"


def test_it_shares_a_study_with_a_group_until_a_date(as_admin, study, stranger):
    group = AccessGroup.objects.create(name="Tumour board")
    group.members.add(stranger)
    until = timezone.localdate() + timedelta(days=3)

    row = share(as_admin, group=group.pk, expires_on=until.isoformat()).json()["share"]

    expires = timezone.localtime(StudyShare.objects.get().expires_at)
    assert (expires.date(), expires.hour, expires.minute) == (until + timedelta(days=1), 0, 0)
    assert row["group"]["name"] == "Tumour board" and not row["expired"]
    assert can_see(stranger, study)


def test_it_shares_until_the_end_of_today(as_admin, study, stranger):
    share(as_admin, user=stranger.pk, expires_on=timezone.localdate().isoformat())
    assert can_see(stranger, study)


def test_it_sets_a_new_date_when_sharing_again(as_admin, study, stranger):
    share(as_admin, user=stranger.pk, expires_on=(date.today() + timedelta(days=9)).isoformat())
    share(as_admin, user=stranger.pk)
    assert StudyShare.objects.get().expires_at is None


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"user": "ME", "study_instance_uid": "1.2.3"}, 404, "no study with this"),
        ({}, 400, "share with one user or one group"),
        ({"user": "ME", "group": 1}, 400, "share with one user or one group"),
        ({"user": 999}, 404, "no such user"),
        ({"group": 999}, 404, "no such group"),
        ({"user": "1"}, 400, "user id must be an id"),
        ({"user": True}, 400, "user id must be an id"),
        ({"user": "ME", "expires_on": "2020-01-01"}, 400, "in the past"),
        ({"user": "ME", "expires_on": "2031-02-30"}, 400, "must be a date"),
        ({"user": "ME", "expires_on": "tomorrow"}, 400, "must be a date"),
        ({"user": "ME", "study_instance_uid": ""}, 400, "study_instance_uid is required"),
    ],
)
def test_it_refuses_bad_shares(as_admin, admin, study, body, status, message):
    if body.get("user") == "ME":
        body["user"] = admin.pk
    response = share(as_admin, **body)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert not StudyShare.objects.exists()


def test_it_lists_shares_newest_first_and_by_user(as_admin, study, stranger, radiologist):
    share(as_admin, user=stranger.pk)
    share(as_admin, user=radiologist.pk)

    everyone = as_admin.get("/manage/api/shares").json()["shares"]
    strangers = as_admin.get("/manage/api/shares", {"user": stranger.pk}).json()["shares"]

    assert [s["user"]["username"] for s in everyone] == ["rad", "stranger"]
    assert [s["user"]["username"] for s in strangers] == ["stranger"]
    assert everyone[0]["study"]["patient_id"] == "1CT1"


def test_it_marks_expired_shares(as_admin, admin, study, stranger):
    StudyShare.objects.create(
        study=study, user=stranger, expires_at=timezone.now() - timedelta(hours=1), created_by=admin
    )
    assert as_admin.get("/manage/api/shares").json()["shares"][0]["expired"] is True
    assert not can_see(stranger, study)


def test_it_revokes_a_share(as_admin, study, stranger):
    share_id = share(as_admin, user=stranger.pk).json()["share"]["id"]

    response = post(as_admin, f"/manage/api/shares/{share_id}/revoke")

    assert response.json() == {"revoked": share_id}
    assert not can_see(stranger, study)
    event = AuditEvent.objects.get(event_type="admin.share_revoked")
    assert (event.study_instance_uid, event.detail["share"]) == (CT_UID, share_id)
    assert post(as_admin, f"/manage/api/shares/{share_id}/revoke").status_code == 404


@pytest.mark.parametrize("query", [{"user": "x"}, {"group": "-1"}, {"user": "9" * 30}])
def test_it_refuses_bad_list_filters(as_admin, query):
    assert as_admin.get("/manage/api/shares", query).status_code == 400
