"""The spool: received files, durable and listed until their outcome is committed."""

import errno
import hashlib
import os
import time
import uuid
from pathlib import Path

import pytest

from backend.archive.spool import Spool, size_in_id, sized_id


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


def age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_it_returns_id_size_and_sha256(spool):
    chunks = [b"DICM", b"", b"x" * 5000]
    record_id, size, sha256 = spool.receive(iter(chunks))
    assert isinstance(record_id, uuid.UUID)
    assert size == 5004
    assert sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert spool.path(record_id).read_bytes() == b"".join(chunks)
    assert list(spool.tmp.iterdir()) == []


def test_it_gives_each_file_a_new_id(spool):
    first, _, digest_1 = spool.receive([b"same"])
    second, _, digest_2 = spool.receive([b"same"])
    assert first != second and digest_1 == digest_2


def test_it_spools_an_empty_file(spool):
    record_id, size, sha256 = spool.receive([])
    assert size == 0 and sha256 == hashlib.sha256(b"").hexdigest()
    assert spool.path(record_id).exists()


def test_it_keeps_nothing_when_the_sender_fails(spool):
    def failing():
        yield b"part"
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        spool.receive(failing())
    assert list(spool.waiting()) == []
    assert list(spool.tmp.iterdir()) == []


def test_it_lists_waiting_files_oldest_first(spool):
    ids = [spool.receive([bytes([n])])[0] for n in range(3)]
    for record_id, seconds in zip(ids, [10, 30, 20], strict=True):
        age(spool.path(record_id), seconds)
    assert list(spool.waiting()) == [ids[1], ids[2], ids[0]]


def test_it_lists_only_files_older_than_asked(spool):
    old, _, _ = spool.receive([b"old"])
    spool.receive([b"new"])
    age(spool.path(old), 120)
    assert list(spool.waiting(older_than_seconds=60)) == [old]


def test_it_ignores_foreign_names_and_folders(spool):
    record_id, _, _ = spool.receive([b"x"])
    (spool.root / "notes.txt").write_text("x")
    (spool.root / "not-a-uuid.dcm").write_text("x")
    (spool.root / f"{uuid.uuid4()}.dcm").mkdir()
    assert list(spool.waiting()) == [record_id]


def test_it_removes_a_file_and_tolerates_removing_twice(spool):
    record_id, _, _ = spool.receive([b"x"])
    spool.remove(record_id)
    assert list(spool.waiting()) == []
    spool.remove(record_id)


def test_it_cleans_only_old_temporaries(spool):
    old = spool.tmp / ".tmp-old"
    new = spool.tmp / ".tmp-new"
    old.write_bytes(b"half")
    new.write_bytes(b"half")
    age(old, 7200)
    assert spool.clean_tmp(older_than_seconds=3600) == 1
    assert not old.exists() and new.exists()


def test_it_counts_attempts_and_keeps_the_last_error(spool):
    record_id, _, _ = spool.receive(iter([b"DICM"]))
    assert spool.attempt_started(record_id) is None
    assert spool.begin_attempt(record_id) == 1
    assert spool.attempt_started(record_id) is not None
    spool.note_error(record_id, "ValueError: first")
    assert spool.begin_attempt(record_id) == 2
    assert spool.last_error(record_id) == "ValueError: first"
    spool.note_error(record_id, "ValueError: second")
    assert spool.begin_attempt(record_id) == 3
    assert spool.last_error(record_id) == "ValueError: second"
    spool.remove(record_id)
    assert spool.attempt_started(record_id) is None
    assert spool.begin_attempt(record_id) == 1


def test_a_batch_has_one_marker_until_it_ends(spool):
    ids = [spool.receive(iter([b"DICM"]))[0] for _ in range(3)]
    assert spool.begin_batch(ids)
    assert not spool.begin_batch(ids)  # delivered again before it ended
    assert spool.begin_batch(ids[:2])  # another batch
    ((_, begun, listed),) = [b for b in spool.batches() if len(b[2]) == 3]
    assert listed == ids and time.time() - 5 < begun <= time.time()
    assert not any(spool.attempted(i) for i in ids)  # no marker per file
    spool.end_batch(ids)
    spool.end_batch(ids)  # ended twice: nothing to do
    assert [b[2] for b in spool.batches()] == [ids[:2]]
    assert spool.begin_batch(ids)


def test_a_batch_marker_cut_short_by_a_crash_lists_the_files_it_names(spool):
    ids = [spool.receive(iter([b"DICM"]))[0] for _ in range(3)]
    assert spool.begin_batch(ids)
    ((path, _, _),) = spool.batches()
    path.write_bytes(path.read_bytes()[:-10])  # the last id cut short
    assert [b[2] for b in spool.batches()] == [ids[:2]]
    path.write_bytes(b"\0" * 40)  # a power cut left zeros
    assert [b[2] for b in spool.batches()] == [[]]


def test_it_counts_a_batch_attempt_for_a_file_once(spool):
    record_id, _, _ = spool.receive(iter([b"DICM"]))
    spool.count_at_least(record_id, 1)
    assert spool.attempted(record_id)
    spool.count_at_least(record_id, 1)
    assert spool.begin_attempt(record_id) == 2
    spool.note_error(record_id, "boom", attempts=1)  # fewer than counted: kept
    assert spool.begin_attempt(record_id) == 3
    other, _, _ = spool.receive(iter([b"DICM"]))
    spool.note_error(other, "failed in a batch", attempts=1)
    assert spool.begin_attempt(other) == 2


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_batch_begins_without_a_marker_on_a_full_disk(spool, monkeypatch, code):
    ids = [spool.receive(iter([b"DICM"]))[0]]

    def full(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "open", full)
    assert spool.begin_batch(ids)
    monkeypatch.undo()
    monkeypatch.setattr(os, "write", full)  # room for its name, not for what it lists
    assert spool.begin_batch(ids)
    monkeypatch.undo()
    assert list(spool.batches()) == []
    assert not list(spool.root.glob("*.attempts"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_it_counts_attempts_without_a_marker_on_a_full_disk(spool, monkeypatch, code):
    # Indexing is what empties a full spool: a marker it cannot write must not stop it
    # (tests/dimse/test_disk_full.py does this on a real full tmpfs).
    record_id, _, _ = spool.receive(iter([b"DICM"]))

    def full(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Path, "write_text", full)
    assert spool.begin_attempt(record_id) == 1
    spool.note_error(record_id, "boom")

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "denied")

    monkeypatch.setattr(Path, "write_text", denied)
    with pytest.raises(PermissionError):  # other errors still fail the attempt
        spool.begin_attempt(record_id)


def test_a_whole_file_is_spooled_under_an_id_that_carries_its_size(spool):
    parts = [b"DICM", memoryview(b"x" * 70_000)]
    record_id, size = spool.receive_whole(parts)

    assert size == 70_004 and size_in_id(record_id) == 70_004
    assert record_id.version == 8 and record_id.variant == uuid.RFC_4122
    assert spool.path(record_id).read_bytes() == b"DICM" + b"x" * 70_000
    assert not spool.incomplete(record_id)
    assert list(spool.tmp.iterdir()) == []


def test_a_file_shorter_than_its_id_says_is_incomplete(spool):
    record_id, size = spool.receive_whole([b"y" * 100])
    os.truncate(spool.path(record_id), 40)
    assert spool.incomplete(record_id)


def test_other_ids_carry_no_size(spool):
    record_id, _, _ = spool.receive([b"z"])
    assert size_in_id(record_id) is None and not spool.incomplete(record_id)
    assert size_in_id(uuid.uuid4()) is None
    assert [size_in_id(sized_id(n)) for n in (0, 1, 525_000, (1 << 48) - 1)] == [
        0,
        1,
        525_000,
        (1 << 48) - 1,
    ]
    assert len({sized_id(10) for _ in range(1000)}) == 1000


def test_a_whole_file_that_cannot_be_written_leaves_nothing(spool, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        spool.receive_whole([b"w" * 10])
    assert list(spool.waiting()) == [] and list(spool.tmp.iterdir()) == []


def test_there_is_one_spool_per_data_directory(tmp_path, settings):
    from backend.archive.spool import get_spool

    settings.DATA_DIR = tmp_path / "one"
    first = get_spool()
    settings.DATA_DIR = tmp_path / "two"
    second = get_spool()

    assert second is not first and second.root == tmp_path / "two" / "spool"
    assert second.tmp.is_dir()
    settings.DATA_DIR = tmp_path / "one"
    assert get_spool() is first
