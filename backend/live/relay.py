"""Relays OutboxEvent rows to this web process's in-memory channel layer (embedded mode).

With Redis, workers publish straight to the Redis channel layer and no relay runs. Each web
process keeps its own cursor, starting at the newest row when it starts, and polls.
"""

import asyncio
import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from .events import uses_outbox
from .models import OutboxEvent

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25
KEEP_SECONDS = 600
_task: asyncio.Task | None = None


def ensure_relay() -> None:
    """Start the relay in this process's event loop once, when the first listener arrives."""
    global _task
    if uses_outbox() and (_task is None or _task.done()):
        _task = asyncio.get_running_loop().create_task(_relay_forever())


@database_sync_to_async
def _newest_id() -> int:
    return OutboxEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


@database_sync_to_async
def _after(cursor: int) -> list[tuple[int, str, dict]]:
    rows = OutboxEvent.objects.filter(pk__gt=cursor).order_by("pk")[:500]
    return list(rows.values_list("pk", "group", "payload"))


@database_sync_to_async
def _prune() -> None:
    cutoff = timezone.now() - timedelta(seconds=KEEP_SECONDS)
    OutboxEvent.objects.filter(created_at__lt=cutoff).delete()


async def _relay_forever() -> None:
    layer = get_channel_layer()
    cursor = await _newest_id()
    polls = 0
    while True:
        try:
            for pk, group, payload in await _after(cursor):
                await layer.group_send(group, {"type": "event", "event": payload})
                cursor = pk
            polls += 1
            if polls % 2400 == 0:  # about every ten minutes
                await _prune()
        except Exception:
            log.exception("outbox relay failed; retrying")
        await asyncio.sleep(POLL_SECONDS)
