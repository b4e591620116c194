# ruff: noqa: F811 - the fixtures are imported from test_manage_access.py and named as arguments
"""/manage/api/users: list, create with an invitation link, change, deactivate and
reactivate, reset password, unlock, two-factor reset, sessions and API tokens. Every change
is audited with the acting administrator and their address."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from backend.accounts.invitations import digest
from backend.accounts.models import (
    AccessGroup,
    AuditEvent,
    Invitation,
    Profile,
    Role,
    UserSession,
)
from backend.accounts.tokens import check_token, create_token

from .test_manage_access import (  # noqa: F401 (fixtures)
    admin,
    as_admin,
    fast_passwords,
    post,
    radiologist,
    stranger,
)

pytestmark = pytest.mark.django_db


def last_event(event_type: str) -> AuditEvent:
    return AuditEvent.objects.filter(event_type=event_type).latest("pk")


def signed_in(user: User) -> Client:
    """A browser session of `user`, recorded as a real sign-in records it."""
    client = Client()
    client.post("/login/", {"username": user.username, "password": PASSWORDS[user.username]})
    assert UserSession.objects.filter(user=user).exists()
    return client


PASSWORDS = {"rad": "radiologist pw 1", "stranger": "stranger pw 1", "root": "admin password 1"}


def test_it_lists_users_with_what_the_table_shows(as_admin, admin, radiologist, stranger):
    signed_in(radiologist)
    Profile.objects.filter(user=radiologist).update(
        require_two_factor=True, locked_until=timezone.now() + timedelta(minutes=5)
    )

    users = {u["username"]: u for u in as_admin.get("/manage/api/users").json()["users"]}

    assert list(users) == ["rad", "root", "stranger"]
    rad = users["rad"]
    assert (rad["role"], rad["groups"][0]["name"], rad["active_sessions"]) == (
        "radiologist",
        "Every study",
        1,
    )
    assert rad["require_two_factor"] and not rad["two_factor_enrolled"]
    assert rad["locked_until"] and rad["has_password"] and rad["last_login"]
    assert users["stranger"]["role"] == "radiologist"  # no profile: the default
    assert users["root"]["role"] == "admin"


def test_it_creates_a_user_with_an_invitation_link(as_admin, admin):
    group = AccessGroup.objects.create(name="Chest")

    response = post(
        as_admin,
        "/manage/api/users",
        {
            "username": "alice",
            "first_name": "Alice",
            "last_name": "Liddell",
            "email": "alice@example.org",
            "role": "referring",
            "referring_name": "LIDDELL^ALICE",
            "groups": [group.pk],
            "require_two_factor": True,
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    alice = User.objects.get(username="alice")
    assert not alice.has_usable_password()
    assert (alice.profile.role, alice.profile.referring_name) == ("referring", "LIDDELL^ALICE")
    assert alice.profile.require_two_factor
    assert list(alice.access_groups.all()) == [group]
    url = body["invitation"]["url"]
    assert url.startswith("http://testserver/manage/invite/")
    token = url.rsplit("/", 1)[1]
    invitation = Invitation.objects.get(user=alice)
    assert invitation.digest == digest(token) and token not in invitation.digest
    assert invitation.created_by == admin
    assert body["user"]["invitation_expires_at"] == invitation.expires_at.isoformat()


def test_it_audits_the_creation_and_the_invitation(as_admin, admin):
    post(as_admin, "/manage/api/users", {"username": "alice", "role": "uploader"})

    created = last_event("admin.user_created")
    assert (created.user, created.peer_address) == (admin, "192.0.2.10")
    assert created.detail["target"]["username"] == "alice"
    assert created.detail["role"] == "uploader"
    invited = last_event("admin.invitation_created")
    assert invited.detail["reason"] == "new user"
    assert "token" not in str(invited.detail) and "http" not in str(invited.detail)


def test_it_expires_invitations_after_the_configured_days(as_admin, settings):
    settings.LIGHTBOX_INVITATION_DAYS = 2
    post(as_admin, "/manage/api/users", {"username": "alice"})
    expires = Invitation.objects.get().expires_at
    assert abs(expires - (timezone.now() + timedelta(days=2))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "username is required"),
        ({"username": "rad"}, "the username rad is taken"),
        ({"username": "RAD"}, "the username RAD is taken"),
        ({"username": "a b"}, "username may hold letters"),
        ({"username": "alice", "role": "king"}, "role must be one of"),
        ({"username": "alice", "email": "not-mail"}, "email is not an e-mail address"),
        ({"username": "alice", "groups": [999]}, "no such group"),
        ({"username": "alice", "groups": "1"}, "groups must be a list of ids"),
        ({"username": "alice", "require_two_factor": "yes"}, "must be true or false"),
        ({"username": "alice", "referring_accession_prefix": "A*"}, "plain prefix"),
    ],
)
def test_it_refuses_bad_new_users(as_admin, radiologist, body, message):
    response = post(as_admin, "/manage/api/users", body)
    assert response.status_code in (400, 404)
    assert message in response.json()["error"]
    assert not User.objects.filter(username="alice").exists()


def test_it_changes_fields_and_audits_what_changed(as_admin, radiologist):
    chest = AccessGroup.objects.create(name="Chest")

    response = post(
        as_admin,
        f"/manage/api/users/{radiologist.pk}",
        {"role": "referring", "referring_accession_prefix": "ACC", "groups": [chest.pk]},
    )

    assert response.status_code == 200, response.content
    assert response.json()["user"]["role"] == "referring"
    radiologist.refresh_from_db()
    assert radiologist.profile.referring_accession_prefix == "ACC"
    assert list(radiologist.access_groups.all()) == [chest]
    changed = last_event("admin.user_changed").detail["changed"]
    assert changed == {
        "role": {"from": "radiologist", "to": "referring"},
        "referring_accession_prefix": {"from": "", "to": "ACC"},
        "groups": {"added": ["Chest"], "removed": ["Every study"]},
    }


def test_it_records_nothing_when_nothing_changes(as_admin, radiologist):
    response = post(as_admin, f"/manage/api/users/{radiologist.pk}", {"role": "radiologist"})
    assert response.status_code == 200
    assert not AuditEvent.objects.filter(event_type="admin.user_changed").exists()


def test_it_makes_an_administrator_staff_for_django_admin(as_admin, stranger):
    post(as_admin, f"/manage/api/users/{stranger.pk}", {"role": "admin"})
    stranger.refresh_from_db()
    assert stranger.is_staff and stranger.profile.role == Role.ADMIN


def test_it_refuses_to_change_passwords_or_unknown_fields(as_admin, radiologist):
    response = post(as_admin, f"/manage/api/users/{radiologist.pk}", {"password": "x" * 12})
    assert response.status_code == 400
    assert "cannot be changed here: password" in response.json()["error"]
    assert not AuditEvent.objects.filter(event_type="admin.user_changed").exists()


def test_it_refuses_to_change_its_own_role(as_admin, admin):
    response = post(as_admin, f"/manage/api/users/{admin.pk}", {"role": "radiologist"})
    assert response.status_code == 400
    assert Profile.objects.get(user=admin).role == Role.ADMIN


def test_it_answers_404_for_an_unknown_user(as_admin):
    assert as_admin.get("/manage/api/users/999").status_code == 404
    assert post(as_admin, "/manage/api/users/999/deactivate").status_code == 404


def test_it_deactivates_a_user_everywhere_at_once(as_admin, radiologist):
    browser = signed_in(radiologist)
    _, token = create_token(radiologist, "script")

    response = post(as_admin, f"/manage/api/users/{radiologist.pk}/deactivate")

    assert response.status_code == 200
    assert response.json()["user"]["is_active"] is False
    assert not UserSession.objects.filter(user=radiologist).exists()
    assert browser.get("/api/studies").status_code == 302  # signed out
    assert check_token(token) is None
    assert last_event("admin.user_deactivated").detail["sessions_ended"] == 1


def test_it_reactivates_a_user(as_admin, radiologist):
    post(as_admin, f"/manage/api/users/{radiologist.pk}/deactivate")
    response = post(as_admin, f"/manage/api/users/{radiologist.pk}/reactivate")
    assert response.json()["user"]["is_active"] is True
    changed = last_event("admin.user_changed").detail["changed"]
    assert changed == {"is_active": {"from": False, "to": True}}


def test_it_refuses_to_deactivate_yourself(as_admin, admin):
    response = post(as_admin, f"/manage/api/users/{admin.pk}/deactivate")
    assert response.status_code == 400
    assert response.json()["error"] == "you cannot deactivate yourself"


def test_it_lets_a_superuser_deactivate_an_administrator(client, admin):
    client.force_login(User.objects.create_superuser("boss", password="boss password 1"))
    assert post(client, f"/manage/api/users/{admin.pk}/deactivate").status_code == 200
    response = post(client, f"/manage/api/users/{admin.pk}/deactivate")
    assert response.json()["error"] == "root is already inactive"


def test_it_refuses_to_change_a_superusers_role(as_admin):
    boss = User.objects.create_superuser("boss", password="boss password 1")
    response = post(as_admin, f"/manage/api/users/{boss.pk}", {"role": "uploader"})
    assert response.json()["error"] == "a superuser is always an administrator"


def test_it_resets_a_password_with_a_new_link_and_ends_sessions(as_admin, radiologist):
    signed_in(radiologist)

    response = post(as_admin, f"/manage/api/users/{radiologist.pk}/reset-password")

    assert response.status_code == 200
    assert "/manage/invite/" in response.json()["invitation"]["url"]
    radiologist.refresh_from_db()
    assert not radiologist.has_usable_password()
    assert not UserSession.objects.filter(user=radiologist).exists()
    assert last_event("admin.password_reset").detail["sessions_ended"] == 1
    assert last_event("admin.invitation_created").detail["reason"] == "password reset"


def test_it_retires_the_previous_link_when_making_a_new_one(as_admin, radiologist):
    first = post(as_admin, f"/manage/api/users/{radiologist.pk}/invite").json()
    second = post(as_admin, f"/manage/api/users/{radiologist.pk}/invite").json()

    assert first["invitation"]["url"] != second["invitation"]["url"]
    assert Invitation.objects.filter(expires_at__gt=timezone.now()).count() == 1


def test_it_makes_no_link_for_an_inactive_user(as_admin, radiologist):
    post(as_admin, f"/manage/api/users/{radiologist.pk}/deactivate")
    response = post(as_admin, f"/manage/api/users/{radiologist.pk}/invite")
    assert response.status_code == 400
    assert "reactivate them first" in response.json()["error"]


def test_it_unlocks_a_locked_account(as_admin, radiologist):
    until = timezone.now() + timedelta(minutes=10)
    Profile.objects.filter(user=radiologist).update(locked_until=until, failed_logins=3)

    response = post(as_admin, f"/manage/api/users/{radiologist.pk}/unlock")

    assert response.json()["user"]["locked_until"] is None
    profile = Profile.objects.get(user=radiologist)
    assert (profile.locked_until, profile.failed_logins) == (None, 0)
    assert last_event("admin.user_changed").detail["changed"]["locked_until"]["to"] is None


def test_it_resets_two_factor(as_admin, radiologist):
    Profile.objects.filter(user=radiologist).update(
        totp_secret="JBSWY3DPEHPK3PXP", totp_confirmed_at=timezone.now()
    )

    response = post(as_admin, f"/manage/api/users/{radiologist.pk}/reset-two-factor")

    assert response.json()["user"]["two_factor_enrolled"] is False
    assert Profile.objects.get(user=radiologist).totp_secret == ""


def test_it_shows_and_ends_sessions_one_by_one(as_admin, radiologist):
    first, second = signed_in(radiologist), signed_in(radiologist)
    detail = as_admin.get(f"/manage/api/users/{radiologist.pk}").json()
    assert len(detail["sessions"]) == 2
    assert "session_key" not in detail["sessions"][0]  # a credential: never sent to the page
    newest = detail["sessions"][0]["id"]

    response = post(
        as_admin, f"/manage/api/users/{radiologist.pk}/end-sessions", {"sessions": [newest]}
    )

    assert len(response.json()["sessions"]) == 1
    assert second.get("/api/studies").status_code == 302
    assert first.get("/api/studies").status_code == 200
    assert last_event("admin.sessions_ended").detail["sessions_ended"] == 1


def test_it_ends_every_session(as_admin, radiologist):
    signed_in(radiologist), signed_in(radiologist)
    post(as_admin, f"/manage/api/users/{radiologist.pk}/end-sessions")
    assert Session.objects.count() == 1  # the admin's own
    assert not UserSession.objects.filter(user=radiologist).exists()


def test_it_refuses_to_end_someone_elses_session(as_admin, radiologist, stranger):
    signed_in(stranger)
    theirs = UserSession.objects.get(user=stranger).pk
    response = post(
        as_admin, f"/manage/api/users/{radiologist.pk}/end-sessions", {"sessions": [theirs]}
    )
    assert response.status_code == 404
    assert UserSession.objects.filter(pk=theirs).exists()


def test_it_lists_and_revokes_api_tokens(as_admin, radiologist):
    row, token = create_token(radiologist, "nightly export")
    tokens = as_admin.get(f"/manage/api/users/{radiologist.pk}").json()["tokens"]
    assert [(t["name"], t["prefix"], t["revoked_at"]) for t in tokens] == [
        ("nightly export", row.prefix, None)
    ]
    assert token not in str(tokens)

    response = post(as_admin, f"/manage/api/tokens/{row.pk}/revoke")

    assert response.json()["tokens"][0]["revoked_at"]
    assert check_token(token) is None
    assert last_event("admin.token_revoked").detail["token"] == "nightly export"
    assert post(as_admin, f"/manage/api/tokens/{row.pk}/revoke").status_code == 400
