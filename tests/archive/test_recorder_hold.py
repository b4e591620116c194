"""When the receiver's recorder (backend/archive/ingest.BackgroundRecorder) sends the
indexing tasks it holds while senders send: its two decisions, driven by hand."""

import time
import uuid

import pytest

from backend.archive import ingest
from backend.archive.ingest import (
    HELD_TASK_BYTES,
    HELD_TASK_MAX,
    TASK_BATCH,
    BackgroundRecorder,
    held_tasks,
)
from backend.archive.spool import sized_id


@pytest.fixture
def recorder():
    """A recorder whose own thread has already stopped, so that the test takes its batches
    and asks whether sending is due itself."""
    recorder = BackgroundRecorder(interval=0.05, hold=5.0)
    recorder.close()
    recorder._stopped.clear()
    return recorder


def arrive(recorder: BackgroundRecorder, urgent: bool = False) -> None:
    recorder.enqueue(uuid.uuid4(), 100, source="dimse", detail="X@h", calling_ae="X", urgent=urgent)


def test_an_urgent_file_ends_its_batch(recorder):
    for n in range(5):
        arrive(recorder, urgent=n == 2)
    assert len(recorder._take()) == 3  # up to and including the urgent file
    assert recorder._sending_due()  # its task goes now, with what was held before
    recorder._urgent = False
    assert len(recorder._take()) == 2  # the files after it: held like the rest
    assert not recorder._urgent


def test_files_waiting_to_be_recorded_mean_the_senders_are_not_quiet(recorder):
    recorder._held, recorder._held_since = [["held"]], time.monotonic()
    arrive(recorder)
    recorder._take()
    arrive(recorder)  # arrived while the batch before was being recorded
    time.sleep(BackgroundRecorder.QUIET + 0.05)
    assert not recorder._sending_due()
    recorder._take()  # that one, now taken, was the last
    time.sleep(BackgroundRecorder.QUIET + 0.05)
    assert recorder._sending_due()


def test_the_hold_runs_out_even_while_files_keep_arriving(recorder):
    recorder.hold = 0.2
    recorder._held, recorder._held_since = [["held"]], time.monotonic()
    arrive(recorder)
    recorder._take()
    assert not recorder._sending_due()
    time.sleep(0.25)
    arrive(recorder)
    assert recorder._sending_due()


def test_held_files_are_sent_in_full_tasks(recorder, monkeypatch):
    """Under load each recording batch holds a few files: what was held goes in tasks
    whatever the batches, in the order it arrived."""
    sent: list[list[str]] = []
    monkeypatch.setattr(ingest, "_send_batch", sent.append)
    recorded = [[str(uuid.uuid4()) for _ in range(size)] for size in (5, 3, 7, 2, 6, 1)]
    for ids in recorded:
        recorder._hold(ids)
    recorder._send_held()
    every = [i for ids in recorded for i in ids]  # 24
    assert sent == [every[:12], every[12:]]
    assert not recorder._held


@pytest.mark.parametrize(
    "count, size",
    [(0, 0), (1, 1), (15, 1), (TASK_BATCH, 1), (17, 1), (138, 530_000), (275, 530_000)]
    + [(1000, 1), (20, 30 << 20), (40, None)],
)
def test_a_held_burst_goes_in_an_even_number_of_tasks_of_one_size(count, size):
    """`size`: each file's, as its id carries it (None: an id that does not, uuid4)."""
    ids = [str(sized_id(size) if size is not None else uuid.uuid4()) for _ in range(count)]
    tasks = held_tasks(ids)

    assert [i for task in tasks for i in task] == ids  # all of them, in order
    sizes = [len(task) for task in tasks]
    if count <= TASK_BATCH:  # a small burst: one task, as recorded
        assert sizes == ([count] if count else [])
        return
    assert len(tasks) % 2 == 0  # both pool processes busy to the end
    assert max(sizes) <= HELD_TASK_MAX
    assert max(sizes) - min(sizes) <= 1
    assert max(sizes) * (size or 0) <= HELD_TASK_BYTES
    if (fewer := len(tasks) - 2) > 0:  # two tasks fewer would break a bound
        most = -(-count // fewer)
        assert most > HELD_TASK_MAX or most * (size or 0) > HELD_TASK_BYTES


def test_how_long_counts_as_a_pause_is_the_recorders_own(recorder):
    recorder.quiet = 0.4  # LIGHTBOX_DICOM_INDEX_QUIET_MS
    recorder._held, recorder._held_since = [["held"]], time.monotonic()
    arrive(recorder)
    recorder._take()
    time.sleep(BackgroundRecorder.QUIET + 0.05)
    assert not recorder._sending_due()  # the default would have let go by now
    time.sleep(0.3)
    assert recorder._sending_due()


def test_senders_done_sends_what_is_held_once_what_came_before_is_recorded(recorder):
    """The receiver says when its last association has ended (RecordingProcess.
    senders_done): what is held goes then, without waiting for the pause."""
    recorder.quiet = 5.0
    recorder._held, recorder._held_since = [["held"]], time.monotonic()
    arrive(recorder)
    arrive(recorder)
    recorder.senders_done()
    arrive(recorder)  # the next association's first file, after the mark
    assert len(recorder._take()) == 2  # the files before the mark, recorded first
    assert recorder._sending_due()
    recorder._urgent = False
    assert len(recorder._take()) == 1
    assert not recorder._urgent


def test_senders_done_with_nothing_held_leaves_the_next_files_held(monkeypatch):
    """With nothing held, the mark is forgotten: it must not send the next file's task."""
    sent: list[list[str]] = []
    monkeypatch.setattr(ingest, "_send_batch", sent.append)
    monkeypatch.setattr(BackgroundRecorder, "_record", lambda self, batch: self._hold(["x"]))
    recorder = BackgroundRecorder(interval=0.01, hold=5.0, quiet=5.0)
    try:
        recorder.senders_done()
        time.sleep(0.1)  # the mark taken, nothing held
        arrive(recorder)
        time.sleep(0.2)
        assert sent == []  # held: the senders have not paused for `quiet`
        recorder.senders_done()
        deadline = time.monotonic() + 5
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent == [["x"]]
    finally:
        recorder.close()
