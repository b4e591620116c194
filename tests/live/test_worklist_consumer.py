"""/ws/worklist through the real ASGI app: authenticate, subscribe, forward only what the
user may see, and close when the browser session ends."""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from backend.accounts import sessions
from backend.accounts.models import StudyShare, UserSession
from backend.archive.models import Patient, Study
from backend.asgi import application
from backend.live import audience, relay
from backend.live.events import STUDIES_GROUP
from backend.live.models import OutboxEvent

from ..conftest import grant_every_study

pytestmark = pytest.mark.django_db(transaction=True)

SEEN = "1.2.826.0.1.3680043.8.498.1"
HIDDEN = "1.2.826.0.1.3680043.8.498.2"
ORIGIN = (b"origin", b"http://localhost")


def event(uid: str = SEEN, change: str = "series") -> dict:
    return {
        "type": "study.changed",
        "study_instance_uid": uid,
        "change": change,
        "number_of_series": 1,
        "number_of_instances": 2,
        "modalities_in_study": "CT",
    }


@pytest.fixture(autouse=True)
def fresh_layer(settings, monkeypatch):
    """A new in-memory channel layer and no relay left over from another test's loop."""
    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(relay, "_task", None)


@pytest.fixture
def studies():
    """Two studies: SEEN is shared with alice, HIDDEN with nobody."""
    patient = Patient.objects.create(patient_id="P1", patient_name="DOE^JANE")
    return [Study.objects.create(study_instance_uid=uid, patient=patient) for uid in (SEEN, HIDDEN)]


@pytest.fixture
def alice(studies):
    user = User.objects.create_user("alice")  # force_login needs no password
    StudyShare.objects.create(study=studies[0], user=user)
    return user


def cookie_of(user) -> tuple[bytes, bytes]:
    """The session cookie header of a new browser session of `user`."""
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return (b"cookie", f"{name}={client.cookies[name].value}".encode())


def session_key(cookie: tuple[bytes, bytes]) -> str:
    return cookie[1].decode().split("=", 1)[1]


@pytest.fixture
def session_cookie(alice):
    return cookie_of(alice)


def communicator(*headers) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/worklist", headers=list(headers))


async def stop_relay() -> None:
    if relay._task is not None:
        relay._task.cancel()
        await asyncio.gather(relay._task, return_exceptions=True)


async def broadcast(*uids: str) -> None:
    for uid in uids:
        await get_channel_layer().group_send(STUDIES_GROUP, {"type": "event", "event": event(uid)})


async def heard(ws, timeout: float = 0.5) -> list[str]:
    """The study UIDs of the events the socket received until it fell silent."""
    uids = []
    while not await ws.receive_nothing(timeout=timeout):
        uids.append((await ws.receive_json_from())["study_instance_uid"])
    return uids


# --- who may connect ---------------------------------------------------------------------


def test_it_refuses_an_anonymous_connection():
    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN)
        assert await ws.connect() == (False, 4401)

    scenario()


def test_it_refuses_a_foreign_origin(session_cookie):
    @async_to_sync
    async def scenario():
        ws = communicator((b"origin", b"https://evil.example"), session_cookie)
        connected, _ = await ws.connect()
        assert not connected

    scenario()


def test_it_refuses_an_inactive_user(alice, session_cookie):
    User.objects.filter(pk=alice.pk).update(is_active=False)

    @async_to_sync
    async def scenario():
        assert await communicator(ORIGIN, session_cookie).connect() == (False, 4401)

    scenario()


def test_it_refuses_a_session_ended_elsewhere(session_cookie):
    # "Log out everywhere" removes the record; the Django session row may linger.
    UserSession.objects.filter(session_key=session_key(session_cookie)).delete()
    assert Session.objects.filter(session_key=session_key(session_cookie)).exists()

    @async_to_sync
    async def scenario():
        assert await communicator(ORIGIN, session_cookie).connect() == (False, 4401)

    scenario()


def test_it_refuses_an_idle_session(settings, session_cookie):
    settings.LIGHTBOX_SESSION_IDLE_MINUTES = 0
    store = Session.objects.get(session_key=session_key(session_cookie))
    data = store.get_decoded()
    data[sessions._SEEN] -= 5
    Session.objects.filter(pk=store.pk).update(session_data=Session.objects.encode(data))

    @async_to_sync
    async def scenario():
        assert await communicator(ORIGIN, session_cookie).connect() == (False, 4401)

    scenario()


# --- what it forwards --------------------------------------------------------------------


def test_it_forwards_events_of_studies_the_user_may_see_only(session_cookie):
    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, session_cookie)
        assert (await ws.connect())[0]
        await broadcast(HIDDEN, SEEN, "1.2.3.4", HIDDEN)
        assert await heard(ws) == [SEEN]
        await ws.disconnect()
        await stop_relay()

    scenario()


def test_it_forwards_every_study_to_a_user_who_sees_every_study(studies):
    cookie = cookie_of(grant_every_study(User.objects.create_user("reader")))

    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, cookie)
        assert (await ws.connect())[0]
        await broadcast(SEEN, HIDDEN)
        assert await heard(ws) == [SEEN, HIDDEN]
        await ws.disconnect()
        await stop_relay()

    scenario()


def test_it_forwards_nothing_to_a_user_without_access(studies):
    cookie = cookie_of(User.objects.create_user("stranger"))

    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, cookie)
        assert (await ws.connect())[0]
        await broadcast(SEEN, HIDDEN)
        assert await heard(ws) == []
        await ws.disconnect()
        await stop_relay()

    scenario()


def test_it_stops_forwarding_when_a_share_expires(monkeypatch, session_cookie):
    monkeypatch.setattr(audience, "CACHE_SECONDS", 0.0)

    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, session_cookie)
        assert (await ws.connect())[0]
        await broadcast(SEEN)
        assert await heard(ws) == [SEEN]
        expired = timezone.now() - timedelta(minutes=1)
        await database_sync_to_async(StudyShare.objects.update)(expires_at=expired)
        await broadcast(SEEN)
        assert await heard(ws) == []
        await ws.disconnect()
        await stop_relay()

    scenario()


def test_it_asks_the_database_once_per_study_in_a_burst(monkeypatch, session_cookie):
    asked: list[str] = []
    real = audience.may_see
    monkeypatch.setattr(audience, "may_see", lambda user, uid: asked.append(uid) or real(user, uid))

    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, session_cookie)
        assert (await ws.connect())[0]
        await broadcast(*[SEEN, HIDDEN] * 5)
        assert await heard(ws) == [SEEN] * 5
        await ws.disconnect()
        await stop_relay()

    scenario()
    assert asked == [SEEN, HIDDEN]


def test_it_relays_outbox_rows_written_after_connecting(session_cookie):
    OutboxEvent.objects.create(group=STUDIES_GROUP, payload=event(change="created"))

    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, session_cookie)
        connected, _ = await ws.connect()
        assert connected
        assert relay._task is not None
        # Let the relay take its cursor (the newest row) before a worker writes a new one.
        await asyncio.sleep(2 * relay.POLL_SECONDS)
        create = database_sync_to_async(OutboxEvent.objects.create)
        await create(group=STUDIES_GROUP, payload=event(HIDDEN))
        await create(group=STUDIES_GROUP, payload=event())
        assert await ws.receive_json_from(timeout=3) == event()
        # The row from before the connection is not replayed, the hidden one not sent.
        assert await ws.receive_nothing(timeout=2 * relay.POLL_SECONDS)
        await ws.disconnect()
        await stop_relay()

    scenario()


# --- when it closes ----------------------------------------------------------------------


def test_it_closes_when_the_user_logs_out_everywhere(alice, session_cookie):
    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, session_cookie)
        assert (await ws.connect())[0]
        assert await database_sync_to_async(sessions.end_sessions)(alice) == 1
        assert await ws.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}
        await stop_relay()

    scenario()


def test_it_closes_at_the_next_event_when_no_notice_arrived(monkeypatch, session_cookie):
    # Another web process ended the session (embedded mode: its notice stays there).
    monkeypatch.setattr(audience, "CACHE_SECONDS", 0.0)
    monkeypatch.setattr(audience, "_send_ended", lambda group: None)

    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, session_cookie)
        assert (await ws.connect())[0]
        delete = UserSession.objects.filter(session_key=session_key(session_cookie)).delete
        await database_sync_to_async(delete)()
        await broadcast(SEEN)
        assert await ws.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}
        await stop_relay()

    scenario()


def test_it_closes_at_the_next_event_once_the_user_is_deactivated(
    monkeypatch, alice, session_cookie
):
    monkeypatch.setattr(audience, "CACHE_SECONDS", 0.0)

    @async_to_sync
    async def scenario():
        ws = communicator(ORIGIN, session_cookie)
        assert (await ws.connect())[0]
        await database_sync_to_async(User.objects.filter(pk=alice.pk).update)(is_active=False)
        await broadcast(SEEN)
        assert await ws.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}
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
        assert not [name for name, members in layer.groups.items() if members]
        await stop_relay()

    scenario()
