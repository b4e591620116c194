"""Password sign-in at /login/, sign-out, the password policy and the hashing."""

import re

import pytest
from django.contrib.auth import hashers
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client

from backend import settings as lightbox_settings
from backend.accounts.models import AuditEvent, Profile, UserSession

pytestmark = pytest.mark.django_db
PASSWORD = "violet-harbour-lantern-42"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice():
    return User.objects.create_user("alice", password=PASSWORD)


def sign_in(client, username="alice", password=PASSWORD, address="127.0.0.1", **fields):
    data = {"username": username, "password": password, **fields}
    return client.post("/login/", data, REMOTE_ADDR=address)


def events(event_type: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=event_type).order_by("id"))


def visible_text(response) -> str:
    """The page without its CSRF token, which differs on every answer."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def test_it_shows_the_form_with_the_contract_field_names(client):
    response = client.get("/login/?next=/nodes/")
    page = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'<input[^>]+name="username"', page)
    assert re.search(r'<input[^>]+name="password"[^>]+type="password"', page)
    assert 'name="next" value="/nodes/"' in page
    assert "<script>" not in page  # no inline script: a strict CSP is coming
    assert "Sign in with" not in page  # single sign-on is off unless configured


def test_it_signs_in_and_goes_to_the_next_page(client, alice):
    response = sign_in(client, next="/nodes/")
    assert (response.status_code, response["Location"]) == (302, "/nodes/")
    assert client.get("/api/studies").status_code == 200


def test_it_goes_to_the_worklist_when_next_points_elsewhere(client, alice):
    for next_url in ("https://evil.example.org/", "//evil.example.org/", "javascript:alert(1)"):
        client.logout()
        response = sign_in(client, next=next_url)
        assert response["Location"] == "/", next_url


def test_it_records_the_login_with_user_and_address(client, alice):
    sign_in(client, address="10.1.2.3")
    [event] = events("auth.login")
    assert (event.user, event.peer_address, event.outcome) == (alice, "10.1.2.3", "success")
    assert event.detail == {"method": "password"}
    assert UserSession.objects.get().address == "10.1.2.3"


def test_it_changes_the_session_key_at_login(client, alice):
    client.get("/login/")
    client.session.save()
    before = client.session.session_key
    sign_in(client)
    assert client.session.session_key != before


def test_it_says_the_same_for_a_wrong_password_an_unknown_user_and_a_locked_account(
    client, alice, settings
):
    wrong = sign_in(client, password="not-the-password")
    unknown = sign_in(client, username="nobody")
    Profile.objects.create(user=User.objects.create_user("carol", password=PASSWORD))
    Profile.objects.filter(user__username="carol").update(locked_until="2999-01-01T00:00Z")
    locked = sign_in(client, username="carol")

    assert wrong.status_code == unknown.status_code == locked.status_code == 200
    pages = {visible_text(r).replace(u, "") for r, u in [(wrong, "alice"), (unknown, "nobody")]}
    pages.add(visible_text(locked).replace("carol", ""))
    assert len(pages) == 1
    assert "Wrong username or password" in pages.pop()
    assert "_auth_user_id" not in client.session


def test_it_hashes_a_password_for_unknown_and_locked_users_too(client, alice, monkeypatch):
    """Constant-ish work: a quick answer would tell that a user does not exist."""
    calls = []
    real = hashers.MD5PasswordHasher.encode
    monkeypatch.setattr(
        hashers.MD5PasswordHasher,
        "encode",
        lambda self, *args: calls.append(1) or real(self, *args),
    )
    Profile.objects.create(user=alice, locked_until="2999-01-01T00:00Z")
    for username in ("alice", "nobody"):
        calls.clear()
        sign_in(client, username=username, password="a guess")
        assert len(calls) == 1, username


def test_it_audits_a_failure_with_the_attempted_username(client, alice):
    sign_in(client, username="alice", password="a guess", address="10.9.9.9")
    sign_in(client, username="<b>nobody</b>", password="a guess")
    first, second = events("auth.login_failed")
    assert (first.user, first.peer_address, first.outcome) == (alice, "10.9.9.9", "failure")
    assert first.detail == {"username": "alice", "reason": "invalid", "channel": "form"}
    assert (second.user, second.detail["username"]) == (None, "<b>nobody</b>")


def test_it_refuses_an_inactive_user_with_the_same_message(client, alice):
    User.objects.filter(pk=alice.pk).update(is_active=False)
    response = sign_in(client)
    assert "Wrong username or password" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_asks_again_for_empty_fields(client):
    response = client.post("/login/", {"username": "", "password": ""})
    assert response.status_code == 200
    assert not AuditEvent.objects.exists()


def test_it_logs_out_with_post_only(client, alice):
    client.force_login(alice)
    assert client.get("/logout/").status_code == 405
    response = client.post("/logout/")
    assert (response.status_code, response["Location"]) == (302, "/login/")
    assert client.get("/api/studies").status_code == 302
    assert [e.user for e in events("auth.logout")] == [alice]
    assert not UserSession.objects.exists()


def test_it_logs_out_everywhere(alice):
    here, there = Client(), Client()
    sign_in(here)
    sign_in(there)
    assert UserSession.objects.count() == 2

    response = here.post("/logout/everywhere/")

    assert response["Location"] == "/login/"
    assert here.get("/api/studies").status_code == 302
    assert there.get("/api/studies").status_code == 302
    assert not UserSession.objects.exists()
    [event] = events("auth.sessions_ended")
    assert (event.user, event.detail) == (alice, {"count": 2, "scope": "all"})


def test_it_refuses_log_out_everywhere_to_visitors(client):
    response = client.post("/logout/everywhere/")
    assert response["Location"].startswith("/login/")


def test_it_sends_the_admin_sign_in_to_ours(client):
    response = client.get("/admin/login/?next=/admin/accounts/")
    assert response["Location"] == "/login/?next=%2Fadmin%2Faccounts%2F"
    assert client.get("/admin/")["Location"].startswith("/admin/login/")


def test_it_hashes_new_passwords_with_argon2_and_upgrades_old_ones(client, settings):
    settings.PASSWORD_HASHERS = lightbox_settings.PASSWORD_HASHERS  # the real setting
    assert settings.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")
    user = User.objects.create_user("dora")
    user.password = hashers.make_password(PASSWORD, hasher="pbkdf2_sha256")
    user.save()

    sign_in(client, username="dora")

    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$")


@pytest.mark.parametrize(
    "password",
    ["short-pass1", "password1234", "123456789012345", "alice.wonderland", "alicewonderland1"],
)
def test_it_refuses_weak_passwords(password):
    user = User(username="alice.wonderland", email="alice.wonderland@example.org")
    with pytest.raises(ValidationError):
        validate_password(password, user)


def test_it_accepts_a_long_uncommon_password():
    user = User(username="alice", email="alice@example.org")
    validate_password(PASSWORD, user)
