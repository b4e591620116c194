# ruff: noqa: F811 - the fixtures are imported from test_manage_access.py and named as arguments
"""The invitation link: its holder sets a password that passes AUTH_PASSWORD_VALIDATORS and
is signed in. The link works once, expires, dies with a newer link or a deactivation, and
never signs in past a second factor."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from backend.accounts.models import AuditEvent, Invitation, Profile

from .test_manage_access import admin, as_admin, fast_passwords, post  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db
GOOD = "plum tree lantern 42"


@pytest.fixture
def link(as_admin) -> str:
    """The path of a new user's invitation page (alice)."""
    alice = {"username": "alice", "first_name": "Alice", "email": "alice.liddell@example.org"}
    answer = post(as_admin, "/manage/api/users", alice)
    return answer.json()["invitation"]["url"].removeprefix("http://testserver")


def accept(client: Client, link: str, password: str):
    client.get(link)  # the page sets the CSRF cookie
    return client.post(
        f"{link}/account",
        json.dumps({"password": password}),
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )


@pytest.fixture
def visitor() -> Client:
    return Client(enforce_csrf_checks=True, REMOTE_ADDR="198.51.100.7")


def test_it_shows_the_page_and_whose_link_it_is(visitor, link):
    page = visitor.get(link)
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    about = visitor.get(f"{link}/account").json()
    assert (about["username"], about["first_name"]) == ("alice", "Alice")


def test_it_sets_the_password_and_signs_in(visitor, link):
    response = accept(visitor, link, GOOD)

    assert response.status_code == 200, response.content
    assert response.json() == {"username": "alice", "next": "/"}
    alice = User.objects.get(username="alice")
    assert alice.check_password(GOOD)
    assert Profile.objects.get(user=alice).password_changed_at is not None
    assert visitor.get("/api/studies").status_code == 200
    event = AuditEvent.objects.get(event_type="account.invitation_accepted")
    assert (event.user, event.outcome, event.peer_address) == (alice, "success", "198.51.100.7")


def test_it_works_once(visitor, link):
    accept(visitor, link, GOOD)
    again = accept(Client(enforce_csrf_checks=True), link, "another fine password 7")

    assert again.status_code == 404
    assert again.json()["error"] == "This link has expired or was already used."
    assert User.objects.get(username="alice").check_password(GOOD)
    refused = AuditEvent.objects.get(event_type="account.invitation_accepted", outcome="failure")
    assert refused.user is None


@pytest.mark.parametrize(
    "password, message",
    [
        ("short", "too short"),
        ("password123456", "too common"),
        ("1234567890123", "entirely numeric"),
        ("alice.liddell@example.org", "too similar to the email address"),
        ("", "Choose a password."),
        ("x" * 5000, "cannot be used"),
        ("nul\x00in the middle", "cannot be used"),
    ],
)
def test_it_applies_the_password_validators(visitor, link, password, message):
    response = accept(visitor, link, password)

    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not User.objects.get(username="alice").has_usable_password()
    assert Invitation.objects.get().used_at is None  # still usable after a refusal


def test_it_refuses_a_non_string_password(visitor, link):
    response = accept(visitor, link, ["list"])  # type: ignore[arg-type]
    assert response.status_code == 400


def test_it_refuses_an_expired_link(visitor, link):
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert visitor.get(link).status_code == 404
    assert accept(visitor, link, GOOD).status_code == 404


def test_it_refuses_the_link_of_a_deactivated_user(as_admin, visitor, link):
    alice = User.objects.get(username="alice")
    post(as_admin, f"/manage/api/users/{alice.pk}/deactivate")
    assert accept(visitor, link, GOOD).status_code == 404


def test_it_refuses_a_link_replaced_by_a_newer_one(as_admin, visitor, link):
    alice = User.objects.get(username="alice")
    post(as_admin, f"/manage/api/users/{alice.pk}/invite")
    assert accept(visitor, link, GOOD).status_code == 404


def test_it_needs_the_csrf_token(link):
    client = Client(enforce_csrf_checks=True)
    client.get(link)
    response = client.post(
        f"{link}/account", json.dumps({"password": GOOD}), content_type="application/json"
    )
    assert response.status_code == 403


def test_it_does_not_sign_in_past_a_second_factor(visitor, link):
    # A password reset for someone with an authenticator: the link sets the password, the
    # login form then asks for the code.
    Profile.objects.filter(user__username="alice").update(
        totp_secret="JBSWY3DPEHPK3PXP", totp_confirmed_at=timezone.now()
    )

    response = accept(visitor, link, GOOD)

    assert response.json() == {"username": "alice", "next": "/login/"}
    assert visitor.get("/api/studies").status_code == 302


@pytest.mark.parametrize("token", ["x", "a" * 43, "a" * 10_000, "%00" * 43, "é" * 43])
def test_it_answers_odd_tokens_with_the_expired_page(visitor, token):
    assert visitor.get(f"/manage/invite/{token}").status_code == 404
    assert visitor.get(f"/manage/invite/{token}/account").status_code == 404
