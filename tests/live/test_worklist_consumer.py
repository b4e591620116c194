"""/ws/worklist through the real ASGI app: authenticate, subscribe, forward."""

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from backend.asgi import application
from backend.live import relay
from backend.live.events import STUDIES_GROUP
from backend.live.models import OutboxEvent

from ..conftest import grant_every_study

pytestmark = pytest.mark.django_db(transaction=True)

EVENT = {
    "type": "study.changed",
    "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
    "change": "series",
    "number_of_series": 1,
    "number_of_instances": 2,
    "modalities_in_study": "CT",
}
ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture(autouse=True)
def fresh_layer(settings, monkeypatch):
    """A new in-memory channel layer and no relay left over from another test's loop."""
    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(relay, "_task", None)


@pytest.fixture
def session_cookie():
    user = grant_every_study(User.objects.create_user("alice"))  # force_login needs no password
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return (b"cookie", f"{name}={client.cookies[name].value}".encode())


def communicator(*headers) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/worklist", headers=list(headers))


async def stop_relay() -> None:
    if relay._task is not None:
        relay._task.cancel()
        await asyncio.gather(relay._task, return_exceptions=True)


def test_it_refuses_an_anonymous_connection():
    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN)
        connected, code = await ws.connect()
        assert (connected, code) == (False, 4401)

    scenario()


def test_it_refuses_a_foreign_origin(session_cookie):
    @async_to_sync
    async def scenario():
        ws = communicator((b"origin", b"https://evil.example"), session_cookie)
        connected, _ = await ws.connect()
        assert not connected

    scenario()


def test_it_forwards_group_events_to_a_logged_in_user(session_cookie):
    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, session_cookie)
        connected, _ = await ws.connect()
        assert connected
        await get_channel_layer().group_send(STUDIES_GROUP, {"type": "event", "event": EVENT})
        assert await ws.receive_json_from(timeout=2) == EVENT
        await ws.disconnect()
        await stop_relay()

    scenario()


def test_it_relays_outbox_rows_written_after_connecting(session_cookie):
    OutboxEvent.objects.create(group=STUDIES_GROUP, payload={**EVENT, "change": "created"})

    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, session_cookie)
        connected, _ = await ws.connect()
        assert connected
        assert relay._task is not None
        # Let the relay take its cursor (the newest row) before a worker writes a new one.
        await asyncio.sleep(2 * relay.POLL_SECONDS)
        await database_sync_to_async(OutboxEvent.objects.create)(group=STUDIES_GROUP, payload=EVENT)
        assert await ws.receive_json_from(timeout=3) == EVENT
        # The row from before the connection is not replayed.
        assert await ws.receive_nothing(timeout=2 * relay.POLL_SECONDS)
        await ws.disconnect()
        await stop_relay()

    scenario()


def test_it_stops_forwarding_after_disconnect(session_cookie):
    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, session_cookie)
        assert (await ws.connect())[0]
        await ws.disconnect()
        layer = get_channel_layer()
        assert not layer.groups.get(STUDIES_GROUP)
        await stop_relay()

    scenario()
