"""Users on /manage: the users table, creating a user (who gets an invitation link to set
a password), changing their fields, role and groups, deactivating and reactivating them; and
their credentials: new invitation links, password resets, lockouts, second factors, browser
sessions and API tokens.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Count, Prefetch, QuerySet
from django.utils import timezone

from .. import invitations, sessions, tokens
from ..models import AccessGroup, ApiToken, Invitation, Profile, Role
from .common import (
    Actor,
    ManageError,
    NotFound,
    authorize,
    changed_detail,
    iso,
    record_audit,
    user_ref,
)
from .inputs import flag, get_row, identifiers, text

USER_TEXT = {"first_name": 150, "last_name": 150, "email": 254}
PROFILE_TEXT = {"referring_name": 200, "referring_accession_prefix": 64}
CHANGEABLE = {*USER_TEXT, *PROFILE_TEXT, "role", "require_two_factor", "groups"}


def list_users(actor: Actor) -> QuerySet[User]:
    """Every user with what the users table shows, in three queries."""
    authorize(actor)
    return (
        User.objects.select_related("profile")
        .prefetch_related("access_groups", _pending_invitations())
        .annotate(active_sessions=Count("browser_sessions", distinct=True))
        .order_by("username")
    )


def _pending_invitations() -> Prefetch:
    working = Invitation.objects.filter(used_at__isnull=True, expires_at__gt=timezone.now())
    return Prefetch("invitations", queryset=working, to_attr="pending_invitations")


def get_user(actor: Actor, user_id: object) -> User:
    authorize(actor)
    return get_row(list_users(actor), user_id, "user")


def profile_of(user: User) -> Profile:
    """The user's profile, unsaved defaults when they have none yet."""
    try:
        return user.profile
    except Profile.DoesNotExist:
        return Profile(user=user)


def is_locked(user: User) -> bool:
    locked_until = profile_of(user).locked_until
    return locked_until is not None and locked_until > timezone.now()


@dataclass(frozen=True)
class NewUser:
    username: str
    fields: dict[str, str]
    profile: dict[str, Any]
    groups: list[AccessGroup]


def check_create_user(actor: Actor, data: Mapping) -> NewUser:
    authorize(actor)
    username = text(data, "username", 150, required=True)
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        raise ManageError("username may hold letters, digits and @ . + - _ only") from None
    if User.objects.filter(username__iexact=username).exists():
        raise ManageError(f"the username {username} is taken")
    fields = {key: _user_text(data, key) for key in USER_TEXT}
    profile: dict[str, Any] = {key: _profile_text(data, key) for key in PROFILE_TEXT}
    profile.update(role=_role(data), require_two_factor=flag(data, "require_two_factor"))
    return NewUser(username, fields, profile, _groups(identifiers(data, "groups")))


def _user_text(data: Mapping, key: str) -> str:
    value = text(data, key, USER_TEXT[key])
    if key == "email" and value:
        try:
            validate_email(value)
        except ValidationError:
            raise ManageError("email is not an e-mail address") from None
    return value


def _profile_text(data: Mapping, key: str) -> str:
    value = text(data, key, PROFILE_TEXT[key])
    if key == "referring_accession_prefix" and re.search(r"[*?]", value):
        raise ManageError("the accession prefix is a plain prefix: no * or ?")
    return value


def _role(data: Mapping) -> str:
    role = data.get("role", Role.RADIOLOGIST)
    if role not in Role.values:
        raise ManageError(f"role must be one of {', '.join(Role.values)}")
    return role


def _groups(ids: list[int]) -> list[AccessGroup]:
    groups = list(AccessGroup.objects.filter(pk__in=ids))
    if len(groups) != len(set(ids)):
        raise NotFound("no such group")
    return groups


@transaction.atomic
def do_create_user(actor: Actor, new: NewUser) -> tuple[User, Invitation, str]:
    """Create the user without a usable password, and an invitation link by which they set
    one; returns the user, the invitation and the link's token."""
    user = User(username=new.username, is_staff=new.profile["role"] == Role.ADMIN, **new.fields)
    user.set_unusable_password()
    user.save()
    Profile.objects.create(user=user, **new.profile)
    user.access_groups.set(new.groups)
    record_audit(
        actor,
        "admin.user_created",
        {"target": user_ref(user), **new.fields, **new.profile, "groups": _names(new.groups)},
    )
    return user, *_invite(actor, user, "new user")


def _names(groups: Iterable[AccessGroup]) -> list[str]:
    return sorted(group.name for group in groups)


def _invite(actor: Actor, user: User, reason: str) -> tuple[Invitation, str]:
    invitation, token = invitations.create_invitation(user, actor.user)
    detail = {"target": user_ref(user), "reason": reason}
    record_audit(
        actor, "admin.invitation_created", {**detail, "expires_at": iso(invitation.expires_at)}
    )
    return invitation, token


def check_change_user(actor: Actor, user_id: object, data: Mapping) -> tuple[User, dict]:
    """The fields of `data` that differ from the user's: {field: (old, new)}."""
    user = get_user(actor, user_id)
    unknown = set(data) - CHANGEABLE
    if unknown:
        raise ManageError(f"these fields cannot be changed here: {', '.join(sorted(unknown))}")
    current = _current(user)
    wanted = _wanted(data)
    changes = {k: (current[k], v) for k, v in wanted.items() if current[k] != v}
    if "role" in changes:
        _check_role_change(actor, user)
    return user, changes


def _current(user: User) -> dict[str, Any]:
    profile = profile_of(user)
    values: dict[str, Any] = {key: getattr(user, key) for key in USER_TEXT}
    values.update({key: getattr(profile, key) for key in PROFILE_TEXT})
    values.update(role=profile.role, require_two_factor=profile.require_two_factor)
    values["groups"] = _names(user.access_groups.all())
    return values


def _wanted(data: Mapping) -> dict[str, Any]:
    wanted: dict[str, Any] = {}
    for key in data:
        if key in USER_TEXT:
            wanted[key] = _user_text(data, key)
        elif key in PROFILE_TEXT:
            wanted[key] = _profile_text(data, key)
        elif key == "role":
            wanted[key] = _role(data)
        elif key == "require_two_factor":
            wanted[key] = flag(data, key)
        elif key == "groups":
            wanted[key] = _names(_groups(identifiers(data, key)))
    return wanted


def _check_role_change(actor: Actor, user: User) -> None:
    if user.is_superuser:
        raise ManageError("a superuser is always an administrator")
    if user == actor.user:
        raise ManageError("you cannot change your own role")


@transaction.atomic
def do_change_user(actor: Actor, user: User, changes: dict) -> None:
    """Apply what check_change_user found different; nothing (and no event) if nothing is."""
    if not changes:
        return
    profile = profile_of(user)
    for key, (_old, new) in changes.items():
        if key in USER_TEXT:
            setattr(user, key, new)
        elif key == "groups":
            user.access_groups.set(AccessGroup.objects.filter(name__in=new))
        else:
            setattr(profile, key, new)
    if "role" in changes:
        user.is_staff = changes["role"][1] == Role.ADMIN  # Django admin lets in staff admins
    user.save()
    profile.save()
    record_audit(
        actor, "admin.user_changed", {"target": user_ref(user), "changed": changed_detail(changes)}
    )


def check_deactivate(actor: Actor, user_id: object) -> User:
    user = get_user(actor, user_id)
    # With this and _check_role_change, the acting administrator stays one: there is
    # always an active administrator left.
    if user == actor.user:
        raise ManageError("you cannot deactivate yourself")
    if not user.is_active:
        raise ManageError(f"{user.username} is already inactive")
    return user


@transaction.atomic
def do_deactivate(actor: Actor, user: User) -> None:
    """Deactivate: sign-in, sessions and API tokens stop working at once."""
    user.is_active = False
    user.save(update_fields=["is_active"])
    ended = sessions.end_sessions(user)
    invitations.pending(user).update(expires_at=timezone.now())
    record_audit(
        actor, "admin.user_deactivated", {"target": user_ref(user), "sessions_ended": ended}
    )


def check_reactivate(actor: Actor, user_id: object) -> User:
    user = get_user(actor, user_id)
    if user.is_active:
        raise ManageError(f"{user.username} is already active")
    return user


@transaction.atomic
def do_reactivate(actor: Actor, user: User) -> None:
    user.is_active = True
    user.save(update_fields=["is_active"])
    changed = {"is_active": {"from": False, "to": True}}
    record_audit(actor, "admin.user_changed", {"target": user_ref(user), "changed": changed})


def check_active_user(actor: Actor, user_id: object) -> User:
    user = get_user(actor, user_id)
    if not user.is_active:
        raise ManageError(f"{user.username} is inactive: reactivate them first")
    return user


@transaction.atomic
def do_invite(actor: Actor, user: User) -> tuple[Invitation, str]:
    """A new invitation link (the last one was lost or expired), and its token."""
    return _invite(actor, user, "new link")


@transaction.atomic
def do_reset_password(actor: Actor, user: User) -> tuple[Invitation, str]:
    """The password stops working, every session ends, and a new link lets the user choose
    another; returns the invitation and the link's token."""
    user.set_unusable_password()
    user.save(update_fields=["password"])
    ended = sessions.end_sessions(user)
    record_audit(actor, "admin.password_reset", {"target": user_ref(user), "sessions_ended": ended})
    return _invite(actor, user, "password reset")


@transaction.atomic
def do_unlock(actor: Actor, user: User) -> None:
    """Lift the account's lockout. Failures counted against addresses stay: they slow
    guessing across accounts, which unlocking one account does not make less likely."""
    profile = profile_of(user)
    was = profile.locked_until
    profile.locked_until, profile.failed_logins = None, 0
    profile.save()
    changed = {"locked_until": {"from": iso(was), "to": None}}
    record_audit(actor, "admin.user_changed", {"target": user_ref(user), "changed": changed})


@transaction.atomic
def do_reset_two_factor(actor: Actor, user: User) -> None:
    """Forget the user's authenticator (a lost phone): they enrol again at next sign-in."""
    profile = profile_of(user)
    was = profile.totp_confirmed_at is not None
    profile.totp_secret, profile.totp_confirmed_at, profile.totp_last_step = "", None, 0
    profile.save()
    changed = {"two_factor_enrolled": {"from": was, "to": False}}
    record_audit(actor, "admin.user_changed", {"target": user_ref(user), "changed": changed})


def check_end_sessions(actor: Actor, user_id: object, data: Mapping) -> tuple[User, list[str]]:
    """The session keys to end: those of `data["sessions"]` (UserSession ids), or all."""
    user = get_user(actor, user_id)
    rows = sessions.active_sessions(user)
    if data.get("sessions") is not None:
        ids = identifiers(data, "sessions")
        rows = rows.filter(pk__in=ids)
        if rows.count() != len(set(ids)):
            raise NotFound("no such session")
    return user, list(rows.values_list("session_key", flat=True))


@transaction.atomic
def do_end_sessions(actor: Actor, user: User, keys: list[str]) -> int:
    ended = sessions.end_sessions(user, keys)
    record_audit(actor, "admin.sessions_ended", {"target": user_ref(user), "sessions_ended": ended})
    return ended


def check_revoke_token(actor: Actor, token_id: object) -> ApiToken:
    authorize(actor)
    token = get_row(ApiToken.objects.select_related("user"), token_id, "token")
    if not token.is_active:
        raise ManageError("this token is already revoked")
    return token


@transaction.atomic
def do_revoke_token(actor: Actor, token: ApiToken) -> None:
    tokens.revoke_token(token)
    detail = {"target": user_ref(token.user), "token": token.name, "prefix": token.prefix}
    record_audit(actor, "admin.token_revoked", detail)
