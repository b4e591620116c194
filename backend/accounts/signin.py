"""Signing in and out, and what users do to their own sign-in: the services behind
views_auth.py and HTTP Basic (backend/dicomweb/auth.py). Each step is audited.

A password that is right for a user with two-factor on does not sign them in: the session
only remembers, for a few minutes, whose code to ask for. login() runs once every factor
passed, so an authenticated session has always passed them all.
"""

import time

from django.contrib.auth import get_user_model, login, logout, update_session_auth_hash
from django.utils import timezone

from . import audit, oidc, throttle, twofactor
from .models import ApiToken, Profile, UserSession
from .sessions import active_sessions, client_address, end_sessions
from .tokens import create_token, revoke_token

PENDING_KEY = "lightbox_pending_2fa"
PENDING_SECONDS = 300
SIGNED_IN = "signed_in"
CODE_NEEDED = "code_needed"
EXPIRED = "expired"
GENERIC_FAILURE = "wrong username or password"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def password_step(request, username: str, password: str, next_url: str) -> str:
    """Check the password: SIGNED_IN, CODE_NEEDED, or the throttle's reason for refusing."""
    verdict = throttle.check_password(request, username, password)
    user = verdict.user
    if user is None:
        return verdict.reason
    if twofactor.is_enabled(user):
        request.session.cycle_key()  # a fresh key for the half-signed-in session
        request.session[PENDING_KEY] = {
            "user": user.pk,
            "backend": user.backend,
            "at": time.time(),
            "next": next_url,
        }
        return CODE_NEEDED
    complete_login(request, user, "password", user.backend)
    return SIGNED_IN


def pending_user(request):
    """The user whose code the sign-in is waiting for, or None (none, or too late)."""
    pending = request.session.get(PENDING_KEY)
    if not pending or time.time() - pending["at"] > PENDING_SECONDS:
        return None
    return get_user_model().objects.filter(pk=pending["user"], is_active=True).first()


def pending_next(request) -> str:
    return (request.session.get(PENDING_KEY) or {}).get("next", "/")


def code_step(request, code: str) -> str:
    """Check the second factor: SIGNED_IN, EXPIRED, or the throttle's reason."""
    user, address = pending_user(request), client_address(request)
    if user is None:
        request.session.pop(PENDING_KEY, None)
        return EXPIRED
    if throttle.address_throttled(address):
        return throttle.THROTTLED
    if throttle.is_locked(user):
        request.session.pop(PENDING_KEY, None)
        detail = {"username": user.username, "reason": throttle.LOCKED}
        audit.record(
            "auth.2fa_failed", audit.FAILURE, user=user, peer_address=address, detail=detail
        )
        return throttle.LOCKED
    if not twofactor.verify(user, code):
        throttle.note_failure(
            user.username, address, user, reason="wrong_code", event="auth.2fa_failed"
        )
        return throttle.INVALID
    complete_login(request, user, "password+totp", request.session[PENDING_KEY]["backend"])
    return SIGNED_IN


def complete_login(request, user, method: str, backend: str) -> None:
    """Every factor passed: sign in (a new session key), note and audit it."""
    request.session.pop(PENDING_KEY, None)
    login(request, user, backend=backend)
    request.session[twofactor.METHOD_KEY] = method
    throttle.note_success(user)
    audit.record(
        "auth.login", user=user, peer_address=client_address(request), detail={"method": method}
    )


def password_only(request, username: str, password: str, authenticate=None):
    """HTTP Basic: (user, "") when `password` alone may sign `username` in, else
    (None, why). Users with two-factor on or required must use API tokens instead."""
    verdict = throttle.check_password(
        request, username, password, channel="basic", authenticate=authenticate
    )
    user = verdict.user
    if user is None:
        return None, GENERIC_FAILURE
    if twofactor.applies_to(user):
        address = client_address(request)
        detail = {"username": username[:150], "reason": "two_factor", "channel": "basic"}
        audit.record(
            "auth.login_failed", audit.FAILURE, user=user, peer_address=address, detail=detail
        )
        return None, "this account uses two-factor sign-in: use an API token"
    throttle.note_success(user)
    return user, ""


def sso_sign_in(request) -> str | None:
    """Finish a single sign-on: the URL to go on to, or None when it was refused."""
    try:
        user, next_url = oidc.finish(request)
    except oidc.OidcError as exc:
        detail = {"reason": str(exc)[:500], "channel": "oidc"}
        address = client_address(request)
        audit.record("auth.login_failed", audit.FAILURE, peer_address=address, detail=detail)
        return None
    complete_login(request, user, twofactor.SSO, MODEL_BACKEND)
    return next_url


def enrol_two_factor(request, code: str) -> bool:
    """Confirm the pending secret with a code from the app."""
    user, address = request.user, client_address(request)
    if twofactor.confirm(user, code):
        audit.record("auth.2fa_enrolled", user=user, peer_address=address)
        return True
    detail = {"step": "enrol"}
    audit.record("auth.2fa_failed", audit.FAILURE, user=user, peer_address=address, detail=detail)
    return False


def disable_two_factor(request, code: str) -> bool:
    """Turn two-factor off with a current code. Wrong codes count against the account, so
    a stolen session cannot be used to guess one."""
    user, address = request.user, client_address(request)
    if throttle.is_locked(user):
        detail = {"step": "disable", "reason": throttle.LOCKED}
        audit.record(
            "auth.2fa_failed", audit.FAILURE, user=user, peer_address=address, detail=detail
        )
        return False
    if twofactor.disable(user, code):
        audit.record("auth.2fa_disabled", user=user, peer_address=address)
        return True
    throttle.note_failure(
        user.username, address, user, reason="wrong_code", event="auth.2fa_failed"
    )
    return False


def logout_user(request) -> None:
    if request.user.is_authenticated:
        audit.record("auth.logout", user=request.user, peer_address=client_address(request))
    logout(request)


def end_all_sessions(request) -> int:
    """Log out everywhere, this browser included."""
    user = request.user
    count = end_sessions(user)
    _audit_ended(request, user, count, "all")
    logout(request)  # flushes this session, so it is not saved back
    return count


def end_one_session(request, session_id: int) -> bool:
    """End one of the user's sessions (by UserSession id); ending this one logs out."""
    row = active_sessions(request.user).filter(pk=session_id).first()
    if row is None:
        return False
    user, this_one = request.user, row.session_key == request.session.session_key
    _audit_ended(request, user, end_sessions(user, [row.session_key]), "one")
    if this_one:
        logout(request)
    return True


def _audit_ended(request, user, count: int, scope: str) -> None:
    detail = {"count": count, "scope": scope}
    audit.record(
        "auth.sessions_ended", user=user, peer_address=client_address(request), detail=detail
    )


def change_password(request, form) -> None:
    """Save a valid PasswordChangeForm: keep this session (under a new key), end the others."""
    old_key = request.session.session_key
    user = form.save()
    update_session_auth_hash(request, user)  # cycles the session key
    UserSession.objects.filter(session_key=old_key).update(session_key=request.session.session_key)
    ended = end_sessions(user, list(_other_session_keys(request)))
    Profile.objects.update_or_create(user=user, defaults={"password_changed_at": timezone.now()})
    address = client_address(request)
    audit.record(
        "auth.password_changed", user=user, peer_address=address, detail={"sessions_ended": ended}
    )


def password_change_refused(request, reason: str) -> None:
    """A failed change. A wrong current password counts against the account, so a stolen
    session cannot be used to guess it."""
    user, address = request.user, client_address(request)
    if reason == "password_incorrect":
        throttle.note_failure(
            user.username, address, user, reason=reason, event="auth.password_changed"
        )
        return
    detail = {"reason": reason}
    audit.record(
        "auth.password_changed", audit.FAILURE, user=user, peer_address=address, detail=detail
    )


def _other_session_keys(request):
    keys = active_sessions(request.user).values_list("session_key", flat=True)
    return keys.exclude(session_key=request.session.session_key)


def new_token(request, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
    """An API token for the signed-in user; the text is returned once, never stored."""
    row, text = create_token(request.user, name, scopes)
    address = client_address(request)
    detail = {"token": row.prefix, "name": row.name, "scopes": row.scopes}
    audit.record("auth.token_created", user=request.user, peer_address=address, detail=detail)
    return row, text


def revoke_own_token(request, token_id: int) -> bool:
    row = ApiToken.objects.filter(user=request.user, pk=token_id, revoked_at__isnull=True).first()
    if row is None:
        return False
    revoke_token(row)
    address = client_address(request)
    detail = {"token": row.prefix, "name": row.name}
    audit.record("auth.token_revoked", user=request.user, peer_address=address, detail=detail)
    return True
