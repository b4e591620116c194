"""Browser sessions a user can see and end: recorded at login, touched as they are used,
expired when idle or too old, ended one by one or all at once ("log out everywhere")."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.contrib.sessions.models import Session
from django.db.models import QuerySet
from django.dispatch import receiver
from django.utils import timezone

from .models import UserSession

TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often
_CREATED = "lightbox_created"
_SEEN = "lightbox_seen"


def active_sessions(user) -> QuerySet[UserSession]:
    return UserSession.objects.filter(user=user)


def end_sessions(user, session_keys: list[str] | None = None) -> int:
    """End some (or all) of `user`'s sessions at once; returns how many were ended."""
    rows = active_sessions(user)
    if session_keys is not None:
        rows = rows.filter(session_key__in=session_keys)
    keys = list(rows.values_list("session_key", flat=True))
    Session.objects.filter(session_key__in=keys).delete()
    rows.delete()
    return len(keys)


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "")[:64]


@receiver(user_logged_in)
def _record(sender, request, user, **kwargs) -> None:
    if request is None or not hasattr(request, "session"):
        return
    now = timezone.now()
    request.session[_CREATED] = now.timestamp()
    request.session[_SEEN] = now.timestamp()
    request.session.save()  # a key exists from here on
    UserSession.objects.update_or_create(
        session_key=request.session.session_key,
        defaults={
            "user": user,
            "address": client_address(request),
            "user_agent": request.headers.get("User-Agent", "")[:300],
        },
    )


@receiver(user_logged_out)
def _forget(sender, request, user, **kwargs) -> None:
    if request is not None and getattr(request, "session", None) is not None:
        UserSession.objects.filter(session_key=request.session.session_key).delete()


class SessionLifetimeMiddleware:
    """Ends a session idle for LIGHTBOX_SESSION_IDLE_MINUTES or older than
    LIGHTBOX_SESSION_MAX_HOURS, or one no longer recorded (ended elsewhere); otherwise
    notes that it was used. Goes after AuthenticationMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not self._still_valid(request):
            logout(request)
        return self.get_response(request)

    def _still_valid(self, request) -> bool:
        session, now = request.session, timezone.now().timestamp()
        created, seen = session.get(_CREATED), session.get(_SEEN)
        if created is None or seen is None:
            return False  # made before sessions were recorded, or tampered with
        if now - seen > settings.LIGHTBOX_SESSION_IDLE_MINUTES * 60:
            return False
        if now - created > settings.LIGHTBOX_SESSION_MAX_HOURS * 3600:
            return False
        if now - seen > TOUCH_EVERY.total_seconds():
            touched = UserSession.objects.filter(session_key=session.session_key).update(
                last_seen_at=timezone.now()
            )
            if not touched:
                return False  # ended by "log out everywhere" or by an admin
            session[_SEEN] = now
        return True
