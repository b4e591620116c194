"""Group commit of a folder's fsync (storage.DirectorySync): every caller returns only after
an fsync that began after it called, and concurrent callers share fsyncs."""

import threading
import time

import pytest

from backend.archive import storage


@pytest.fixture
def fsyncs(monkeypatch):
    """Record each fsync_dir call's start and end; each takes 20 ms."""
    calls: list[tuple[float, float]] = []

    def slow_fsync(path):
        started = time.monotonic()
        time.sleep(0.02)
        calls.append((started, time.monotonic()))

    monkeypatch.setattr(storage, "fsync_dir", slow_fsync)
    return calls


def test_it_syncs_once_for_one_caller(tmp_path, fsyncs):
    storage.DirectorySync(tmp_path).sync()
    assert len(fsyncs) == 1


def test_it_shares_fsyncs_between_concurrent_callers(tmp_path, fsyncs):
    sync = storage.DirectorySync(tmp_path)
    called, returned = {}, {}

    def caller(n):
        called[n] = time.monotonic()
        sync.sync()
        returned[n] = time.monotonic()

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(returned) == 16
    assert len(fsyncs) < 16
    for n in range(16):
        # Some fsync began after this caller called and ended before it returned.
        assert any(called[n] <= start and end <= returned[n] for start, end in fsyncs), n


def test_it_raises_to_the_caller_whose_fsync_failed_and_recovers(tmp_path, monkeypatch):
    failures = [OSError(5, "Input/output error")]

    def flaky(path):
        if failures:
            raise failures.pop()

    monkeypatch.setattr(storage, "fsync_dir", flaky)
    sync = storage.DirectorySync(tmp_path)
    with pytest.raises(OSError):
        sync.sync()
    sync.sync()


def test_it_keeps_one_per_folder(tmp_path):
    assert storage.shared_directory_sync(tmp_path) is storage.shared_directory_sync(tmp_path)
    assert storage.shared_directory_sync(tmp_path / "a") is not storage.shared_directory_sync(
        tmp_path
    )
