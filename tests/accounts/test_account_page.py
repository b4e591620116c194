"""The "my account" page: password change, sessions, API tokens; access first."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from backend.accounts.models import ApiToken, AuditEvent, Profile, UserSession
from backend.accounts.tokens import check_token, create_token

pytestmark = pytest.mark.django_db
PASSWORD = "violet-harbour-lantern-42"
NEW_PASSWORD = "quiet-meadow-copper-71"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice():
    return User.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def stranger():
    return User.objects.create_user("stranger", password=PASSWORD)


def signed_in_as(username: str, address: str = "127.0.0.1") -> Client:
    """A browser that signed in through the form (so its session is recorded)."""
    client = Client(REMOTE_ADDR=address, HTTP_USER_AGENT=f"Browser of {username}")
    response = client.post("/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302
    return client


def events(event_type: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=event_type).order_by("id"))


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/account/"),
        ("post", "/account/password/"),
        ("post", "/account/sessions/1/end/"),
        ("post", "/account/tokens/"),
        ("post", "/account/tokens/1/revoke/"),
    ],
)
def test_it_sends_visitors_to_the_login_page(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_it_shows_sessions_tokens_and_two_factor_status(alice):
    create_token(alice, "OHIF laptop", ["read"])
    client = signed_in_as("alice", "10.3.3.3")
    page = client.get("/account/").content.decode()
    assert "10.3.3.3" in page and "Browser of alice" in page and "This browser" in page
    assert "OHIF laptop" in page and "lbx_" in page
    assert "Off" in page and 'name="old_password"' in page


def test_it_changes_the_password_and_ends_the_other_sessions(alice):
    other = signed_in_as("alice", "10.0.0.2")
    client = signed_in_as("alice")

    response = client.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response["Location"] == "/account/"
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    assert client.get("/account/").status_code == 200  # this session goes on
    assert other.get("/account/").status_code == 302  # the other one is over
    [row] = UserSession.objects.all()
    assert row.session_key == client.session.session_key
    assert Profile.objects.get(user=alice).password_changed_at is not None
    [event] = events("auth.password_changed")
    assert (event.user, event.outcome, event.detail) == (alice, "success", {"sessions_ended": 1})


@pytest.mark.parametrize("new", ["short-1", "123456789012345", "password1234", "alice-alice"])
def test_it_refuses_a_password_against_the_policy(alice, new):
    client = signed_in_as("alice")
    response = client.post(
        "/account/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert response.status_code == 400
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)
    assert events("auth.password_changed")[0].outcome == "failure"


def test_it_counts_a_wrong_current_password_against_the_account(alice, settings):
    settings.LIGHTBOX_LOGIN_MAX_FAILURES = 2
    client = signed_in_as("alice")
    form = {"old_password": "a guess", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    for _ in range(2):
        assert client.post("/account/password/", form).status_code == 400
    form["old_password"] = PASSWORD
    response = client.post("/account/password/", form)
    assert response.status_code == 400
    assert "Too many failed attempts" in response.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_it_ends_another_session(alice):
    other = signed_in_as("alice", "10.0.0.2")
    client = signed_in_as("alice")
    row = UserSession.objects.get(address="10.0.0.2")

    response = client.post(f"/account/sessions/{row.pk}/end/")

    assert response["Location"] == "/account/"
    assert other.get("/account/").status_code == 302
    assert client.get("/account/").status_code == 200
    [event] = events("auth.sessions_ended")
    assert event.detail == {"count": 1, "scope": "one"}


def test_it_ends_this_session_too(alice):
    client = signed_in_as("alice")
    row = UserSession.objects.get()
    response = client.post(f"/account/sessions/{row.pk}/end/")
    assert response["Location"] == "/login/"
    assert client.get("/account/").status_code == 302


def test_it_does_not_end_a_session_of_someone_else(alice, stranger):
    theirs = signed_in_as("stranger")
    client = signed_in_as("alice")
    row = UserSession.objects.get(user=stranger)
    assert client.post(f"/account/sessions/{row.pk}/end/").status_code == 404
    assert theirs.get("/account/").status_code == 200


def test_it_creates_a_token_and_shows_it_once(alice):
    client = signed_in_as("alice")

    response = client.post("/account/tokens/", {"name": "OHIF", "scopes": ["read"]})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    row = ApiToken.objects.get()
    text = response.context["text"]
    assert text in response.content.decode() and text.startswith(row.prefix)
    assert (row.user, row.name, row.scopes) == (alice, "OHIF", ["read"])
    assert check_token(text) is not None
    assert text not in client.get("/account/").content.decode()
    [event] = events("auth.token_created")
    assert event.detail == {"token": row.prefix, "name": "OHIF", "scopes": ["read"]}
    assert text not in str(event.detail)


def test_it_needs_a_name_and_a_scope_for_a_token(alice):
    client = signed_in_as("alice")
    assert client.post("/account/tokens/", {"name": "x"}).status_code == 400
    assert client.post("/account/tokens/", {"scopes": ["read"]}).status_code == 400
    assert client.post("/account/tokens/", {"name": "x", "scopes": ["admin"]}).status_code == 400
    assert not ApiToken.objects.exists()


def test_it_revokes_an_own_token(alice):
    row, text = create_token(alice, "old")
    client = signed_in_as("alice")
    response = client.post(f"/account/tokens/{row.pk}/revoke/")
    assert response["Location"] == "/account/"
    assert check_token(text) is None
    assert [e.detail["token"] for e in events("auth.token_revoked")] == [row.prefix]


def test_it_does_not_revoke_a_token_of_someone_else(alice, stranger):
    row, text = create_token(stranger, "theirs")
    client = signed_in_as("alice")
    assert client.post(f"/account/tokens/{row.pk}/revoke/").status_code == 404
    assert check_token(text) is not None


def test_it_hides_the_password_form_from_single_sign_on_users(alice):
    alice.set_unusable_password()
    alice.save()
    client = Client()
    client.force_login(alice)
    page = client.get("/account/").content.decode()
    assert 'name="old_password"' not in page and "single sign-on" in page


def test_it_sends_the_admin_password_page_here(client, alice):
    client.force_login(alice)
    assert client.get("/admin/password_change/")["Location"] == "/account/"
