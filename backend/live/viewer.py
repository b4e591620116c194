"""The viewer's WebSocket (/ws/viewer/<StudyInstanceUID>): the study's manifest, then its
frames pushed in the order the reader needs them.

Client → server (JSON text): {"type": "focus", "series": uid, "index": n, "visible": [uid…]}
when the reader scrolls or changes series (optionally "have": what the page holds, see
_reset_sent, and "limit": how many frames its memory cap lets it hold: only that many, the
nearest, are sent), and {"type": "ack", "count": n} as frames are taken in.

Server → client: {"type": "study", …} (viewing.manifest_json), {"type": "error", …}; for a
frame that cannot be shown (its pixels could not be decoded at ingest, or its stored bytes
cannot be read) {"type": "frame-error", "series": uid, "index": n, "reason": text}, which
needs no ack, and the stream goes on with the others; and one binary message per frame: a
4-byte little-endian header length, a JSON header
{"series": uid, "index": n, "encoding": "raw"|"deflate"} padded with spaces so that the
frame's little-endian values that follow start 8-byte aligned (deflate: zlib-wrapped, for
DecompressionStream("deflate")).

Order: the focused series from the current slice outward, then the other visible series,
then the rest of the study in the background. At most WINDOW frames are unacknowledged, so
a change of focus takes effect within a few frames and nothing unwanted piles up.
"""

import asyncio
import json
import struct
import zlib
from collections import deque

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from backend.accounts import audit
from backend.archive import viewing, worklist
from backend.archive.access import visible_studies

from .audience import session_alive, session_group

WINDOW = 8
MAX_MESSAGE = 64 * 1024
ERRORS = {
    "unauthenticated": (4401, "Your session has ended: sign in again."),
    "not-found": (4404, "This study does not exist, or you are not allowed to see it."),
}


def _visible_study(user, study_uid: str):
    if len(study_uid) > 64:
        return None
    return (
        visible_studies(user).select_related("patient").filter(study_instance_uid=study_uid).first()
    )


class ViewerConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        session = self.scope.get("session")
        session_key = (session.session_key or "") if session is not None else ""
        if user is None or not user.is_authenticated or not user.is_active:
            return await self._fail("unauthenticated")
        if not await database_sync_to_async(session_alive)(user.pk, session_key):
            return await self._fail("unauthenticated")  # ended, idle or too old
        # Logout, "log out everywhere" or an admin ending the session closes this socket.
        self.session_group = session_group(session_key)
        await self.channel_layer.group_add(self.session_group, self.channel_name)
        self.user = user
        study_uid = self.scope["url_route"]["kwargs"]["study"]
        study = await database_sync_to_async(_visible_study)(user, study_uid)
        if study is None:
            await database_sync_to_async(self._audit)("viewer.study_opened", study_uid, False)
            return await self._fail("not-found")
        manifest, self.stacks = await database_sync_to_async(viewing.manifest_json)(study)
        self.study_uid, self.patient_id = study.study_instance_uid, study.patient.patient_id
        await database_sync_to_async(self._audit)("viewer.study_opened", study_uid, True)
        self.deflate = "encoding=deflate" in self.scope.get("query_string", b"").decode()
        self.sent: set[tuple[str, int]] = set()
        self.failed: set[tuple[str, int]] = set()  # told the page they cannot be shown
        self.in_flight = 0
        self.queue: deque[viewing.FrameRef] = deque()
        self.wake = asyncio.Event()
        self.recent: deque[tuple[str, int]] = deque(maxlen=2 * WINDOW)
        # The page opens the first series with frames on its middle slice: start there.
        first = next((uid for uid, stack in self.stacks.items() if stack), None)
        middle = len(self.stacks[first]) // 2 if first else 0
        self._prioritise(first, middle, [first] if first else [])
        try:
            await self.send(text_data=manifest)
            self.pump = asyncio.create_task(self._pump())
        finally:
            # Off the first image's path, and also when the page has already left (the send
            # raised): the study is no longer "new" on this user's worklist.
            await database_sync_to_async(worklist.mark_opened)(user, study)

    async def _fail(self, code: str) -> None:
        close_code, message = ERRORS[code]
        await self.send(text_data=json.dumps({"type": "error", "code": code, "message": message}))
        await self.close(code=close_code)

    async def session_ended(self, message: dict) -> None:
        await self._fail("unauthenticated")

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "session_group"):
            await self.channel_layer.group_discard(self.session_group, self.channel_name)
        pump = getattr(self, "pump", None)
        if pump is not None:
            pump.cancel()
            await database_sync_to_async(self._audit)(
                "viewer.images_streamed", self.study_uid, True, frames=len(self.sent)
            )

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if not hasattr(self, "pump") or text_data is None or len(text_data) > MAX_MESSAGE:
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "ack":
            self.in_flight = max(0, self.in_flight - _int(message.get("count"), 1))
        elif message.get("type") == "focus":
            visible = [v for v in message.get("visible") or [] if isinstance(v, str)][:16]
            have = message.get("have")
            if isinstance(have, dict):
                self._reset_sent(have)
            index, limit = _int(message.get("index"), 0), _int(message.get("limit"), 0)
            self._prioritise(message.get("series"), index, visible, limit)
        self.wake.set()

    def _prioritise(self, series, index: int, visible: list[str], limit: int = 0) -> None:
        """Focused series from `index` outward, other visible series, then the rest. With a
        `limit` (how many frames the page can hold), only the visible series, each its share
        of the limit nearest where it is looked at: frames the page would drop at once are
        not worth sending."""
        shown = list(dict.fromkeys(s for s in [series, *visible] if s in self.stacks))
        rest = [] if limit else [s for s in self.stacks if s not in shown]
        share = max(1, limit // max(len(shown), 1)) if limit else None
        order: list[viewing.FrameRef] = []
        for position, uid in enumerate(shown + rest):
            stack = self.stacks[uid]
            center = index if position == 0 and uid == series else len(stack) // 2
            order += [stack[i] for i in viewing.outward(len(stack), center)[:share]]
        self.queue = deque(ref for ref in order if (ref.series, ref.index) not in self.sent)

    def _reset_sent(self, have: dict) -> None:
        """What the browser holds of the series it names ("0-40,45"): frames it dropped
        from its cache, or missed while disconnected, become due again."""
        for series, ranges in list(have.items())[:64]:
            if series not in self.stacks or not isinstance(ranges, str):
                continue
            held = _parse_ranges(ranges, len(self.stacks[series]))
            # Frames still on their way are not in the page's list yet: not due again.
            on_the_way = {key for key in self.recent if key[0] == series}
            done = on_the_way | {key for key in self.failed if key[0] == series}
            self.sent = {key for key in self.sent if key[0] != series} | done
            self.sent.update((series, index) for index in held)

    async def _pump(self) -> None:
        while True:
            while self.queue and self.in_flight < WINDOW:
                ref = self.queue.popleft()
                if (ref.series, ref.index) in self.sent:
                    continue
                self.sent.add((ref.series, ref.index))
                # On its way from here: a "have" that comes while it is read keeps it sent.
                self.recent.append((ref.series, ref.index))
                message = await asyncio.to_thread(self._message, ref) if not ref.error else None
                if message is None:
                    self.failed.add((ref.series, ref.index))
                    await self.send(text_data=json.dumps(frame_error(ref)))
                    continue
                self.in_flight += 1
                await self.send(bytes_data=message)
            self.wake.clear()
            await self.wake.wait()

    def _message(self, ref: viewing.FrameRef) -> bytes | None:
        """The frame's binary message; None if its stored bytes cannot be read."""
        payload = viewing.read_frame(ref)
        if len(payload) != ref.size:
            return None
        encoding = "raw"
        if self.deflate and payload:
            payload, encoding = zlib.compress(payload, 1), "deflate"
        header = json.dumps(
            {"series": ref.series, "index": ref.index, "encoding": encoding}
        ).encode()
        # Pad so the values start 8-byte aligned: the browser views them in place.
        header += b" " * (-(4 + len(header)) % 8)
        return struct.pack("<I", len(header)) + header + payload

    def _audit(self, event_type: str, study_uid: str, allowed: bool, **detail) -> None:
        client = self.scope.get("client") or ("", 0)
        audit.record(
            event_type,
            audit.SUCCESS if allowed else audit.FAILURE,
            user=self.user,
            peer_address=str(client[0]),
            study_instance_uid=study_uid[:64],
            patient_id=getattr(self, "patient_id", ""),
            detail=detail,
        )


def frame_error(ref: viewing.FrameRef) -> dict:
    reason = ref.error or "its stored pixel data could not be read"
    return {"type": "frame-error", "series": ref.series, "index": ref.index, "reason": reason}


def _parse_ranges(text: str, count: int) -> set[int]:
    held: set[int] = set()
    for part in text.split(",")[:10_000]:
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            first, last = int(low), int(high or low)
            held.update(range(max(first, 0), min(last, count - 1) + 1))
    return held


def _int(value, default: int) -> int:
    return value if isinstance(value, int) and 0 <= value < 10_000_000 else default
