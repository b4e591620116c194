"""Several receiver processes on one DICOM port.

Python runs one thread at a time per process, and a receiving association keeps a core
busy (reading PDUs, writing the file, answering), so parallel senders need more than one
process. The first process (`python -m worker.dimse`) opens the port and starts
LIGHTBOX_DICOM_PROCESSES - 1 members (`python -m worker.dimse --member K ...`) that inherit
the listening socket; every process accepts from it and runs its associations itself.

Which process takes a new connection: each process's association count is in memory they
share (Load). A process with more associations than another that is alive and below the
limit leaves the connection to that one for up to DEFER_LIMIT seconds; between equals,
whichever accepts first takes it. LIGHTBOX_DICOM_MAX_ASSOCIATIONS stays the limit for all
of them together.

The first process restarts a member that dies, stops the members when it is told to stop
(each finishes its associations as one receiver does), and a member whose first process
has gone stops by itself.
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from django.conf import settings

log = logging.getLogger("lightbox.dimse")

# A process that has not said it is alive for this long is not waited for.
ALIVE_SECONDS = 2.0
# How long a busier process leaves a new connection to a less busy one before taking it.
DEFER_LIMIT = 0.1
# A member that dies is started again, but not more often than this.
RESTART_INTERVAL = 5.0
_SLOT = 2  # per process: [associations, last sign of life in ms of the monotonic clock]
# and one more slot after them: [1 once the receiver is stopping, unused]


class Load:
    """Association counts of the receiver processes, in memory they share."""

    def __init__(self, buffer, member: int, maximum: int):
        self._buffer = buffer  # kept: the view below must not outlive it
        self._slots = memoryview(buffer).cast("q")
        self.member = member
        self.members = len(self._slots) // _SLOT - 1
        self.maximum = maximum
        self._lock = threading.Lock()
        self.alive()

    @classmethod
    def alone(cls, maximum: int) -> Load:
        return cls(bytearray(8 * _SLOT * 2), 0, maximum)

    @classmethod
    def shared(cls, members: int, maximum: int) -> tuple[Load, int]:
        """The first process's Load, and the file descriptor members map it from."""
        size = 8 * _SLOT * (members + 1)
        fd = os.memfd_create("lightbox-dimse-load", 0)
        os.ftruncate(fd, size)
        return cls(mmap.mmap(fd, size), 0, maximum), fd

    @classmethod
    def attach(cls, fd: int, member: int, maximum: int) -> Load:
        return cls(mmap.mmap(fd, os.fstat(fd).st_size), member, maximum)

    def enter(self) -> None:
        with self._lock:
            self._slots[self.member * _SLOT] += 1

    def leave(self) -> None:
        with self._lock:
            self._slots[self.member * _SLOT] -= 1

    def alive(self) -> None:
        self._slots[self.member * _SLOT + 1] = _now_ms()

    def gone(self) -> None:
        """Nothing more is to be left to this process: it stops. (Its count stays right
        until its last association ends, for the limit.)"""
        self._slots[self.member * _SLOT + 1] = 0

    def dead(self, member: int) -> None:
        """That process died: it holds no association and takes none."""
        self._slots[member * _SLOT] = 0
        self._slots[member * _SLOT + 1] = 0

    def stopping(self) -> None:
        """From now on no process accepts a connection (each closes the port soon after)."""
        self._slots[self.members * _SLOT] = 1

    @property
    def closed(self) -> bool:
        return bool(self._slots[self.members * _SLOT])

    def mine(self) -> int:
        return self._slots[self.member * _SLOT]

    def others(self) -> int:
        """Associations of the other processes."""
        return sum(self._slots[m * _SLOT] for m in range(self.members) if m != self.member)

    def busier(self) -> bool:
        """Whether another live process below the limit has fewer associations."""
        mine, now = self.mine(), _now_ms()
        for m in range(self.members):
            count, seen = self._slots[m * _SLOT], self._slots[m * _SLOT + 1]
            fresh = now - seen < ALIVE_SECONDS * 1000
            if m != self.member and fresh and count < mine and count < self.maximum:
                return True
        return False


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class Members:
    """The first process's members: started, restarted when they die, stopped."""

    def __init__(self, listening: socket.socket, load: Load, load_fd: int, count: int):
        self.listening = listening
        self.load, self.load_fd = load, load_fd
        self.processes: dict[int, subprocess.Popen] = {}
        self.started: dict[int, float] = {}
        self.stopping = False
        for member in range(1, count):
            self._start(member)

    def _start(self, member: int) -> None:
        fds = (self.listening.fileno(), self.load_fd)
        self.started[member] = time.monotonic()
        self.processes[member] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.dimse",
                "--member",
                str(member),
                "--listening-fd",
                str(fds[0]),
                "--load-fd",
                str(fds[1]),
            ],
            cwd=settings.BASE_DIR,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE},
            pass_fds=fds,
        )

    def check(self) -> None:
        """Start again any member that died (not more often than RESTART_INTERVAL)."""
        for member, process in self.processes.items():
            status = process.poll()
            if status is None or self.stopping:
                continue
            self.load.dead(member)
            if time.monotonic() - self.started[member] < RESTART_INTERVAL:
                continue
            log.error(
                "DICOM receiver process %d exited (status %s); starting it again",
                member + 1,
                status,
            )
            self._start(member)

    def signal_stop(self) -> None:
        """Tell the members to stop: each finishes its associations as one receiver does."""
        self.stopping = True
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for member, process in self.processes.items():
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("DICOM receiver process %d did not stop; killing it", member + 1)
                process.kill()
                process.wait()
