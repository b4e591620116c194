"""Who may hear a live event: the access rules (backend/archive/access.py) and the browser
session behind each WebSocket.

Every worklist socket joins one group that hears of every study that changes; what each
socket forwards is decided here, per user and study. Answers are kept CACHE_SECONDS per
connection, so a burst of events costs one query per study, and a change of role or group,
an expired share, a deactivated user or an ended session takes effect within that time.
A session ended on this web process (or anywhere, with Redis) closes its sockets at once:
deleting its UserSession row (logout, "log out everywhere", an admin) notifies them.
"""

import hashlib
import logging
import time
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete
from django.utils import timezone

from backend.accounts import sessions
from backend.accounts.models import UserSession
from backend.archive.access import visible_studies

log = logging.getLogger(__name__)
CACHE_SECONDS = 10.0
CACHE_SIZE = 2000
SESSION_ENDED = "session.ended"  # the consumer method a session.ended message calls


class SessionEnded(Exception):
    """The socket's browser session is over: close it."""


def session_group(session_key: str) -> str:
    """The channel group of one browser session's sockets. Hashed: group names are kept by
    the channel layer (Redis) and a session key is a credential."""
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def session_alive(user_id: int, session_key: str) -> bool:
    """Is this browser session still signed in: recorded (not ended), its user active, and
    neither idle nor older than the limits SessionLifetimeMiddleware applies?"""
    recorded = UserSession.objects.filter(
        user_id=user_id, session_key=session_key, user__is_active=True
    )
    if not session_key or not recorded.exists():
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    data = store.load()  # {} once expired or deleted
    created, seen = data.get(sessions._CREATED), data.get(sessions._SEEN)
    if created is None or seen is None:
        return False
    now = timezone.now().timestamp()
    return (
        now - seen <= settings.LIGHTBOX_SESSION_IDLE_MINUTES * 60
        and now - created <= settings.LIGHTBOX_SESSION_MAX_HOURS * 3600
    )


def may_see(user_id: int, study_instance_uid: str) -> bool:
    """May the user (reloaded, so a changed role or a deactivation counts) see the study?"""
    user = (
        get_user_model()
        .objects.select_related("profile")
        .filter(pk=user_id, is_active=True)
        .first()
    )
    if user is None or not study_instance_uid:
        return False
    return visible_studies(user).filter(study_instance_uid=study_instance_uid).exists()


class Audience:
    """One connection's listener: a user and their browser session."""

    def __init__(self, user_id: int, session_key: str):
        self.user_id = user_id
        self.session_key = session_key
        self._session_until = 0.0
        self._studies: dict[str, tuple[bool, float]] = {}

    async def signed_in(self) -> bool:
        now = time.monotonic()
        if now < self._session_until:
            return True
        if not await database_sync_to_async(session_alive)(self.user_id, self.session_key):
            return False
        self._session_until = now + CACHE_SECONDS
        return True

    async def hears(self, event: dict[str, Any]) -> bool:
        """Should this event reach the socket? Raises SessionEnded when it must close.
        An event that names no study reaches no one (none is declared today)."""
        if not await self.signed_in():
            raise SessionEnded
        uid = str(event.get("study_instance_uid") or "")
        now = time.monotonic()
        cached = self._studies.get(uid)
        if cached is not None and cached[1] > now:
            return cached[0]
        allowed = await database_sync_to_async(may_see)(self.user_id, uid)
        if len(self._studies) >= CACHE_SIZE:
            self._studies.clear()
        self._studies[uid] = (allowed, now + CACHE_SECONDS)
        return allowed


def _notify_session_ended(sender, instance: UserSession, **kwargs) -> None:
    group = session_group(instance.session_key)
    transaction.on_commit(lambda: _send_ended(group))


def _send_ended(group: str) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, {"type": SESSION_ENDED})
    except Exception:
        # Not fatal: every socket re-checks its session within CACHE_SECONDS anyway.
        log.warning("could not tell the sockets of an ended session", exc_info=True)


def connect_signals() -> None:
    """Called once from LiveConfig.ready()."""
    post_delete.connect(_notify_session_ended, sender=UserSession, dispatch_uid="live-session")
