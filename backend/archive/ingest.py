"""The one ingest entry point that every source of images calls.

receive() makes the file durable in the spool, records it and queues it for a worker; only
then may the caller acknowledge the sender. Parsing, validation and indexing happen in the
worker (see indexing.py), never in the process that received the file.
"""

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import BinaryIO, cast

from django.db import close_old_connections, transaction

from . import queue
from .db import relaxed_commit
from .models import IngestRecord
from .spool import get_spool, size_in_id

log = logging.getLogger(__name__)
CHUNK = 1 << 20
TASK_BATCH = 16
RESTART_INTERVAL = 5.0  # seconds: RecordingProcess starts its child at most this often
SENDERS_DONE = "senders done"  # the line (in JSON) that is not a file: senders_done()


def receive(
    chunks: Iterable[bytes], *, source: str, detail: str = "", calling_ae: str = "", user=None
) -> IngestRecord:
    """Durably store one received file and queue it for indexing.

    When this returns the file survives a crash: if the queue message is lost, the sweep
    finds the record (or the spooled file) and queues it again.
    """
    record_id, size, sha256 = get_spool().receive(chunks)
    return record_spooled(
        record_id, size, sha256, source=source, detail=detail, calling_ae=calling_ae, user=user
    )


def receive_stream(f: BinaryIO, *, source: str, detail: str = "", user=None) -> IngestRecord:
    return receive(read_chunks(f), source=source, detail=detail, user=user)


def receive_path(path: Path, *, source: str, detail: str = "") -> IngestRecord:
    with open(path, "rb") as f:
        return receive_stream(f, source=source, detail=detail or str(path))


@dataclass
class Received:
    label: str
    record: IngestRecord | None = None
    error: str = ""
    calling_ae: str = ""


def receive_many(
    files: Iterable[tuple[str, Callable[[], BinaryIO]]], *, source: str, batch_size: int = 32
) -> Iterator[Received]:
    """Spool many files (label, opener), recording them a batch per transaction.

    For bulk imports: one directory sync and one commit per batch instead of per file.
    A file that cannot be read is reported and does not stop the others.
    """
    spool = get_spool()
    batch: list[tuple[Received, uuid.UUID, int, str]] = []
    for label, opener in files:
        try:
            with opener() as f:
                batch.append((Received(label), *spool.receive(read_chunks(f), sync_dir=False)))
        except OSError as exc:
            yield Received(label, error=f"cannot read: {exc.strerror or exc}")
        if len(batch) >= batch_size:
            yield from _record_batch(spool, batch, source)
            batch = []
    yield from _record_batch(spool, batch, source)


def _send_batch(ids: list[str]) -> None:
    queue.send(queue.INGEST_BATCH, ids)


def _record_batch(
    spool, batch, source: str, send: Callable[[list[str]], None] = _send_batch
) -> Iterator[Received]:
    if not batch:
        return
    spool.sync()
    records = [
        IngestRecord(
            id=record_id,
            source=source,
            source_detail=received.label[:1000],
            calling_ae=received.calling_ae[:16],
            size=size,
            sha256=sha256,
        )
        for received, record_id, size, sha256 in batch
    ]
    with relaxed_commit():
        IngestRecord.objects.bulk_create(records)
        # Tasks of a few files each: workers index them in one transaction, and two
        # workers still share a batch's work.
        for start in range(0, len(records), TASK_BATCH):
            ids = [str(r.id) for r in records[start : start + TASK_BATCH]]
            transaction.on_commit(partial(send, ids))
    for (received, *_), record in zip(batch, records, strict=True):
        received.record = record
        yield received


class BackgroundRecorder:
    """Record and queue files already durable in the spool, in batches, from a thread.

    For a network receiver (through RecordingProcess): the sender's acknowledgement waits
    only for the durable spool copy (the contract), while records and Celery messages are
    written a batch at a time, so that many small commits and messages do not slow the
    sender down and the workers get batches to index in one transaction. The SHA-256 is
    computed here, from the spooled file. If the process dies before a batch is recorded,
    the sweep finds those spooled files and records them ("recovered").

    `hold` (seconds; 0: off): while files keep arriving (less than `quiet` apart), their
    records are written as usual but their tasks are held, and sent together once the
    senders pause or the first held task has waited `hold`. On two cores, indexing beside
    a transfer slowed the receiver by a third, and the images were viewable no sooner for
    it (docs/performance.md). A file marked urgent (the first of its study the receiver
    process has had in a while) has its task sent at once, with those held before it, so
    that a new study reaches the worklists without waiting. A held task that is lost (the
    process dies) is sent again by the sweep, as any other: its record is committed.
    """

    QUIET = 0.1  # seconds without an arrival after which held tasks are sent (default)

    def __init__(
        self,
        interval: float = 0.05,
        max_batch: int = 64,
        hold: float = 0.0,
        quiet: float = QUIET,
    ):
        self.interval, self.max_batch, self.hold, self.quiet = interval, max_batch, hold, quiet
        self._waiting: SimpleQueue = SimpleQueue()
        self._stopped = threading.Event()
        self._held: list[list[str]] = []  # tasks' ids, sent in order
        self._held_since = self._last_arrival = 0.0
        self._urgent = False
        self._thread = threading.Thread(target=self._run, name="IngestRecorder", daemon=True)
        self._thread.start()

    def enqueue(
        self,
        record_id: uuid.UUID,
        size: int,
        *,
        source: str,
        detail: str,
        calling_ae: str,
        urgent: bool = False,
    ) -> None:
        """Record a file already durable in the spool, in the next batch."""
        received = Received(detail, calling_ae=calling_ae.replace("\x00", ""))
        self._waiting.put((time.monotonic(), urgent, (received, record_id, size, source)))

    def senders_done(self) -> None:
        """No association is open any more: once the files enqueued so far are recorded,
        send what is held, without waiting for the pause that would otherwise tell."""
        self._waiting.put((time.monotonic(), True, None))

    def close(self, timeout: float = 10) -> None:
        """Record what is waiting, send what is held, then stop."""
        self._stopped.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not (self._stopped.is_set() and self._waiting.empty() and not self._held):
            batch = self._take()
            if batch:
                self._record(batch)
            if self._held and self._sending_due():
                self._send_held()
            if not self._held:
                self._urgent = False  # senders_done() with nothing held: nothing to send
        close_old_connections()

    def _take(self) -> list:
        """What arrives within `interval` of the first file (at most `max_batch`); files
        already waiting are taken whatever their age. An empty batch after `interval`
        lets _run send what is held, or stop. An urgent file ends the batch, so that its
        task is sent with those held before it, but not with the files after it; so does
        senders_done()'s mark, which is not a file."""
        batch: list[tuple] = []
        deadline = None
        while len(batch) < self.max_batch:
            timeout = self.interval if deadline is None else max(deadline - time.monotonic(), 0)
            try:
                arrived, urgent, item = self._waiting.get(block=timeout > 0, timeout=timeout)
            except Empty:
                break
            if item is None:  # senders_done()
                self._urgent = True
                break
            if deadline is None:
                deadline = arrived + self.interval
            self._last_arrival = arrived
            batch.append(item)
            if urgent:
                self._urgent = True
                break
        return batch

    def _sending_due(self) -> bool:
        now = time.monotonic()
        return (
            self._urgent
            or self._stopped.is_set()
            # Quiet: nothing arrived for `quiet`, and nothing is waiting either. Recording
            # a batch can take longer than that on a busy machine; the files that came
            # meanwhile wait in the queue, and the senders are not quiet.
            or (now - self._last_arrival >= self.quiet and self._waiting.empty())
            or now - self._held_since >= self.hold
        )

    def _hold(self, ids: list[str]) -> None:
        if not self._held:
            self._held_since = time.monotonic()
        self._held.append(ids)

    def _send_held(self) -> None:
        held, self._held, self._urgent = self._held, [], False
        ids = [record_id for task in held for record_id in task]
        for task in held_tasks(ids):
            try:
                _send_batch(task)
            except Exception:
                # The records are committed: the sweep queues them again.
                log.exception("could not queue %d recorded files; the sweep will", len(task))

    def _record(self, batch: list) -> None:
        spool = get_spool()
        by_source: dict[str, list] = {}
        for received, record_id, size, source in batch:
            try:
                sha256 = spool.hash_file(record_id)
            except OSError:
                log.exception("cannot read back spooled %s; the sweep will record it", record_id)
                continue
            by_source.setdefault(source, []).append((received, record_id, size, sha256))
        for source, items in by_source.items():
            try:
                list(_record_batch(spool, items, source, send=self._hold))
            except Exception:
                # The files are durable in the spool; the sweep records them later.
                log.exception("could not record %d received files; the sweep will", len(items))
                close_old_connections()


# What a recorder held goes in tasks of at most this many files and bytes. Bigger tasks
# cost less per file (a task's transaction, folder syncs and queries: docs/performance.md),
# and all of a task's files wait for its one commit; the bytes bound what one task may
# have to decode within LIGHTBOX_INGEST_TIME_LIMIT.
HELD_TASK_MAX = 128
HELD_TASK_BYTES = 64 << 20


def held_tasks(ids: list[str]) -> list[list[str]]:
    """What a recorder held, in tasks, in the order it arrived, whatever the batches the
    files were recorded in (under load a recording batch holds a few files). A burst of
    more than TASK_BATCH files goes in an even number of tasks of about one size, so
    that both pool processes index it to the end; fewer go in one task."""
    if len(ids) <= TASK_BATCH:
        return [ids] if ids else []
    size = sum(size_in_id(uuid.UUID(record_id)) or 0 for record_id in ids)
    count = max(-(-len(ids) // HELD_TASK_MAX), -(-size // HELD_TASK_BYTES), 2)
    count += count % 2
    each, extra = divmod(len(ids), count)
    tasks, start = [], 0
    for index in range(count):
        end = start + each + (index < extra)
        tasks.append(ids[start:end])
        start = end
    return tasks


class RecordingProcess:
    """The DICOM receiver's ingest: spool durably now, record in a child process
    (`python -m backend.archive.recording`, a BackgroundRecorder) a moment later.

    For the DICOM receiver. In its own process, the recording thread's database
    transactions and Celery messages held the GIL for milliseconds at a time, while the
    association threads waited for it between a file's arrival and its acknowledgement.
    Here the receiving thread spools the file durably, then writes one line (id, size,
    source, detail, calling AE) to the child's stdin; the child records batches as
    BackgroundRecorder does. If the child dies, it is started again; what it had not
    recorded is durable in the spool, and the sweep records it ("recovered").
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._closed = False
        self._process = self._start()

    def _start(self) -> subprocess.Popen:
        from django.conf import settings

        self._started = time.monotonic()
        return subprocess.Popen(
            [sys.executable, "-m", "backend.archive.recording"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,  # for its "ready" line (wait_ready)
            cwd=settings.BASE_DIR,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE},
        )

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the child has set itself up; False if it has not within `timeout`
        seconds (or has exited). Files received meanwhile wait in its stdin: this is so that
        a receiver which says it is ready is, and its child's start-up (about 2 CPU seconds:
        Django, the database) does not compete with the first transfer."""
        stdout = self._process.stdout  # not under the lock: files may arrive meanwhile
        if stdout is None or stdout.closed:
            return True
        try:
            readable, _, _ = select.select([stdout], [], [], timeout)
            ready = bool(readable) and stdout.readline() == b"ready\n"
        finally:
            stdout.close()  # the child sends nothing else there
        if ready:
            self._started = time.monotonic()  # "dies at once" counts from here (_send)
        return ready

    def receive(
        self,
        parts: Sequence[bytes | memoryview],
        *,
        source: str,
        detail: str = "",
        calling_ae: str = "",
        urgent: bool = False,
    ) -> uuid.UUID:
        """Spool durably (Spool.receive_whole) and return; recording follows, and its
        indexing task is queued at once if `urgent` (see BackgroundRecorder)."""
        record_id, size = get_spool().receive_whole(parts)
        line = json.dumps([str(record_id), size, source, detail, calling_ae, urgent]) + "\n"
        self._send(line.encode())
        return record_id

    def _send(self, line: bytes) -> None:
        with self._lock:
            if self._closed:
                log.error("a file was received after the recorder closed; the sweep records it")
                return
            try:
                self._write(line)
                return
            except (OSError, ValueError) as exc:
                if time.monotonic() - self._started < RESTART_INTERVAL:
                    # One that dies at once (a broken install) is not restarted per file.
                    log.error("the recording process stopped (%s); the sweep records the file", exc)
                    return
                log.error(
                    "the recording process stopped (%s, exit status %s); starting it again",
                    exc,
                    self._process.poll(),
                )
                self._process = self._start()
                # Not waited for: the association thread must not be kept waiting.
                cast(BinaryIO, self._process.stdout).close()
            try:
                self._write(line)
            except (OSError, ValueError):
                # Durable in the spool all the same.
                log.exception("cannot pass a received file on for recording; the sweep will")

    def senders_done(self) -> None:
        """No association is open any more (BackgroundRecorder.senders_done). Not worth
        restarting a dead child for: the pause after the last file tells it too."""
        with self._lock:
            if not self._closed:
                with contextlib.suppress(OSError, ValueError):
                    self._write(json.dumps(SENDERS_DONE).encode() + b"\n")

    def _write(self, line: bytes) -> None:
        stdin = cast(BinaryIO, self._process.stdin)
        stdin.write(line)
        stdin.flush()

    def close(self, timeout: float = 10) -> None:
        """Record what is waiting, then stop."""
        with self._lock:
            self._closed = True
            process = self._process
            for pipe in (process.stdin, process.stdout):
                with contextlib.suppress(OSError, AttributeError):
                    cast(BinaryIO, pipe).close()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the recording process did not finish in %s s; stopping it", timeout)
                process.kill()
                process.wait()


def read_chunks(f: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


def record_spooled(
    record_id: uuid.UUID,
    size: int,
    sha256: str,
    *,
    source: str,
    detail: str,
    calling_ae: str = "",
    user=None,
) -> IngestRecord:
    """Record a file already durable in the spool (get_spool().receive) and queue it.
    For sources that look at the file before accepting it (STOW-RS checks the study)."""
    with transaction.atomic():
        record = IngestRecord.objects.create(
            id=record_id,
            source=source,
            source_detail=detail[:1000],
            calling_ae=calling_ae.replace("\x00", "")[:16],
            user=user,
            size=size,
            sha256=sha256,
        )
        transaction.on_commit(partial(queue.send, queue.INGEST_FILE, str(record_id)))
    return record
