"""The JSON API of remote nodes and jobs: access, bad input, unknown nodes, and what a
started job looks like. No network: jobs are only queued here (test_jobs.py runs them)."""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from backend.accounts.models import Profile, Role
from backend.archive import queue
from backend.nodes.models import RemoteJob, RemoteNode

pytestmark = pytest.mark.django_db

STUDY = "1.2.826.0.1.3680043.8.498.1"
ENDPOINTS = [
    ("get", "/api/nodes"),
    ("post", "/api/nodes/PACS/echo"),
    ("post", "/api/nodes/PACS/find"),
    ("post", "/api/nodes/PACS/retrieve"),
    ("post", "/api/nodes/PACS/send"),
    ("get", "/api/jobs"),
    ("get", "/api/jobs/1"),
]


@pytest.fixture
def node():
    return RemoteNode.objects.create(ae_title="PACS", host="127.0.0.1", port=104)


@pytest.fixture
def admin(client):
    """An administrator by role (accounts.Role.ADMIN), not a Django superuser."""
    user = User.objects.create_user("admin", password="x")
    Profile.objects.create(user=user, role=Role.ADMIN)
    client.force_login(user)
    return user


def post(client, url, body=None):
    return client.post(url, json.dumps(body or {}), content_type="application/json")


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_it_sends_anonymous_users_to_log_in(client, node, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302 and response.url.startswith("/login/")


@pytest.mark.parametrize(("method", "url"), [*ENDPOINTS, ("get", "/nodes/")])
@pytest.mark.parametrize("role", [Role.RADIOLOGIST, Role.REFERRING, Role.UPLOADER, None])
def test_it_refuses_users_who_are_not_administrators(client, node, method, url, role):
    # Django's is_staff (the admin site's flag) is not the administrator role.
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    if role:
        Profile.objects.create(user=user, role=role)
    client.force_login(user)
    response = getattr(client, method)(url)
    assert response.status_code == 403
    assert response.json() == {"error": "administrators only"}
    assert not RemoteJob.objects.exists()


def test_it_lets_a_superuser_in(client, node):
    client.force_login(User.objects.create_superuser("root", password="x"))
    assert client.get("/api/nodes").status_code == 200
    assert client.get("/nodes/").status_code == 200


def test_it_refuses_a_post_without_a_csrf_token(node, admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    assert post(client, "/api/nodes/PACS/echo").status_code == 403
    assert not RemoteJob.objects.exists()


def test_it_lists_nodes(client, node, admin):
    nodes = client.get("/api/nodes").json()["nodes"]
    assert [(n["ae_title"], n["port"]) for n in nodes] == [("PACS", 104)]


def test_it_queues_an_echo_and_shows_the_job(
    client, node, admin, tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, "/api/nodes/PACS/echo")

    assert response.status_code == 202
    job = response.json()
    assert (job["kind"], job["state"], job["node"]) == ("echo", "queued", "PACS")
    assert tasks.sent == [(queue.REMOTE_JOB, (job["id"],))]
    assert RemoteJob.objects.get().created_by == admin
    assert client.get(f"/api/jobs/{job['id']}").json()["state"] == "queued"
    listed = client.get("/api/jobs?node=PACS").json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]


def test_it_queues_a_find_and_a_retrieve(client, node, admin, tasks):
    find = post(client, "/api/nodes/PACS/find", {"level": "STUDY", "keys": {"PatientID": "X*"}})
    retrieve = post(client, "/api/nodes/PACS/retrieve", {"study_instance_uid": STUDY})

    assert find.status_code == retrieve.status_code == 202
    assert find.json()["parameters"] == {"level": "STUDY", "keys": {"PatientID": "X*"}}
    assert retrieve.json()["parameters"] == {"study_instance_uid": STUDY, "method": "move"}


@pytest.mark.parametrize(
    ("url", "body", "message"),
    [
        ("/api/nodes/PACS/find", {"level": "STUDY"}, "keys"),
        ("/api/nodes/PACS/find", {"level": "WARD", "keys": {"PatientID": ""}}, "level"),
        ("/api/nodes/PACS/find", {"level": "STUDY", "keys": {"PatientID": 5}}, "text"),
        ("/api/nodes/PACS/find", {"level": "STUDY", "keys": ["PatientID"]}, "keys"),
        ("/api/nodes/PACS/retrieve", {}, "UID"),
        ("/api/nodes/PACS/retrieve", {"study_instance_uid": "1.2.*"}, "UID"),
        ("/api/nodes/PACS/retrieve", {"study_instance_uid": STUDY, "method": "x"}, "method"),
        (
            "/api/nodes/PACS/retrieve",
            {"study_instance_uid": STUDY, "series_instance_uid": ["1"]},
            "UID",
        ),
        ("/api/nodes/PACS/send", {"study_instance_uid": STUDY}, "no instances"),
        ("/api/nodes/PACS/send", {"study_instance_uid": None}, "UID"),
    ],
)
def test_it_refuses_bad_input(client, node, admin, url, body, message):
    response = post(client, url, body)

    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not RemoteJob.objects.exists()


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff"])
def test_it_refuses_a_body_that_is_not_a_json_object(client, node, admin, body):
    response = client.post("/api/nodes/PACS/find", body, content_type="application/json")
    assert response.status_code == 400 and "JSON object" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/api/nodes/NOBODY/echo"),
        ("post", "/api/nodes/NOBODY/send"),
        ("get", "/api/jobs?node=NOBODY"),
        ("get", "/api/jobs/999"),
    ],
)
def test_it_answers_404_for_unknown_nodes_and_jobs(client, admin, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 404 and "error" in response.json()


def test_it_refuses_the_wrong_method(client, node, admin):
    assert client.get("/api/nodes/PACS/echo").status_code == 405
    assert post(client, "/api/jobs").status_code == 405
