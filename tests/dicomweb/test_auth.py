# ruff: noqa: F811 - the w_ fixtures are imported from fixtures.py and named as arguments
"""Who may call DICOMweb (backend/dicomweb/auth.py): the browser session, HTTP Basic and
API tokens; `manage.py apitoken`; and CORS for viewers served from other origins."""

import base64
import hashlib
import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from backend.accounts.models import ApiToken
from backend.accounts.tokens import create_token, revoke_token
from backend.dicomweb import auth

from .fixtures import PASSWORD, w_client, w_token, w_user  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/dicomweb/studies"
VIEWER = "https://viewer.example.org"


@pytest.fixture(autouse=True)
def w_no_remembered_credentials():
    auth._basic_cache.clear()
    yield
    auth._basic_cache.clear()


def basic(username: str, password: str) -> dict:
    value = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {value}"}


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def apitoken(*args) -> str:
    out = io.StringIO()
    call_command("apitoken", *args, stdout=out)
    return out.getvalue()


# Anonymous and session


@pytest.mark.parametrize("url", [URL, "/dicomweb/series", "/wado?requestType=WADO"])
def test_it_challenges_anonymous_requests(client, url):
    response = client.get(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="Lightbox", charset="UTF-8"'
    assert "error" in response.json()


def test_it_accepts_the_browser_session(client, w_user):
    assert client.login(username="w_reader", password=PASSWORD)
    assert client.get(URL).status_code == 200


def test_it_refuses_the_session_of_an_inactive_user(w_client, w_user):
    User.objects.filter(pk=w_user.pk).update(is_active=False)
    assert w_client.get(URL).status_code == 401


def test_it_prefers_a_wrong_authorization_header_to_the_session(w_client):
    response = w_client.get(URL, **basic("w_reader", "wrong"))
    assert response.status_code == 401


# HTTP Basic


def test_it_accepts_basic_credentials(client, w_user):
    assert client.get(URL, **basic("w_reader", PASSWORD)).status_code == 200


@pytest.mark.parametrize(
    ("username", "password"),
    [("w_reader", "wrong"), ("w_reader", ""), ("nobody", PASSWORD), ("W_READER", PASSWORD)],
)
def test_it_refuses_wrong_basic_credentials(client, w_user, username, password):
    response = client.get(URL, **basic(username, password))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")


def test_it_checks_a_password_once_while_it_is_remembered(client, w_user, monkeypatch):
    checks = []
    real = auth.authenticate
    monkeypatch.setattr(auth, "authenticate", lambda *a, **kw: checks.append(1) or real(*a, **kw))
    for _ in range(3):
        assert client.get(URL, **basic("w_reader", PASSWORD)).status_code == 200
    assert len(checks) == 1
    # A wrong password is never remembered.
    for _ in range(2):
        assert client.get(URL, **basic("w_reader", "wrong")).status_code == 401
    assert len(checks) == 3


def test_it_refuses_the_old_password_at_once_after_a_change(client, w_user):
    assert client.get(URL, **basic("w_reader", PASSWORD)).status_code == 200  # remembered
    w_user.set_password("a new password")
    w_user.save()
    assert client.get(URL, **basic("w_reader", PASSWORD)).status_code == 401
    assert client.get(URL, **basic("w_reader", "a new password")).status_code == 200


def test_it_refuses_a_remembered_password_once_the_user_is_deactivated(client, w_user):
    assert client.get(URL, **basic("w_reader", PASSWORD)).status_code == 200
    User.objects.filter(pk=w_user.pk).update(is_active=False)
    assert client.get(URL, **basic("w_reader", PASSWORD)).status_code == 401


def test_it_accepts_a_password_with_a_colon(client, w_user):
    w_user.set_password("pass:word")
    w_user.save()
    assert client.get(URL, **basic("w_reader", "pass:word")).status_code == 200


# API tokens


def test_it_accepts_a_bearer_token(client, w_token):
    assert client.get(URL, **bearer(w_token)).status_code == 200
    assert ApiToken.objects.get().last_used_at is not None


def test_it_refuses_a_revoked_token_at_once(client, w_token):
    assert client.get(URL, **bearer(w_token)).status_code == 200
    revoke_token(ApiToken.objects.get())
    response = client.get(URL, **bearer(w_token))
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]


def test_it_refuses_the_token_of_an_inactive_user(client, w_user, w_token):
    User.objects.filter(pk=w_user.pk).update(is_active=False)
    assert client.get(URL, **bearer(w_token)).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer lbx_not-a-token",
        "Bearer ",
        "Bearer",
        "Digest username=w_reader",
        "Token lbx_abc",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no colon here").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode(),
        "Basic",
        "garbage",
    ],
)
def test_it_refuses_malformed_authorization_headers(client, w_user, header):
    response = client.get(URL, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")


def test_it_refuses_a_token_of_another_user_that_was_deleted(client, w_user):
    other = User.objects.create_user("w_other", password="x")
    _, token = create_token(other, "old laptop")
    other.delete()
    assert client.get(URL, **bearer(token)).status_code == 401


# manage.py apitoken


def test_it_creates_a_token_and_prints_it_once(client, w_user):
    output = apitoken("create", "w_reader", "--name", "viewer")
    token = output.strip()
    assert output == token + "\n" and token.startswith("lbx_")
    row = ApiToken.objects.get()
    assert (row.user, row.name, sorted(row.scopes)) == (w_user, "viewer", ["read", "write"])
    # Only the digest is kept.
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert row.prefix == token[:12]
    assert token not in {row.digest, row.prefix, row.name}
    assert client.get(URL, **bearer(token)).status_code == 200


def test_it_creates_a_token_with_chosen_scopes(w_user):
    apitoken("create", "w_reader", "--scope", "read")
    assert ApiToken.objects.get().scopes == ["read"]


def test_it_refuses_a_token_for_an_unknown_user():
    with pytest.raises(CommandError, match="no user"):
        apitoken("create", "nobody")
    assert not ApiToken.objects.exists()


def test_it_lists_tokens(client, w_user):
    token = apitoken("create", "w_reader", "--name", "viewer").strip()
    row = ApiToken.objects.get()
    assert apitoken("list").splitlines() == [
        f"{row.pk}\tw_reader\tviewer\t{token[:12]}…\tread,write\tactive\tlast used never"
    ]
    client.get(URL, **bearer(token))
    assert "last used 20" in apitoken("list", "w_reader")
    assert apitoken("list", "somebody-else") == ""
    assert token not in apitoken("list")


def test_it_revokes_a_token(client, w_user):
    token = apitoken("create", "w_reader", "--name", "viewer").strip()
    row = ApiToken.objects.get()
    assert apitoken("revoke", str(row.pk)) == f"revoked {row.pk} (viewer)\n"
    assert "\trevoked\t" in apitoken("list")
    assert client.get(URL, **bearer(token)).status_code == 401
    with pytest.raises(CommandError, match="no token"):
        apitoken("revoke", str(row.pk + 1000))


# CORS (backend/dicomweb/cors.py)


@pytest.fixture
def w_cors(settings):
    settings.LIGHTBOX_CORS_ALLOWED_ORIGINS = [VIEWER]


def preflight(client, origin: str, url: str = URL):
    return client.options(
        url,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, accept",
    )


def test_it_sends_no_cors_headers_by_default(client, w_token):
    response = client.get(URL, HTTP_ORIGIN=VIEWER, **bearer(w_token))
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Origin" not in preflight(client, VIEWER)


def test_it_answers_a_preflight_from_an_allowed_origin(client, w_cors):
    response = preflight(client, VIEWER)
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == VIEWER
    allowed = [h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")]
    assert {"authorization", "accept"} <= set(allowed)
    assert "GET" in response["Access-Control-Allow-Methods"]
    assert "POST" in response["Access-Control-Allow-Methods"]
    # Cookies never go cross-origin: a page elsewhere cannot use the user's session.
    assert "Access-Control-Allow-Credentials" not in response


def test_it_allows_requests_from_an_allowed_origin(client, w_cors, w_token):
    response = client.get(URL, HTTP_ORIGIN=VIEWER, **bearer(w_token))
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == VIEWER
    assert "Warning" in response["Access-Control-Expose-Headers"]
    assert "Origin" in response["Vary"]
    # A refusal reaches the viewer's script too, so it can ask for credentials.
    refused = client.get(URL, HTTP_ORIGIN=VIEWER)
    assert refused.status_code == 401
    assert refused["Access-Control-Allow-Origin"] == VIEWER


def test_it_allows_wado_uri_from_an_allowed_origin(client, w_cors, w_token):
    response = client.get("/wado?requestType=WADO", HTTP_ORIGIN=VIEWER, **bearer(w_token))
    assert response["Access-Control-Allow-Origin"] == VIEWER


@pytest.mark.parametrize(
    "origin", ["https://evil.example.org", "http://viewer.example.org", VIEWER + ":8443"]
)
def test_it_sends_no_cors_headers_to_other_origins(client, w_cors, w_token, origin):
    assert "Access-Control-Allow-Origin" not in preflight(client, origin)
    response = client.get(URL, HTTP_ORIGIN=origin, **bearer(w_token))
    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.parametrize("url", ["/api/studies", "/healthz", "/login/", "/admin/"])
def test_it_never_sends_cors_headers_outside_dicomweb(w_client, w_cors, url):
    assert "Access-Control-Allow-Origin" not in w_client.get(url, HTTP_ORIGIN=VIEWER)
    assert "Access-Control-Allow-Origin" not in preflight(w_client, VIEWER, url)
