"""/ws/viewer/<study> through the real ASGI app when an image cannot be shown: the page is
told which one and why, in a frame-error message, and the stream goes on with the others."""

import asyncio
import json
import struct
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from backend.archive.models import Instance, StudyOpened
from backend.archive.storage import get_storage
from backend.asgi import application
from backend.live import relay
from backend.live.viewer import ViewerConsumer

from ..archive.helpers import receive_file
from ..archive.test_viewing import SERIES, STUDY, broken_codestream, ct_slice, save
from ..conftest import grant_every_study
from .test_worklist_consumer import ORIGIN, cookie_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_layer(settings, monkeypatch):
    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(relay, "_task", None)


@pytest.fixture
def reader():
    return grant_every_study(User.objects.create_user("reader"))


def five_slices(tmp_path, tasks, broken: int) -> None:
    for z in range(5):
        ds = ct_slice(tmp_path, z)
        receive_file(save(tmp_path, broken_codestream(ds) if z == broken else ds), tasks)


def stream(reader) -> list:
    """Everything the socket sends for the study, acknowledging frames as they come."""
    cookie = cookie_of(reader)

    @async_to_sync
    async def scenario():
        ws = WebsocketCommunicator(application, f"/ws/viewer/{STUDY}", [ORIGIN, cookie])
        assert (await ws.connect())[0]
        received = [json.loads(await ws.receive_from())]
        while not await ws.receive_nothing(timeout=1):
            message = await ws.receive_output()
            if message.get("bytes") is not None:
                await ws.send_to(text_data=json.dumps({"type": "ack", "count": 1}))
                received.append(_header(message["bytes"]))
            else:
                received.append(json.loads(message["text"]))
        await ws.disconnect()
        return received

    return scenario()


def _header(data: bytes) -> dict:
    (length,) = struct.unpack_from("<I", data)
    return json.loads(data[4 : 4 + length])


def test_it_tells_which_image_cannot_be_shown_and_goes_on(tmp_path, tasks, reader):
    five_slices(tmp_path, tasks, broken=3)
    reason = Instance.objects.get(viewable=False).not_viewable_reason

    study, *messages = stream(reader)

    assert [i["undecodable"] for i in study["series"][0]["instances"]] == [0, 0, 0, 1, 0]
    errors = [m for m in messages if m.get("type") == "frame-error"]
    assert errors == [{"type": "frame-error", "series": SERIES, "index": 3, "reason": reason}]
    frames = sorted(m["index"] for m in messages if m.get("encoding") == "raw")
    assert frames == [0, 1, 2, 4]
    # Opened: no longer "new" on the reader's worklist.
    assert StudyOpened.objects.filter(user=reader, study__study_instance_uid=STUDY).exists()


def test_it_reports_a_frame_whose_stored_bytes_are_gone(tmp_path, tasks, reader):
    five_slices(tmp_path, tasks, broken=-1)
    get_storage().delete(Instance.objects.get(slice_index=1).frames_key)

    _, *messages = stream(reader)

    (error,) = [m for m in messages if m.get("type") == "frame-error"]
    assert error["index"] == 1 and "could not be read" in error["reason"]
    assert sorted(m["index"] for m in messages if m.get("encoding") == "raw") == [0, 2, 3, 4]


def test_it_sends_no_more_frames_than_the_page_can_hold(tmp_path, tasks, reader):
    for z in range(12):
        receive_file(save(tmp_path, ct_slice(tmp_path, z)), tasks)
    cookie = cookie_of(reader)

    @async_to_sync
    async def scenario():
        ws = WebsocketCommunicator(application, f"/ws/viewer/{STUDY}", [ORIGIN, cookie])
        assert (await ws.connect())[0]
        await ws.receive_from()  # the manifest
        first = [_header(await ws.receive_from()) for _ in range(8)]  # WINDOW, unacknowledged
        focus = {"type": "focus", "series": SERIES, "index": 0, "visible": [SERIES], "limit": 3}
        await ws.send_to(text_data=json.dumps({**focus, "have": {SERIES: ""}}))
        await ws.send_to(text_data=json.dumps({"type": "ack", "count": 8}))
        then = []
        while not await ws.receive_nothing(timeout=1):
            then.append(_header(await ws.receive_from()))
            await ws.send_to(text_data=json.dumps({"type": "ack", "count": 1}))
        await ws.disconnect()
        return [h["index"] for h in first], [h["index"] for h in then]

    first, then = scenario()

    assert first == [6, 7, 5, 8, 4, 9, 3, 10]  # the middle slice, then outward
    assert then == [0, 1, 2]  # the 3 nearest slice 0, nothing the page would drop


def test_a_frame_being_read_when_the_page_says_what_it_holds_is_sent_once(
    tmp_path, tasks, reader, monkeypatch
):
    """The page's "have" (on reconnecting) can arrive while the server is reading the next
    frame: that frame is on its way, and must not become due again."""
    for z in range(12):
        receive_file(save(tmp_path, ct_slice(tmp_path, z)), tasks)
    cookie = cookie_of(reader)
    reading, release = threading.Event(), threading.Event()
    message = ViewerConsumer._message

    def slow_ninth(consumer, ref):
        if ref.index == 2:  # the ninth in order: 6, 7, 5, 8, 4, 9, 3, 10, 2
            reading.set()
            release.wait(10)
        return message(consumer, ref)

    monkeypatch.setattr(ViewerConsumer, "_message", slow_ninth)

    @async_to_sync
    async def scenario():
        ws = WebsocketCommunicator(application, f"/ws/viewer/{STUDY}", [ORIGIN, cookie])
        assert (await ws.connect())[0]
        await ws.receive_from()  # the manifest
        indexes = [_header(await ws.receive_from())["index"] for _ in range(8)]
        await ws.send_to(text_data=json.dumps({"type": "ack", "count": 1}))
        assert await asyncio.to_thread(reading.wait, 10)
        focus = {"type": "focus", "series": SERIES, "index": 6, "visible": [SERIES]}
        held = ",".join(str(i) for i in indexes)
        await ws.send_to(text_data=json.dumps({**focus, "have": {SERIES: held}}))
        await asyncio.sleep(0.2)  # the focus is handled while the ninth is still being read
        release.set()
        while not await ws.receive_nothing(timeout=1):
            indexes.append(_header(await ws.receive_from())["index"])
            await ws.send_to(text_data=json.dumps({"type": "ack", "count": 1}))
        await ws.disconnect()
        return indexes

    indexes = scenario()

    assert sorted(indexes) == list(range(12))  # each once


def test_a_study_left_before_its_manifest_went_out_is_still_opened(
    tmp_path, tasks, reader, monkeypatch
):
    """Back to the worklist at once: the server's send finds the socket closed. The study
    was opened (and audited as such), so it stops being new all the same."""
    five_slices(tmp_path, tasks, broken=-1)
    cookie = cookie_of(reader)

    async def gone(consumer, text_data=None, bytes_data=None, close=False):
        raise ConnectionResetError("the page has gone")

    monkeypatch.setattr(ViewerConsumer, "send", gone)

    @async_to_sync
    async def scenario():
        ws = WebsocketCommunicator(application, f"/ws/viewer/{STUDY}", [ORIGIN, cookie])
        assert (await ws.connect())[0]
        with pytest.raises(ConnectionResetError):
            await ws.receive_output()

    scenario()

    assert StudyOpened.objects.filter(user=reader, study__study_instance_uid=STUDY).exists()
