"""Throttling: an account locked after repeated failures, an address refused after many;
the same rules for the login form and for HTTP Basic on DICOMweb."""

import base64
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from backend.accounts import twofactor
from backend.accounts.models import AuditEvent, FailedLogin, Profile
from backend.dicomweb import auth as dicomweb_auth

pytestmark = pytest.mark.django_db
PASSWORD = "violet-harbour-lantern-42"
DICOMWEB = "/dicomweb/studies"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.LIGHTBOX_LOGIN_MAX_FAILURES = 5
    settings.LIGHTBOX_LOCKOUT_MINUTES = 15
    settings.LIGHTBOX_LOGIN_MAX_FAILURES_PER_ADDRESS = 20
    dicomweb_auth._basic_cache.clear()


@pytest.fixture
def alice():
    return User.objects.create_user("alice", password=PASSWORD)


def sign_in(client, username="alice", password=PASSWORD, address="127.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def basic(client, username="alice", password=PASSWORD, address="127.0.0.1"):
    value = base64.b64encode(f"{username}:{password}".encode()).decode()
    return client.get(DICOMWEB, HTTP_AUTHORIZATION=f"Basic {value}", REMOTE_ADDR=address)


def fail(client, times: int, **kwargs) -> None:
    for _ in range(times):
        sign_in(client, password="a wrong guess", **kwargs)


def test_it_locks_an_account_after_the_maximum_failures_in_a_row(client, alice):
    fail(client, 5)

    response = sign_in(client)

    assert not signed_in(client)
    assert "Wrong username or password" in response.content.decode()
    profile = Profile.objects.get(user=alice)
    assert profile.locked_until > timezone.now() + timedelta(minutes=14)
    [locked] = AuditEvent.objects.filter(event_type="auth.locked")
    assert (locked.user, locked.detail["scope"]) == (alice, "account")
    last = AuditEvent.objects.filter(event_type="auth.login_failed").first()
    assert last.detail["reason"] == "locked"


def test_it_does_not_lock_before_the_maximum(client, alice):
    fail(client, 4)
    sign_in(client)
    assert signed_in(client)


def test_it_counts_failures_in_a_row_only(client, alice):
    fail(client, 4)
    sign_in(client)
    client.logout()
    fail(client, 4)
    sign_in(client)
    assert signed_in(client)
    assert Profile.objects.get(user=alice).failed_logins == 0


def test_it_unlocks_once_the_lockout_is_over(client, alice):
    fail(client, 5)
    Profile.objects.filter(user=alice).update(locked_until=timezone.now() - timedelta(seconds=1))
    sign_in(client)
    assert signed_in(client)


def test_it_follows_the_configured_limits(client, alice, settings):
    settings.LIGHTBOX_LOGIN_MAX_FAILURES = 2
    settings.LIGHTBOX_LOCKOUT_MINUTES = 60
    fail(client, 2)
    sign_in(client)
    assert not signed_in(client)
    assert Profile.objects.get(user=alice).locked_until > timezone.now() + timedelta(minutes=59)


def test_it_refuses_an_address_after_too_many_failures(client, alice, settings):
    settings.LIGHTBOX_LOGIN_MAX_FAILURES_PER_ADDRESS = 3
    for name in ("bob", "carol", "dave"):  # different accounts: no account lock
        sign_in(client, username=name, address="10.0.0.66")

    refused = sign_in(client, address="10.0.0.66")
    elsewhere = sign_in(client, address="10.0.0.7")

    assert refused.status_code == 429
    assert "from your address" in refused.content.decode()
    assert elsewhere.status_code == 302 and signed_in(client)
    [locked] = AuditEvent.objects.filter(event_type="auth.locked")
    assert (locked.peer_address, locked.detail["scope"]) == ("10.0.0.66", "address")


def test_it_forgets_address_failures_outside_the_window(client, alice, settings):
    settings.LIGHTBOX_LOGIN_MAX_FAILURES_PER_ADDRESS = 3
    for name in ("bob", "carol", "dave"):
        sign_in(client, username=name, address="10.0.0.66")
    FailedLogin.objects.update(at=timezone.now() - timedelta(minutes=16))

    sign_in(client, address="10.0.0.66")

    assert signed_in(client)


def test_it_keeps_only_failures_within_the_window(client, alice):
    fail(client, 2)
    FailedLogin.objects.update(at=timezone.now() - timedelta(days=1))
    fail(client, 1)
    assert FailedLogin.objects.count() == 1


def test_it_refuses_basic_credentials_of_a_locked_account(client, alice):
    fail(client, 5)
    response = basic(client)
    assert response.status_code == 401
    assert response.json()["error"] == "wrong username or password"


def test_it_counts_basic_failures_towards_the_lockout(client, alice):
    for _ in range(5):
        assert basic(client, password="a wrong guess").status_code == 401
    sign_in(client)
    assert not signed_in(client)
    failures = AuditEvent.objects.filter(event_type="auth.login_failed")
    assert {e.detail["channel"] for e in failures} == {"basic", "form"}


def test_it_refuses_basic_from_a_throttled_address(client, alice, settings):
    settings.LIGHTBOX_LOGIN_MAX_FAILURES_PER_ADDRESS = 2
    basic(client, username="x", address="10.0.0.66")
    basic(client, username="y", address="10.0.0.66")
    assert basic(client, address="10.0.0.66").status_code == 401
    assert basic(client, address="10.0.0.7").status_code == 200


def test_it_accepts_basic_and_clears_the_failures(client, alice):
    fail(client, 3)
    assert basic(client).status_code == 200
    assert Profile.objects.get(user=alice).failed_logins == 0


def test_it_refuses_basic_to_users_with_two_factor(client, alice):
    """A password alone must not bypass the second factor: such users use API tokens."""
    twofactor.pending_secret(alice)
    Profile.objects.filter(user=alice).update(totp_confirmed_at=timezone.now())
    response = basic(client)
    assert response.status_code == 401
    assert "API token" in response.json()["error"]


def test_it_refuses_basic_to_users_whose_role_requires_two_factor(client, alice, settings):
    settings.LIGHTBOX_REQUIRE_2FA_ROLES = ["radiologist"]
    assert basic(client).status_code == 401
