"""Helpers for integration tests: child processes, bounded waits, the state of the archive."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from ..conftest import REPO

WORKER_COMMAND = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-c", "2"]
# Log files of the processes a test started, shown when it fails (see conftest.py).
PROCESS_LOGS = pytest.StashKey[list[Path]]()


def wait_until(predicate: Callable[[], object], timeout: float, describe: Callable[[], str]):
    """Poll `predicate` until it returns something truthy; fail with `describe()` if it never
    does within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s: {describe()}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process in its own process group, its output going to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                args,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_for_output(self, text: str, timeout: float = 45) -> None:
        def seen() -> bool:
            if text in self.output():
                return True
            if not self.running():
                pytest.fail(f"{self.name} exited ({self.popen.returncode}) before '{text}'")
            return False

        wait_until(seen, timeout, lambda: f"{self.name} never logged '{text}' (see its log)")

    def kill(self) -> None:
        """SIGKILL the whole group (a prefork worker's children too): nothing cleans up."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, grace: float = 15) -> None:
        if self.running():
            self.popen.send_signal(signal.SIGTERM)  # warm shutdown: the parent stops its pool
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Children that outlived their parent (or a parent that ignored SIGTERM).
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass


def record_states() -> Counter:
    from backend.archive.models import IngestRecord

    return Counter(IngestRecord.objects.values_list("state", flat=True))


def unfinished() -> int:
    from backend.archive.models import IngestRecord

    return IngestRecord.objects.exclude(state__in=IngestRecord.FINAL_STATES).count()


def spooled(data_dir: Path) -> list[Path]:
    """What the spool still holds: received files and their attempt markers."""
    return sorted(p for p in (data_dir / "spool").glob("*.*") if p.is_file())


def attempts_in_flight(data_dir: Path) -> int:
    """Files a worker has begun indexing and not finished (spool/<id>.attempts markers)."""
    return len(list((data_dir / "spool").glob("*.attempts")))


def wait_all_final(timeout: float) -> Counter:
    wait_until(lambda: unfinished() == 0, timeout, lambda: f"records: {dict(record_states())}")
    return record_states()


def wait_spool_empty(data_dir: Path, timeout: float = 20) -> None:
    wait_until(
        lambda: not spooled(data_dir),
        timeout,
        lambda: f"left in the spool: {[p.name for p in spooled(data_dir)]}",
    )
