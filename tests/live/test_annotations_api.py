"""Measurements and annotations per user and study: stored, listed, deleted, and only for
studies the user may see."""

import pydicom
import pytest
from django.contrib.auth.models import User

from backend.live.models import Annotation

from ..archive.helpers import receive_file
from ..conftest import grant_every_study, pydicom_file

CT = pydicom_file("CT_small.dcm")


@pytest.fixture
def study(transactional_db, tasks):
    receive_file(CT, tasks)
    return pydicom.dcmread(CT, stop_before_pixels=True)


@pytest.fixture
def reader(transactional_db):
    return grant_every_study(User.objects.create_user("reader", password="x"))


@pytest.fixture
def stranger(transactional_db):
    return User.objects.create_user("stranger", password="x")


def url(study) -> str:
    return f"/api/studies/{study.StudyInstanceUID}/annotations"


def length(study) -> dict:
    return {
        "kind": "length",
        "sop_instance_uid": study.SOPInstanceUID,
        "frame": 0,
        "points": [[10, 10], [60, 10]],
    }


def test_it_stores_and_lists_a_readers_measurements(client, reader, study):
    client.force_login(reader)
    created = client.post(url(study), length(study), content_type="application/json")
    assert created.status_code == 201
    listed = client.get(url(study)).json()["annotations"]
    assert [a["points"] for a in listed] == [[[10.0, 10.0], [60.0, 10.0]]]


def test_it_keeps_measurements_per_user(client, reader, study):
    client.force_login(reader)
    client.post(url(study), length(study), content_type="application/json")
    other = grant_every_study(User.objects.create_user("other", password="x"))
    client.force_login(other)
    assert client.get(url(study)).json()["annotations"] == []


def test_it_deletes_only_the_owners_measurement(client, reader, study):
    client.force_login(reader)
    created = client.post(url(study), length(study), content_type="application/json").json()
    other = grant_every_study(User.objects.create_user("other", password="x"))
    client.force_login(other)
    assert client.delete(f"/api/annotations/{created['id']}").status_code == 404
    client.force_login(reader)
    assert client.delete(f"/api/annotations/{created['id']}").status_code == 204
    assert not Annotation.objects.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "circle"},
        {"sop_instance_uid": "1.2.3"},
        {"frame": 5},
        {"points": [[1, 2]]},
        {"points": [[1, "x"], [2, 3]]},
        {"points": [[1e12, 0], [2, 3]]},
        {"label": "x" * 201},
    ],
)
def test_it_refuses_what_it_cannot_store(client, reader, study, change):
    client.force_login(reader)
    response = client.post(url(study), {**length(study), **change}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]


def test_it_refuses_broken_json(client, reader, study):
    client.force_login(reader)
    response = client.post(url(study), "{", content_type="application/json")
    assert response.status_code == 400


def test_it_hides_a_study_the_user_may_not_see(client, stranger, study):
    client.force_login(stranger)
    assert client.get(url(study)).status_code == 404
    response = client.post(url(study), length(study), content_type="application/json")
    assert response.status_code == 404


def test_it_refuses_anonymous_requests(client, study):
    assert client.get(url(study)).status_code == 401
