"""WebSocket consumers: authenticate, subscribe, forward. No domain logic here: who may hear
what is decided in audience.py."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .audience import Audience, SessionEnded, session_alive, session_group
from .events import STUDIES_GROUP
from .relay import ensure_relay

# Close codes (the 4000-4999 range is the application's, RFC 6455 §7.4.2): the browser
# should sign in again.
SIGNED_OUT = 4401


class WorklistConsumer(AsyncJsonWebsocketConsumer):
    """Pushes study.changed events to an open worklist, each only to users who may see
    the study; closes when the browser session ends."""

    audience: Audience | None = None
    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        session_key = self._session_key()
        if user is None or not user.is_authenticated or not user.is_active or not session_key:
            await self.close(code=SIGNED_OUT)
            return
        if not await database_sync_to_async(session_alive)(user.pk, session_key):
            await self.close(code=SIGNED_OUT)
            return
        self.audience = Audience(user.pk, session_key)
        ensure_relay()
        for group in (STUDIES_GROUP, session_group(session_key)):
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        await self.accept()

    def _session_key(self) -> str:
        # The key as the cookie gave it; session_alive() checks it against the database.
        session = self.scope.get("session")
        return (session.session_key or "") if session is not None else ""

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def event(self, message: dict) -> None:
        if self.audience is None:
            return
        try:
            allowed = await self.audience.hears(message["event"])
        except SessionEnded:
            await self.close(code=SIGNED_OUT)
            return
        if allowed:
            await self.send_json(message["event"])

    async def session_ended(self, message: dict) -> None:
        await self.close(code=SIGNED_OUT)
