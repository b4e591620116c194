"""One-time links by which a user sets their password: a new user's first one, or a new one
after an administrator reset it.

The link's token is 32 random bytes shown once, to the administrator who made it; only its
SHA-256 digest is stored (a random token needs no password stretching). A link works once,
until LIGHTBOX_INVITATION_DAYS after it was made, and making a new one for a user retires
the ones they had.
"""

import hashlib
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from . import audit
from .models import Invitation, Profile

# secrets.token_urlsafe(32) gives 43 characters; anything else is not one of ours.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
ACCEPTED = "account.invitation_accepted"


class InvitationError(Exception):
    """The link is unknown, used, expired, or its user deactivated."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_invitation(user: User, created_by: User | None) -> tuple[Invitation, str]:
    """A new link for `user`; returns the row and the token, which is not stored."""
    now = timezone.now()
    pending(user).update(expires_at=now)  # only the newest link handed over works
    token = secrets.token_urlsafe(32)
    row = Invitation.objects.create(
        user=user,
        digest=digest(token),
        created_by=created_by,
        expires_at=now + timedelta(days=settings.LIGHTBOX_INVITATION_DAYS),
    )
    return row, token


def invitation_path(token: str) -> str:
    """The path of the page where the link's holder sets their password."""
    return reverse("manage-invite", args=[token])


def pending(user: User):
    """The user's links that still work."""
    return Invitation.objects.filter(user=user, used_at__isnull=True, expires_at__gt=timezone.now())


def find_invitation(token: str) -> Invitation:
    """The working invitation of `token`, with its user; InvitationError otherwise."""
    row = None
    if _TOKEN.fullmatch(token):
        row = (
            Invitation.objects.select_related("user")
            .filter(digest=digest(token), used_at__isnull=True, expires_at__gt=timezone.now())
            .filter(user__is_active=True)
            .first()
        )
    if row is None:
        raise InvitationError("This link has expired or was already used.")
    return row


def check_accept(token: str, password: object) -> Invitation:
    """Validate: the link works and the password passes AUTH_PASSWORD_VALIDATORS (raises
    django.core.exceptions.ValidationError with the validators' messages)."""
    invitation = find_invitation(token)
    if not isinstance(password, str) or not password:
        raise ValidationError("Choose a password.")
    if len(password) > 4096 or "\x00" in password or not _encodable(password):
        raise ValidationError("This password cannot be used.")
    validate_password(password, invitation.user)
    return invitation


@transaction.atomic
def do_accept(invitation: Invitation, password: str, address: str) -> User:
    """Use the link: set the password and clear any lockout (the holder proved possession
    of a link an administrator just made). The claim is conditional, so a link used twice
    at once sets one password."""
    claimed = Invitation.objects.filter(pk=invitation.pk, used_at__isnull=True).update(
        used_at=timezone.now()
    )
    if not claimed:
        raise InvitationError("This link has expired or was already used.")
    user = invitation.user
    user.set_password(password)
    user.save(update_fields=["password"])
    Profile.objects.update_or_create(
        user=user,
        defaults={"password_changed_at": timezone.now(), "failed_logins": 0, "locked_until": None},
    )
    audit.record(ACCEPTED, user=user, peer_address=address, detail={"invitation": invitation.pk})
    return user


def record_refused(address: str, reason: str) -> None:
    audit.record(ACCEPTED, audit.FAILURE, peer_address=address, detail={"reason": reason})


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, which JSON can carry
        return False
    return True
