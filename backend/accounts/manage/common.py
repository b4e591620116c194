"""What every /manage service shares: who acts (Actor), the errors an administrator is
shown (ManageError and its 404 and 403 kinds), the administrator check, and the audit event
each change appends, with the pieces its detail is made of (a user, a group, what changed).
"""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User

from backend.archive.access import is_admin

from .. import audit
from ..models import AccessGroup, AuditEvent


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


def record_audit(actor: Actor, event_type: str, detail: dict, **columns: str) -> AuditEvent:
    """Append the audit event of what the actor did, in the caller's transaction."""
    return audit.record(
        event_type, user=actor.user, peer_address=actor.address, detail=detail, **columns
    )


def user_ref(user: User) -> dict:
    """A user as audit details name them: the target of most admin.* events."""
    return {"id": user.pk, "username": user.username}


def group_ref(group: AccessGroup) -> dict:
    return {"id": group.pk, "name": group.name}


def changed_detail(changes: dict) -> dict:
    """{field: (old, new)} as an audit detail: from and to, or the groups added and removed."""
    described = {}
    for key, (old, new) in changes.items():
        if key == "groups":
            added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
            described[key] = {"added": added, "removed": removed}
        else:
            described[key] = {"from": old, "to": new}
    return described


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
