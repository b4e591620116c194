"""Two-factor sign-in (TOTP, RFC 6238): the codes, the sign-in step, setting it up and
turning it off, and users who must have it."""

import re
import time

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from backend.accounts import signin, twofactor
from backend.accounts.models import AuditEvent, Profile, Role

PASSWORD = "violet-harbour-lantern-42"
RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of "12345678901234567890"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.LIGHTBOX_REQUIRE_2FA_ROLES = []


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def bob(db):
    """A user with two-factor on."""
    user = User.objects.create_user("bob", password=PASSWORD)
    twofactor.pending_secret(user)
    Profile.objects.filter(user=user).update(totp_confirmed_at=timezone.now())
    return user


def secret_of(user) -> str:
    return Profile.objects.get(user=user).totp_secret


def code(user, offset_steps: int = 0) -> str:
    return twofactor.code_at(secret_of(user), time.time() + offset_steps * 30)


def sign_in(client, username="bob", password=PASSWORD, next_url="/"):
    return client.post("/login/", {"username": username, "password": password, "next": next_url})


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def events(event_type: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=event_type).order_by("id"))


# The codes


@pytest.mark.parametrize(
    ("at", "expected"),  # RFC 6238 Appendix B, SHA-1
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_it_computes_the_rfc_6238_test_vectors(at, expected):
    key = b"12345678901234567890"
    assert twofactor.hotp(key, twofactor.time_step(at), digits=8) == expected
    assert twofactor.code_at(RFC_SECRET, at) == expected[-6:]


def test_it_accepts_one_step_of_drift_either_way():
    at = 1234567890
    step = twofactor.time_step(at)
    for drift in (-1, 0, 1):
        given = twofactor.code_at(RFC_SECRET, at + drift * 30)
        assert twofactor.matching_step(RFC_SECRET, given, at) == step + drift
    for drift in (-2, 2):
        given = twofactor.code_at(RFC_SECRET, at + drift * 30)
        assert twofactor.matching_step(RFC_SECRET, given, at) is None


@pytest.mark.parametrize("given", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "000000"])
def test_it_refuses_codes_that_are_not_six_matching_digits(given):
    assert twofactor.matching_step(RFC_SECRET, given, 1234567890) is None


def test_it_accepts_spaces_in_a_code():
    given = twofactor.code_at(RFC_SECRET, 1234567890)
    assert twofactor.matching_step(RFC_SECRET, f" {given[:3]} {given[3:]} ", 1234567890)


def test_it_makes_a_new_random_secret_of_160_bits():
    first, second = twofactor.new_secret(), twofactor.new_secret()
    assert first != second and len(first) == 32 and re.fullmatch(r"[A-Z2-7]+", first)


def test_it_accepts_a_code_once(bob):
    current = code(bob)
    assert twofactor.verify(bob, current)
    assert not twofactor.verify(bob, current)


def test_it_refuses_an_older_code_after_a_newer_one(bob):
    assert twofactor.verify(bob, code(bob, +1))
    assert not twofactor.verify(bob, code(bob))


# Signing in


def test_it_asks_for_the_code_after_the_password(client, bob):
    response = sign_in(client, next_url="/nodes/")
    assert response["Location"] == "/login/code/"
    assert not signed_in(client)
    assert client.get("/api/studies").status_code == 302  # half signed in is signed out
    page = client.get("/login/code/").content.decode()
    assert 'name="code"' in page and 'autocomplete="one-time-code"' in page

    response = client.post("/login/code/", {"code": code(bob)})

    assert (response.status_code, response["Location"]) == (302, "/nodes/")
    assert signed_in(client)
    [login] = events("auth.login")
    assert (login.user, login.detail) == (bob, {"method": "password+totp"})


def test_it_refuses_a_wrong_code(client, bob):
    sign_in(client)
    response = client.post("/login/code/", {"code": code(bob, +5)})
    assert response.status_code == 200
    assert "not right" in response.content.decode()
    assert not signed_in(client)
    [failed] = events("auth.2fa_failed")
    assert (failed.user, failed.outcome, failed.detail["reason"]) == (bob, "failure", "wrong_code")


def test_it_refuses_a_code_used_before(client, bob):
    used = code(bob)
    assert twofactor.verify(bob, used)
    sign_in(client)
    client.post("/login/code/", {"code": used})
    assert not signed_in(client)


def test_it_locks_the_account_after_too_many_wrong_codes(client, bob, settings):
    settings.LIGHTBOX_LOGIN_MAX_FAILURES = 3
    sign_in(client)
    for _ in range(3):
        client.post("/login/code/", {"code": "000000"})
    response = client.post("/login/code/", {"code": code(bob)})
    assert response["Location"] == "/login/"
    assert not signed_in(client)
    assert Profile.objects.get(user=bob).locked_until is not None


def test_it_keeps_the_count_of_failures_across_a_right_password(client, bob, settings):
    """A right password must not reset the count, or codes could be guessed for ever."""
    settings.LIGHTBOX_LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        sign_in(client)
        client.post("/login/code/", {"code": "000000"})
    sign_in(client)
    client.post("/login/code/", {"code": code(bob)})
    assert not signed_in(client)


def test_it_sends_a_late_code_back_to_the_password(client, bob, monkeypatch):
    sign_in(client)
    monkeypatch.setattr(signin, "PENDING_SECONDS", -1)
    response = client.post("/login/code/", {"code": code(bob)})
    assert response["Location"] == "/login/"
    assert not signed_in(client)


def test_it_sends_visitors_without_a_password_step_to_the_login_page(client, db):
    assert client.get("/login/code/")["Location"] == "/login/"


# Setting it up and turning it off


def test_it_shows_the_secret_the_uri_and_a_qr_code(client, alice):
    client.force_login(alice)
    response = client.get("/account/two-factor/")
    page = response.content.decode()
    secret = secret_of(alice)
    assert response.status_code == 200
    assert "otpauth://totp/Lightbox:alice?secret=" + secret in page.replace("&amp;", "&")
    assert " ".join(secret[i : i + 4] for i in range(0, 32, 4)) in page
    assert "<svg" in page and "<path" in page
    assert "<script>" not in page and '<script type="module"' in page
    assert client.get("/account/two-factor/").content.decode().count(secret) >= 1  # kept


def test_it_turns_two_factor_on_with_a_code(client, alice):
    client.force_login(alice)
    client.get("/account/two-factor/")

    response = client.post("/account/two-factor/", {"code": code(alice)})

    assert response["Location"] == "/account/"
    assert twofactor.is_enabled(alice)
    [event] = events("auth.2fa_enrolled")
    assert (event.user, event.outcome) == (alice, "success")


def test_it_does_not_turn_two_factor_on_with_a_wrong_code(client, alice):
    client.force_login(alice)
    client.get("/account/two-factor/")
    response = client.post("/account/two-factor/", {"code": "000000"})
    assert response.status_code == 400
    assert not twofactor.is_enabled(alice)
    assert events("auth.2fa_failed")[0].detail == {"step": "enrol"}


def test_it_turns_two_factor_off_with_a_code(client, bob):
    client.force_login(bob)
    response = client.post("/account/two-factor/disable/", {"code": code(bob)})
    assert response["Location"] == "/account/"
    assert not twofactor.is_enabled(bob) and secret_of(bob) == ""
    assert [e.user for e in events("auth.2fa_disabled")] == [bob]


def test_it_keeps_two_factor_on_without_a_right_code(client, bob):
    client.force_login(bob)
    response = client.post("/account/two-factor/disable/", {"code": "000000"})
    assert response["Location"] == "/account/two-factor/"
    assert twofactor.is_enabled(bob)
    assert events("auth.2fa_failed")[0].detail["reason"] == "wrong_code"


def test_it_refuses_the_two_factor_pages_to_visitors(client, db):
    assert client.get("/account/two-factor/")["Location"].startswith("/login/")
    assert client.post("/account/two-factor/disable/")["Location"].startswith("/login/")


# Users who must have it


def test_it_sends_a_user_whose_role_requires_it_to_set_it_up_first(client, alice, settings):
    settings.LIGHTBOX_REQUIRE_2FA_ROLES = ["admin", "radiologist"]
    client.force_login(alice)

    assert client.get("/")["Location"] == "/account/two-factor/"
    assert client.get("/account/")["Location"] == "/account/two-factor/"
    assert client.get("/api/studies").status_code == 403
    assert "requires two-factor" in client.get("/account/two-factor/").content.decode()

    client.post("/account/two-factor/", {"code": code(alice)})

    assert client.get("/api/studies").status_code == 200


def test_it_sends_a_user_marked_for_it_to_set_it_up_first(client, alice):
    Profile.objects.create(user=alice, require_two_factor=True)
    client.force_login(alice)
    assert client.get("/nodes/")["Location"] == "/account/two-factor/"
    assert client.post("/logout/")["Location"] == "/login/"


def test_it_lets_users_of_other_roles_in(client, alice, settings):
    settings.LIGHTBOX_REQUIRE_2FA_ROLES = ["admin"]
    Profile.objects.create(user=alice, role=Role.UPLOADER)
    client.force_login(alice)
    assert client.get("/api/studies").status_code == 200
