"""Who may use the /manage pages and their API: administrators only; anonymous visitors are
sent to the login form (pages) or get 401 (API), everyone else 403; POSTs need the CSRF
token. The fixtures here serve the other test_manage_* files too."""

import json
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from backend.accounts.models import Profile, Role

from ..conftest import REPO, grant_every_study

pytestmark = pytest.mark.django_db

PAGES = ["/manage/", "/manage/users", "/manage/groups", "/manage/shares", "/manage/audit"]
API_GET = [
    "/manage/api/users",
    "/manage/api/users/1",
    "/manage/api/groups",
    "/manage/api/shares",
    "/manage/api/studies?q=x",
    "/manage/api/audit",
    "/manage/api/audit/event-types",
    "/manage/api/audit.csv",
]
API_POST = [
    "/manage/api/users",
    "/manage/api/users/1",
    "/manage/api/users/1/deactivate",
    "/manage/api/users/1/reactivate",
    "/manage/api/users/1/invite",
    "/manage/api/users/1/reset-password",
    "/manage/api/users/1/unlock",
    "/manage/api/users/1/reset-two-factor",
    "/manage/api/users/1/end-sessions",
    "/manage/api/tokens/1/revoke",
    "/manage/api/groups",
    "/manage/api/groups/1",
    "/manage/api/groups/1/delete",
    "/manage/api/groups/1/members/add",
    "/manage/api/groups/1/members/remove",
    "/manage/api/groups/1/rules",
    "/manage/api/rules/1/delete",
    "/manage/api/shares",
    "/manage/api/shares/1/revoke",
]


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin():
    """An administrator by role (accounts.Role.ADMIN), not a Django superuser."""
    user = User.objects.create_user("root", password="admin password 1")
    Profile.objects.create(user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def radiologist():
    return grant_every_study(User.objects.create_user("rad", password="radiologist pw 1"))


@pytest.fixture
def stranger():
    """Signed in, but in no group and with no profile."""
    return User.objects.create_user("stranger", password="stranger pw 1")


@pytest.fixture
def as_admin(admin) -> Client:
    client = Client(REMOTE_ADDR="192.0.2.10")
    client.force_login(admin)
    return client


def post(client: Client, path: str, body=None):
    """POST `body` as JSON, as the pages do."""
    return client.post(path, json.dumps(body or {}), content_type="application/json")


@pytest.mark.parametrize("path", PAGES)
def test_it_sends_anonymous_visitors_of_a_page_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("path", API_GET)
def test_it_answers_401_to_anonymous_api_reads(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.json() == {"error": "sign in first"}


@pytest.mark.parametrize("path", API_POST)
def test_it_answers_401_to_anonymous_api_writes(client, path):
    assert post(client, path).status_code == 401


@pytest.mark.parametrize("who", ["radiologist", "stranger"])
@pytest.mark.parametrize("path", PAGES)
def test_it_refuses_pages_to_non_admins(client, request, who, path):
    client.force_login(request.getfixturevalue(who))
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("who", ["radiologist", "stranger"])
@pytest.mark.parametrize("path", API_GET)
def test_it_refuses_api_reads_to_non_admins(client, request, who, path):
    client.force_login(request.getfixturevalue(who))
    response = client.get(path)
    assert response.status_code == 403
    assert response.json() == {"error": "administrators only"}


@pytest.mark.parametrize("who", ["radiologist", "stranger"])
@pytest.mark.parametrize("path", API_POST)
def test_it_refuses_api_writes_to_non_admins(client, request, who, path):
    client.force_login(request.getfixturevalue(who))
    assert post(client, path, {"username": "mallory", "name": "x"}).status_code == 403
    assert not User.objects.filter(username="mallory").exists()


def test_it_refuses_an_inactive_admin(client, admin):
    client.force_login(admin)
    User.objects.filter(pk=admin.pk).update(is_active=False)
    assert client.get("/manage/users").status_code == 302
    assert client.get("/manage/api/users").status_code == 401


@pytest.mark.parametrize("path", PAGES[1:])
def test_it_serves_the_pages_to_admins(as_admin, path):
    response = as_admin.get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = b"".join(response.streaming_content)
    assert b'<script type="module" src="/static/app/js/manage/' in page
    assert "csrftoken" in response.cookies  # the page's script sends it back


def test_it_redirects_the_manage_root_to_users(as_admin):
    response = as_admin.get("/manage/")
    assert (response.status_code, response["Location"]) == (302, "/manage/users")


def test_it_serves_a_superuser_too(client):
    client.force_login(User.objects.create_superuser("boss", password="boss password 1"))
    assert client.get("/manage/api/users").status_code == 200


def test_it_needs_the_csrf_token_to_post(admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    client.get("/manage/users")  # sets the CSRF cookie, as a browser would
    body = json.dumps({"name": "Chest"})

    refused = client.post("/manage/api/groups", body, content_type="application/json")
    token = client.cookies["csrftoken"].value
    accepted = client.post(
        "/manage/api/groups", body, content_type="application/json", headers={"X-CSRFToken": token}
    )

    assert refused.status_code == 403
    assert accepted.status_code == 201


def test_it_answers_a_wrong_method_with_json(as_admin):
    response = as_admin.get("/manage/api/users/1/deactivate")
    assert response.status_code == 405
    assert response.json() == {"error": "use POST"}
    assert response["Allow"] == "POST"


def test_it_never_lets_api_answers_be_cached(as_admin):
    response = as_admin.get("/manage/api/users")
    assert "no-store" in response["Cache-Control"]


def test_it_opens_the_invitation_page_without_a_session(client):
    # An unknown link: the page says so, without a login redirect.
    response = client.get("/manage/invite/" + "x" * 43)
    assert response.status_code == 404
    assert b"expired or was already used" in b"".join(response.streaming_content)


@pytest.mark.parametrize("page", sorted((REPO / "frontend" / "manage").glob("*.html")), ids=str)
def test_it_keeps_scripts_and_handlers_out_of_the_pages(page):
    # The Content-Security-Policy allows script files only (script-src 'self').
    html = page.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE)
    assert "style=" not in html
