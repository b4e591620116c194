"""What administrators do on the /manage pages: users, groups and their rules, study
shares, API tokens, and reading and exporting the audit log.

Every change is a pair, as in zulip's actions: `check_*` validates the input and that the
actor is an administrator, raising ManageError (its message is shown to them) or NotFound;
`do_*` makes the change and appends its audit event in the same transaction. Input arrives
as decoded JSON or query parameters, so nothing is trusted: wrong types, NUL characters,
lone surrogates and over-long values are refused here, never left to the database.
"""

import csv
import functools
import io
import json
import operator
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Count, Prefetch, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from backend.archive.access import is_admin, rule_condition
from backend.archive.attributes import search_key
from backend.archive.models import Study

from . import audit, invitations, sessions, tokens
from .models import (
    AccessGroup,
    ApiToken,
    AuditEvent,
    GroupRule,
    Invitation,
    Profile,
    Role,
    StudyShare,
)

USER_TEXT = {"first_name": 150, "last_name": 150, "email": 254}
PROFILE_TEXT = {"referring_name": 200, "referring_accession_prefix": 64}
CHANGEABLE = {*USER_TEXT, *PROFILE_TEXT, "role", "require_two_factor", "groups"}
MAX_IDS = 1000
STUDY_SEARCH_LIMIT = 20
SHARE_LIST_LIMIT = 500
AUDIT_PAGE = 50
AUDIT_MAX_PAGE = 200
EXPORT_BATCH = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ManageError(Exception):
    """Input or a request an administrator can correct; the message says how."""

    status = 400


class NotFound(ManageError):
    status = 404


class Forbidden(ManageError):
    status = 403


@dataclass(frozen=True)
class Actor:
    """Who acts, and from where: every audit event names both."""

    user: User
    address: str


def authorize(actor: Actor) -> None:
    if not is_admin(actor.user):
        raise Forbidden("administrators only")


def _audit(actor: Actor, event_type: str, detail: dict, **columns: str) -> AuditEvent:
    return audit.record(
        event_type, user=actor.user, peer_address=actor.address, detail=detail, **columns
    )


# --- Input ------------------------------------------------------------------------------


def text(data: Mapping, key: str, max_length: int, *, required: bool = False) -> str:
    """A one-line text field: stripped, refused when too long or unstorable."""
    value = data.get(key)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ManageError(f"{key} must be text")
    value = value.strip()
    if len(value) > max_length:
        raise ManageError(f"{key} is longer than {max_length} characters")
    if _CONTROL.search(value) or not _encodable(value):
        raise ManageError(f"{key} holds characters that cannot be stored")
    if required and not value:
        raise ManageError(f"{key} is required")
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
        return False
    return True


def flag(data: Mapping, key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ManageError(f"{key} must be true or false")
    return value


def identifier(value: object, key: str) -> int:
    # bool is an int in Python; an id is not.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise ManageError(f"{key} must be an id")
    return value


def identifiers(data: Mapping, key: str) -> list[int]:
    values = data.get(key, [])
    if not isinstance(values, list) or len(values) > MAX_IDS:
        raise ManageError(f"{key} must be a list of ids")
    return [identifier(value, key) for value in values]


def _role(data: Mapping) -> str:
    role = data.get("role", Role.RADIOLOGIST)
    if role not in Role.values:
        raise ManageError(f"role must be one of {', '.join(Role.values)}")
    return role


def _get(queryset: QuerySet, pk: object, what: str):
    row = queryset.filter(pk=identifier(pk, f"{what} id")).first()
    if row is None:
        raise NotFound(f"no such {what}")
    return row


# --- Users ------------------------------------------------------------------------------


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
    return _get(list_users(actor), user_id, "user")


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
    _audit(
        actor,
        "admin.user_created",
        {"target": _target(user), **new.fields, **new.profile, "groups": _names(new.groups)},
    )
    return user, *_invite(actor, user, "new user")


def _target(user: User) -> dict:
    return {"id": user.pk, "username": user.username}


def _names(groups: Iterable[AccessGroup]) -> list[str]:
    return sorted(group.name for group in groups)


def _invite(actor: Actor, user: User, reason: str) -> tuple[Invitation, str]:
    invitation, token = invitations.create_invitation(user, actor.user)
    detail = {"target": _target(user), "reason": reason}
    _audit(actor, "admin.invitation_created", {**detail, "expires_at": _iso(invitation.expires_at)})
    return invitation, token


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


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
    _audit(actor, "admin.user_changed", {"target": _target(user), "changed": _changed(changes)})


def _changed(changes: dict) -> dict:
    described = {}
    for key, (old, new) in changes.items():
        if key == "groups":
            added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
            described[key] = {"added": added, "removed": removed}
        else:
            described[key] = {"from": old, "to": new}
    return described


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
    _audit(actor, "admin.user_deactivated", {"target": _target(user), "sessions_ended": ended})


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
    _audit(actor, "admin.user_changed", {"target": _target(user), "changed": changed})


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
    _audit(actor, "admin.password_reset", {"target": _target(user), "sessions_ended": ended})
    return _invite(actor, user, "password reset")


@transaction.atomic
def do_unlock(actor: Actor, user: User) -> None:
    """Lift the account's lockout. Failures counted against addresses stay: they slow
    guessing across accounts, which unlocking one account does not make less likely."""
    profile = profile_of(user)
    was = profile.locked_until
    profile.locked_until, profile.failed_logins = None, 0
    profile.save()
    changed = {"locked_until": {"from": _iso(was), "to": None}}
    _audit(actor, "admin.user_changed", {"target": _target(user), "changed": changed})


@transaction.atomic
def do_reset_two_factor(actor: Actor, user: User) -> None:
    """Forget the user's authenticator (a lost phone): they enrol again at next sign-in."""
    profile = profile_of(user)
    was = profile.totp_confirmed_at is not None
    profile.totp_secret, profile.totp_confirmed_at, profile.totp_last_step = "", None, 0
    profile.save()
    changed = {"two_factor_enrolled": {"from": was, "to": False}}
    _audit(actor, "admin.user_changed", {"target": _target(user), "changed": changed})


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
    _audit(actor, "admin.sessions_ended", {"target": _target(user), "sessions_ended": ended})
    return ended


def check_revoke_token(actor: Actor, token_id: object) -> ApiToken:
    authorize(actor)
    token = _get(ApiToken.objects.select_related("user"), token_id, "token")
    if not token.is_active:
        raise ManageError("this token is already revoked")
    return token


@transaction.atomic
def do_revoke_token(actor: Actor, token: ApiToken) -> None:
    tokens.revoke_token(token)
    detail = {"target": _target(token.user), "token": token.name, "prefix": token.prefix}
    _audit(actor, "admin.token_revoked", detail)


# --- Groups and rules ---------------------------------------------------------------------


def list_groups(actor: Actor) -> QuerySet[AccessGroup]:
    authorize(actor)
    members = Prefetch("members", queryset=User.objects.order_by("username"))
    rules = Prefetch("rules", queryset=GroupRule.objects.order_by("pk"))
    return AccessGroup.objects.prefetch_related(members, rules)


def group_names(actor: Actor) -> list[dict[str, Any]]:
    authorize(actor)
    return [{"id": g.pk, "name": g.name} for g in AccessGroup.objects.only("name")]


def count_studies(rules: Iterable[GroupRule]) -> int:
    """How many studies the rules select together (a group's studies, shares aside)."""
    conditions = [rule_condition(rule) for rule in rules]
    if not conditions:
        return 0
    return Study.objects.filter(functools.reduce(operator.or_, conditions)).count()


def _group_name(data: Mapping, group: AccessGroup | None = None) -> str:
    name = text(data, "name", 100, required=True)
    clash = AccessGroup.objects.filter(name__iexact=name)
    if group is not None:
        clash = clash.exclude(pk=group.pk)
    if clash.exists():
        raise ManageError(f"a group named {name} exists")
    return name


def check_create_group(actor: Actor, data: Mapping) -> tuple[str, str]:
    authorize(actor)
    return _group_name(data), _description(data)


def _description(data: Mapping) -> str:
    value = data.get("description") or ""
    if not isinstance(value, str) or len(value) > 2000 or not _encodable(value):
        raise ManageError("description must be text of at most 2000 characters")
    if "\x00" in value:
        raise ManageError("description holds characters that cannot be stored")
    return value.strip()


@transaction.atomic
def do_create_group(actor: Actor, name: str, description: str) -> AccessGroup:
    group = AccessGroup.objects.create(name=name, description=description)
    _audit(actor, "admin.group_changed", {"action": "created", "group": _group(group)})
    return group


def _group(group: AccessGroup) -> dict:
    return {"id": group.pk, "name": group.name}


def get_group(actor: Actor, group_id: object) -> AccessGroup:
    authorize(actor)
    return _get(AccessGroup.objects.all(), group_id, "group")


def check_change_group(actor: Actor, group_id: object, data: Mapping) -> tuple[AccessGroup, dict]:
    group = get_group(actor, group_id)
    changes = {}
    if "name" in data:
        changes["name"] = (group.name, _group_name(data, group))
    if "description" in data:
        changes["description"] = (group.description, _description(data))
    return group, {k: v for k, v in changes.items() if v[0] != v[1]}


@transaction.atomic
def do_change_group(actor: Actor, group: AccessGroup, changes: dict) -> None:
    if not changes:
        return
    for key, (_old, new) in changes.items():
        setattr(group, key, new)
    group.save()
    detail = {"action": "changed", "group": _group(group), "changed": _changed(changes)}
    _audit(actor, "admin.group_changed", detail)


@transaction.atomic
def do_delete_group(actor: Actor, group: AccessGroup) -> None:
    """Delete the group; its members stay, its rules and shares go with it. A group that
    limits a DICOM node stays: deleting it would silently widen what the node sees."""
    nodes = list(group.nodes.values_list("ae_title", flat=True))
    if nodes:
        raise ManageError(f"DICOM nodes are limited to this group: {', '.join(nodes)}")
    detail = {
        "action": "deleted",
        "group": _group(group),
        "members": list(group.members.order_by("username").values_list("username", flat=True)),
        "shares_removed": group.shares.count(),
    }
    group.delete()
    _audit(actor, "admin.group_changed", detail)


def check_member(
    actor: Actor, group_id: object, data: Mapping, *, joining: bool
) -> tuple[AccessGroup, User]:
    """The group and the user who joins it (joining) or leaves it."""
    group = get_group(actor, group_id)
    user = _get(User.objects.all(), data.get("user"), "user")
    if group.members.filter(pk=user.pk).exists() == joining:
        state = "already in" if joining else "not in"
        raise ManageError(f"{user.username} is {state} {group.name}")
    return group, user


@transaction.atomic
def do_add_member(actor: Actor, group: AccessGroup, user: User) -> None:
    group.members.add(user)
    detail = {"action": "member_added", "group": _group(group), "target": _target(user)}
    _audit(actor, "admin.group_changed", detail)


@transaction.atomic
def do_remove_member(actor: Actor, group: AccessGroup, user: User) -> None:
    group.members.remove(user)
    detail = {"action": "member_removed", "group": _group(group), "target": _target(user)}
    _audit(actor, "admin.group_changed", detail)


def check_add_rule(actor: Actor, group_id: object, data: Mapping) -> tuple[AccessGroup, str, str]:
    group = get_group(actor, group_id)
    attribute = data.get("attribute")
    if attribute not in GroupRule.Attribute.values:
        raise ManageError(f"attribute must be one of {', '.join(GroupRule.Attribute.values)}")
    required = attribute != GroupRule.Attribute.ALL
    pattern = text(data, "pattern", 200, required=required) if required else ""
    if group.rules.filter(attribute=attribute, pattern=pattern).exists():
        raise ManageError("the group has this rule already")
    return group, attribute, pattern


@transaction.atomic
def do_add_rule(actor: Actor, group: AccessGroup, attribute: str, pattern: str) -> GroupRule:
    rule = group.rules.create(attribute=attribute, pattern=pattern)
    _audit(actor, "admin.rule_changed", {"action": "added", **_rule(rule)})
    return rule


def _rule(rule: GroupRule) -> dict:
    return {
        "group": _group(rule.group),
        "rule": {"id": rule.pk, "attribute": rule.attribute, "pattern": rule.pattern},
    }


def check_remove_rule(actor: Actor, rule_id: object) -> GroupRule:
    authorize(actor)
    return _get(GroupRule.objects.select_related("group"), rule_id, "rule")


@transaction.atomic
def do_remove_rule(actor: Actor, rule: GroupRule) -> None:
    detail = {"action": "removed", **_rule(rule)}
    rule.delete()
    _audit(actor, "admin.rule_changed", detail)


# --- Shares ------------------------------------------------------------------------------


def list_shares(actor: Actor, params: Mapping) -> QuerySet[StudyShare]:
    """Shares, newest first, of one user (?user=id) or group (?group=id) if asked."""
    authorize(actor)
    rows = StudyShare.objects.select_related("study__patient", "user", "group", "created_by")
    for key in ("user", "group"):
        if params.get(key):
            rows = rows.filter(**{f"{key}_id": _query_id(params, key)})
    return rows.order_by("-created_at", "-pk")[:SHARE_LIST_LIMIT]


def _query_id(params: Mapping, key: str) -> int:
    value = text(params, key, 20)
    if not value.isascii() or not value.isdigit():
        raise ManageError(f"{key} must be an id")
    return identifier(int(value), key)


def search_studies(actor: Actor, params: Mapping) -> QuerySet[Study]:
    """A few studies for the share form: by Study Instance UID, patient ID, accession
    number (each a prefix) or patient name (words anywhere in it)."""
    authorize(actor)
    query = text(params, "q", 200)
    if not query:
        return Study.objects.none()
    condition = (
        Q(study_instance_uid__startswith=query)
        | Q(patient__patient_id__istartswith=query)
        | Q(accession_number__istartswith=query)
    )
    name = search_key(query)
    if name:
        condition |= Q(patient__patient_name_search__contains=name)
    found = Study.objects.select_related("patient").filter(condition)
    return found.order_by("-study_date", "-pk")[:STUDY_SEARCH_LIMIT]


@dataclass(frozen=True)
class NewShare:
    study: Study
    user: User | None
    group: AccessGroup | None
    expires_at: datetime | None


def check_create_share(actor: Actor, data: Mapping) -> NewShare:
    authorize(actor)
    uid = text(data, "study_instance_uid", 64, required=True)
    study = Study.objects.select_related("patient").filter(study_instance_uid=uid).first()
    if study is None:
        raise NotFound("no study with this Study Instance UID")
    has_user, has_group = data.get("user") is not None, data.get("group") is not None
    if has_user == has_group:
        raise ManageError("share with one user or one group")
    user = _get(User.objects.all(), data["user"], "user") if has_user else None
    group = _get(AccessGroup.objects.all(), data["group"], "group") if has_group else None
    return NewShare(study, user, group, _until(text(data, "expires_on", 10)))


def _until(value: str) -> datetime | None:
    """A share "until" a date lasts to the end of that day, local time."""
    if not value:
        return None
    day = parse_date(value, "expires_on")
    if day < timezone.localdate():
        raise ManageError("expires_on is in the past")
    return _start_of(day + timedelta(days=1))


def parse_date(value: str, key: str) -> date:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:  # 2024-02-30
            pass
    raise ManageError(f"{key} must be a date, YYYY-MM-DD")


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


@transaction.atomic
def do_create_share(actor: Actor, new: NewShare) -> StudyShare:
    """Share the study; sharing it again with the same user or group sets the new date."""
    share, _ = StudyShare.objects.update_or_create(
        study=new.study,
        user=new.user,
        group=new.group,
        defaults={"expires_at": new.expires_at, "created_by": actor.user},
    )
    _audit_share(actor, "admin.share_created", share)
    return share


def _audit_share(actor: Actor, event_type: str, share: StudyShare) -> None:
    study = share.study
    detail = {
        "share": share.pk,
        "with": _share_target(share),
        "expires_at": _iso(share.expires_at),
    }
    _audit(
        actor,
        event_type,
        detail,
        study_instance_uid=study.study_instance_uid,
        patient_id=study.patient.patient_id,
    )


def _share_target(share: StudyShare) -> dict:
    if share.user is not None:
        return _target(share.user)
    assert share.group is not None  # the share_with_user_or_group constraint
    return {"group": _group(share.group)}


def check_revoke_share(actor: Actor, share_id: object) -> StudyShare:
    authorize(actor)
    rows = StudyShare.objects.select_related("study__patient", "user", "group")
    return _get(rows, share_id, "share")


@transaction.atomic
def do_revoke_share(actor: Actor, share: StudyShare) -> None:
    _audit_share(actor, "admin.share_revoked", share)
    share.delete()


# --- Audit log ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """A validated search of the audit log; `described` is what an export records."""

    condition: Q
    described: dict[str, str]

    def events(self) -> QuerySet[AuditEvent]:
        return AuditEvent.objects.filter(self.condition).order_by("-created_at", "-pk")


AUDIT_FILTERS = (
    "since",
    "until",
    "event_type",
    "user",
    "outcome",
    "study_instance_uid",
    "patient_id",
    "address",
    "text",
)


def check_audit_filter(actor: Actor, params: Mapping) -> AuditFilter:
    authorize(actor)
    given = {key: text(params, key, 200) for key in AUDIT_FILTERS}
    given = {key: value for key, value in given.items() if value}
    conditions = [_audit_condition(key, value) for key, value in given.items()]
    return AuditFilter(functools.reduce(operator.and_, conditions, Q()), given)


def _audit_condition(key: str, value: str) -> Q:
    if key == "since":
        return Q(created_at__gte=_start_of(parse_date(value, key)))
    if key == "until":
        return Q(created_at__lt=_start_of(parse_date(value, key) + timedelta(days=1)))
    if key == "event_type":
        # "admin.*" selects a family of events.
        prefix = value.removesuffix("*")
        return Q(event_type__startswith=prefix) if value.endswith("*") else Q(event_type=value)
    if key == "user":
        return Q(user__username__iexact=value)
    if key == "outcome":
        if value not in AuditEvent.Outcome.values:
            raise ManageError(f"outcome must be one of {', '.join(AuditEvent.Outcome.values)}")
        return Q(outcome=value)
    if key == "address":
        columns = ("peer_address", "calling_ae", "called_ae")
        return functools.reduce(operator.or_, (Q(**{f"{c}__istartswith": value}) for c in columns))
    if key == "text":
        return _detail_contains(value)
    return Q(**{key: value})


def _detail_contains(value: str) -> Q:
    # The detail is JSON: PostgreSQL's text form keeps characters as they are, SQLite's keeps
    # json.dumps' escapes (\u00e9, \"), so both spellings are searched.
    escaped = json.dumps(value)[1:-1]
    spellings = {value, escaped}
    return Q(pk__in=_detail_text_matches(spellings))


def _detail_text_matches(spellings: set[str]) -> QuerySet:
    rows = AuditEvent.objects.annotate(detail_text=Cast("detail", TextField()))
    condition = functools.reduce(operator.or_, (Q(detail_text__icontains=s) for s in spellings))
    return rows.filter(condition).values("pk")


def audit_page(
    actor: Actor, audit_filter: AuditFilter, params: Mapping
) -> tuple[list[AuditEvent], bool]:
    """One page of events, newest first, older than the event ?before=id if given; and
    whether older ones remain. Keyset paging keeps deep pages as fast as the first."""
    authorize(actor)
    limit = _limit(params)
    rows = audit_filter.events().select_related("user")
    if params.get("before"):
        rows = rows.filter(_older_than(_query_id(params, "before")))
    page = list(rows[: limit + 1])
    return page[:limit], len(page) > limit


def _limit(params: Mapping) -> int:
    if not params.get("limit"):
        return AUDIT_PAGE
    return min(_query_id(params, "limit"), AUDIT_MAX_PAGE)


def _older_than(event_id: int) -> Q:
    anchor = AuditEvent.objects.filter(pk=event_id).only("created_at").first()
    if anchor is None:
        raise NotFound("no such event")
    return _after_in_order(anchor)


def _after_in_order(event: AuditEvent) -> Q:
    """The events listed after `event`, newest first (the order of AuditFilter.events)."""
    return Q(created_at__lt=event.created_at) | Q(created_at=event.created_at, pk__lt=event.pk)


def event_types(actor: Actor) -> list[str]:
    authorize(actor)
    rows = AuditEvent.objects.order_by("event_type").values_list("event_type", flat=True)
    return list(rows.distinct())


CSV_COLUMNS = [
    "id",
    "time",
    "event_type",
    "outcome",
    "user",
    "peer_address",
    "calling_ae",
    "called_ae",
    "study_instance_uid",
    "patient_id",
    "detail",
]


def do_export_audit(actor: Actor, audit_filter: AuditFilter) -> tuple[AsyncIterator[str], bool]:
    """The CSV of the filter's newest LIGHTBOX_AUDIT_EXPORT_MAX_ROWS events, as chunks to
    stream, and whether more events matched. The export is audited first, and holds the
    events recorded before it: what the log held when it was asked for."""
    authorize(actor)
    limit = settings.LIGHTBOX_AUDIT_EXPORT_MAX_ROWS
    truncated = audit_filter.events()[limit : limit + 1].exists()
    detail = {"filter": audit_filter.described, "max_rows": limit, "truncated": truncated}
    export = _audit(actor, "admin.audit_exported", detail)
    snapshot = AuditFilter(audit_filter.condition & Q(pk__lt=export.pk), audit_filter.described)
    return _csv_chunks(snapshot, limit), truncated


async def _csv_chunks(audit_filter: AuditFilter, limit: int) -> AsyncIterator[str]:
    # Async, so that uvicorn streams it: Django buffers a sync iterator under ASGI. The
    # database is read in keyset batches, in Django's thread for this request.
    yield _csv_lines([CSV_COLUMNS])
    sent, last = 0, None
    while sent < limit:
        batch = await sync_to_async(_batch)(audit_filter, last, min(EXPORT_BATCH, limit - sent))
        if not batch:
            return
        yield _csv_lines(_csv_row(event) for event in batch)
        sent, last = sent + len(batch), batch[-1]


def _batch(audit_filter: AuditFilter, last: AuditEvent | None, size: int) -> list[AuditEvent]:
    rows = audit_filter.events().select_related("user")
    if last is not None:
        rows = rows.filter(_after_in_order(last))
    return list(rows[:size])


def _csv_lines(rows: Iterable[list]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def _csv_row(event: AuditEvent) -> list:
    values = [
        event.created_at.isoformat(),
        event.event_type,
        event.outcome,
        event.user.username if event.user else "",
        event.peer_address,
        event.calling_ae,
        event.called_ae,
        event.study_instance_uid,
        event.patient_id,
        json.dumps(event.detail, ensure_ascii=False, sort_keys=True),
    ]
    return [event.pk, *(spreadsheet_safe(value) for value in values)]


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a quote first
    (OWASP "CSV injection"). Calling AE titles and patient IDs come from the network."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
