"""Sign-in throttling, for the login form and HTTP Basic alike.

- Per account: LIGHTBOX_LOGIN_MAX_FAILURES failures in a row (wrong password or wrong
  two-factor code) lock the account for LIGHTBOX_LOCKOUT_MINUTES.
- Per address: LIGHTBOX_LOGIN_MAX_FAILURES_PER_ADDRESS failures from one client address
  within LIGHTBOX_LOGIN_ADDRESS_WINDOW_MINUTES refuse that address until older failures
  leave the window; this slows guessing across many accounts.

Callers show one message for a wrong password, an unknown user and a locked account, and
the password is hashed in all three cases (Django's ModelBackend hashes the password of an
unknown user too), so neither the answer nor its timing tells which accounts exist.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.db.models import F, Q
from django.utils import timezone

from . import audit
from .models import FailedLogin, Profile
from .sessions import client_address

OK = "ok"
INVALID = "invalid"  # wrong password, unknown or inactive user
LOCKED = "locked"  # the account is locked
THROTTLED = "throttled"  # too many failures from this address


@dataclass(frozen=True)
class Verdict:
    user: Any  # the authenticated user when reason is OK, else None
    reason: str


def check_password(
    request, username: str, password: str, *, channel: str = "form", authenticate=None
) -> Verdict:
    """Authenticate `username` with `password` under the throttle. A failure is counted and
    audited; a success is not yet noted (call note_success once every factor passed).
    `authenticate` defaults to Django's (callers may pass their own module's name for it)."""
    address = client_address(request)
    if address_throttled(address):
        _audit_failure("auth.login_failed", username, address, None, THROTTLED, channel)
        return Verdict(None, THROTTLED)
    user = (authenticate or auth.authenticate)(request, username=username, password=password)
    account = user if user is not None else find_user(username)
    if account is not None and is_locked(account):
        _audit_failure("auth.login_failed", username, address, account, LOCKED, channel)
        return Verdict(None, LOCKED)
    if user is None:
        note_failure(username, address, account, channel=channel)
        return Verdict(None, INVALID)
    return Verdict(user, OK)


def find_user(username: str):
    """The user `username` names, as the ModelBackend looks it up, or None."""
    model = get_user_model()
    try:
        return model._default_manager.get_by_natural_key(username)
    except model.DoesNotExist:
        return None


def address_throttled(address: str) -> bool:
    limit = settings.LIGHTBOX_LOGIN_MAX_FAILURES_PER_ADDRESS
    recent = FailedLogin.objects.filter(address=address, at__gte=_window_start())
    return recent[:limit].count() >= limit


def is_locked(user) -> bool:
    return Profile.objects.filter(user=user, locked_until__gt=timezone.now()).exists()


def note_failure(
    username: str,
    address: str,
    account=None,
    *,
    reason: str = INVALID,
    event: str = "auth.login_failed",
    channel: str = "form",
) -> None:
    """Count one failed attempt against the address and (if it exists) the account, lock
    either once it reaches its limit, and audit it all."""
    FailedLogin.objects.create(username=username[:150], address=address)
    FailedLogin.objects.filter(at__lt=_window_start()).delete()  # only the window matters
    _audit_failure(event, username, address, account, reason, channel)
    if account is not None:
        _count_against(account, address)
    if _just_reached_address_limit(address):
        detail = {"scope": "address", "minutes": settings.LIGHTBOX_LOGIN_ADDRESS_WINDOW_MINUTES}
        audit.record("auth.locked", audit.FAILURE, peer_address=address, detail=detail)


def note_success(user) -> None:
    """A complete sign-in: the run of failures is over."""
    Profile.objects.filter(user=user).filter(
        Q(failed_logins__gt=0) | Q(locked_until__isnull=False)
    ).update(failed_logins=0, locked_until=None)


def _count_against(account, address: str) -> None:
    profile, _ = Profile.objects.get_or_create(user=account)
    rows = Profile.objects.filter(pk=profile.pk)
    rows.update(failed_logins=F("failed_logins") + 1)
    until = timezone.now() + timedelta(minutes=settings.LIGHTBOX_LOCKOUT_MINUTES)
    # Conditional, so that of two racing failures only one locks (and audits).
    reached = rows.filter(failed_logins__gte=settings.LIGHTBOX_LOGIN_MAX_FAILURES)
    if reached.update(failed_logins=0, locked_until=until):
        detail = {"scope": "account", "until": until.isoformat()}
        audit.record(
            "auth.locked", audit.FAILURE, user=account, peer_address=address, detail=detail
        )


def _just_reached_address_limit(address: str) -> bool:
    recent = FailedLogin.objects.filter(address=address, at__gte=_window_start())
    return recent.count() == settings.LIGHTBOX_LOGIN_MAX_FAILURES_PER_ADDRESS


def _audit_failure(event, username, address, account, reason, channel) -> None:
    detail = {"username": username[:150], "reason": reason, "channel": channel}
    audit.record(event, audit.FAILURE, user=account, peer_address=address, detail=detail)


def _window_start():
    return timezone.now() - timedelta(minutes=settings.LIGHTBOX_LOGIN_ADDRESS_WINDOW_MINUTES)
