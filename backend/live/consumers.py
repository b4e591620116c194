"""WebSocket consumers: authenticate, subscribe, forward. No domain logic here."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .events import STUDIES_GROUP
from .relay import ensure_relay


class WorklistConsumer(AsyncJsonWebsocketConsumer):
    """Pushes study.changed events to an open worklist."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        ensure_relay()
        await self.channel_layer.group_add(STUDIES_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(STUDIES_GROUP, self.channel_name)

    async def event(self, message: dict) -> None:
        await self.send_json(message["event"])
