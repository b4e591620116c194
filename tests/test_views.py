"""The HTTP pages and API endpoints: access first, then behaviour."""

import pytest
from django.contrib.auth.models import User

from backend.archive.models import Series, Study

from .archive.helpers import receive_file, variant
from .conftest import grant_every_study, pydicom_file

pytestmark = pytest.mark.django_db(transaction=True)
PROTECTED = ["/", "/api/studies", "/api/series/1/thumbnail"]


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice():
    return grant_every_study(User.objects.create_user("alice", password="correct horse battery"))


@pytest.fixture
def logged_in(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def study(tasks):
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    return Study.objects.get()


def test_it_answers_healthz_without_auth_or_data(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert response["Content-Type"].startswith("text/plain")


def test_it_answers_healthz_to_get_only(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.parametrize("url", PROTECTED)
def test_it_sends_anonymous_users_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("url", PROTECTED)
def test_it_sends_inactive_users_to_login(client, alice, url):
    client.force_login(alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_it_serves_the_worklist_page(logged_in):
    response = logged_in.get("/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"


def test_it_lists_studies(logged_in, study):
    response = logged_in.get("/api/studies")
    assert response.status_code == 200
    body = response.json()
    assert (body["limit"], body["offset"]) == (50, 0)
    [row] = body["studies"]
    assert row["study_instance_uid"] == study.study_instance_uid
    assert row["patient_name"] == "CompressedSamples^CT1"
    assert row["modalities_in_study"] == "CT"
    assert row["number_of_instances"] == 1


def test_it_pages_studies_newest_first(logged_in, tasks, tmp_path):
    for _ in range(3):
        receive_file(variant(tmp_path, StudyInstanceUID="new-uid", SOPInstanceUID="new-uid"), tasks)
    newest_first = list(
        Study.objects.order_by("-updated_at").values_list("study_instance_uid", flat=True)
    )
    response = logged_in.get("/api/studies?limit=2&offset=1")
    uids = [row["study_instance_uid"] for row in response.json()["studies"]]
    assert uids == newest_first[1:3]


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=0",
        "limit=abc",
        "limit=1e3",
        f"limit={10**30}",
        "limit=" + "9" * 5000,
        "offset=-5",
        "offset=abc",
        f"offset={10**30}",
    ],
)
def test_it_refuses_a_bad_limit_or_offset_in_words(logged_in, study, query):
    response = logged_in.get(f"/api/studies?{query}")
    assert response.status_code == 400
    assert response.json()["error"].split()[0] in ("limit", "offset")


def test_an_empty_limit_means_the_default_page(logged_in, study):
    body = logged_in.get("/api/studies?limit=&offset=").json()
    assert (body["limit"], body["offset"], len(body["studies"])) == (50, 0, 1)


def test_it_serves_a_series_thumbnail(logged_in, study):
    series = Series.objects.get()
    response = logged_in.get(f"/api/series/{series.pk}/thumbnail")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response.content[:3] == b"\xff\xd8\xff"


def test_it_answers_404_for_a_missing_thumbnail(logged_in, study):
    series = Series.objects.get()
    assert logged_in.get(f"/api/series/{series.pk + 1}/thumbnail").status_code == 404
    Series.objects.update(thumbnail_key="")
    assert logged_in.get(f"/api/series/{series.pk}/thumbnail").status_code == 404


def test_it_shows_a_login_form(client):
    response = client.get("/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html
    assert 'name="password"' in html and 'type="password"' in html
    assert "csrfmiddlewaretoken" in html


def test_it_logs_in_and_redirects_to_the_worklist(client, alice):
    response = client.post("/login/", {"username": "alice", "password": "correct horse battery"})
    assert (response.status_code, response["Location"]) == (302, "/")
    assert client.get("/api/studies").status_code == 200
