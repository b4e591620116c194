"""Several receiver processes on one port (LIGHTBOX_DICOM_PROCESSES, worker/dimse/members.py):
new associations go to the least busy, the association limit is for all of them together,
a member that dies is started again, and they stop with the first process."""

import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path

from ..integration.helpers import wait_until
from .conftest import needs_dcmtk
from .peers import AE_TITLE, client, dcmtk


def start(site, **env):
    receiver = site.start_receiver(LIGHTBOX_DICOM_PROCESSES="2", **env)
    receiver.wait_for_output("DICOM receiver process 2 of 2 ready", timeout=30)
    return receiver


def members(pid: int) -> list[int]:
    """The member processes the first receiver process started."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"--member" in Path(f"/proc/{c}/cmdline").read_bytes()]


def connections(port: int, pids: list[int]) -> Counter:
    """How many established connections to `port` each of `pids` holds (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state = int(fields[1].rsplit(":", 1)[1], 16), fields[3]
            if local_port == port and state == "01":
                inodes.add(fields[9])
    held: Counter = Counter()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd) if fd.is_symlink() else ""
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held[pid] += 1
    return held


def test_associations_are_spread_over_the_processes(embedded_site):
    receiver = start(embedded_site)
    pids = [receiver.popen.pid, *members(receiver.popen.pid)]
    assert len(pids) == 2

    opened = [
        client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE) for _ in range(8)
    ]
    try:
        assert all(assoc.is_established for assoc in opened)
        assert all(assoc.send_c_echo().Status == 0x0000 for assoc in opened)
        held = connections(embedded_site.port, pids)
    finally:
        for assoc in opened:
            assoc.release()

    assert sum(held.values()) == 8
    assert sorted(held.values()) == [4, 4], held


@needs_dcmtk
def test_the_association_limit_is_for_all_processes_together(embedded_site):
    start(embedded_site, LIGHTBOX_DICOM_MAX_ASSOCIATIONS="3")

    opened = [
        client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE) for _ in range(3)
    ]
    extra = dcmtk("echoscu", embedded_site.port)
    try:
        assert all(assoc.is_established for assoc in opened)
        assert extra.returncode != 0
        assert "Local Limit Exceeded" in extra.stderr, extra.stderr
    finally:
        for assoc in opened:
            assoc.release()
    wait_until(
        lambda: (
            (a := client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE))
            and a.is_established
            and (a.release() or True)
        ),
        10,
        lambda: "a new association is still refused after the others were released",
    )


def test_a_member_that_dies_is_started_again_and_the_port_keeps_answering(embedded_site):
    receiver = start(embedded_site)
    (member,) = members(receiver.popen.pid)

    os.kill(member, signal.SIGKILL)

    for _ in range(4):  # the first process answers meanwhile
        assoc = client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    receiver.wait_for_output("DICOM receiver process 2 exited (status -9); starting it again", 15)
    wait_until(
        lambda: receiver.output().count("process 2 of 2 ready") == 2, 30, lambda: "not restarted"
    )
    assert members(receiver.popen.pid) not in ([], [member])


def test_members_stop_when_the_first_process_is_killed(embedded_site):
    receiver = start(embedded_site)
    (member,) = members(receiver.popen.pid)

    receiver.popen.send_signal(signal.SIGKILL)
    receiver.popen.wait(timeout=5)

    def gone() -> bool:
        try:
            os.kill(member, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{member}/stat").read_text().split(")")[1].split()[0] == "Z"

    wait_until(gone, 15, lambda: "the member outlived the first process")
    assert "the first DICOM receiver process has gone: stopping" in receiver.output()


def test_sigterm_lets_every_process_finish_its_associations(embedded_site):
    receiver = start(embedded_site)
    pids = [receiver.popen.pid, *members(receiver.popen.pid)]
    opened = [
        client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE) for _ in range(2)
    ]
    assert sorted(connections(embedded_site.port, pids).values()) == [1, 1]

    receiver.popen.send_signal(signal.SIGTERM)
    receiver.wait_for_output("stopping", timeout=5)

    late = client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE)
    assert not late.is_established  # no process accepts any more
    time.sleep(0.5)
    for assoc in opened:  # both still served during the grace period
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    assert receiver.popen.wait(timeout=10) == 0
    assert "DICOM receiver process 2 stopped (0 associations aborted)" in receiver.output()
    assert "DICOM receiver stopped (0 associations aborted)" in receiver.output()


def bare_connection(port: int) -> None:
    """What a health check or a port scan does: connect, then close without associating."""
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


@needs_dcmtk
def test_a_connection_closed_before_associating_frees_its_slot_at_once(embedded_site):
    # pynetdicom's acceptor waited for the A-ASSOCIATE request for the ACSE timeout
    # (30 s) after the peer had gone, counted as an open association all that time.
    receiver = embedded_site.start_receiver(
        LIGHTBOX_DICOM_PROCESSES="1", LIGHTBOX_DICOM_MAX_ASSOCIATIONS="1"
    )
    for _ in range(3):
        bare_connection(embedded_site.port)

    wait_until(
        lambda: dcmtk("echoscu", embedded_site.port).returncode == 0,
        10,
        lambda: "the bare connections still hold the only association slot",
    )
    started = time.monotonic()
    receiver.popen.send_signal(signal.SIGTERM)
    assert receiver.popen.wait(timeout=20) == 0
    assert time.monotonic() - started < 10  # nothing left open for the grace period to wait on
    assert "DICOM receiver stopped (0 associations aborted)" in receiver.output()


def test_associations_are_spread_evenly_after_bare_connections(embedded_site):
    receiver = start(embedded_site)
    pids = [receiver.popen.pid, *members(receiver.popen.pid)]
    bare_connection(embedded_site.port)  # taken by one process or the other
    time.sleep(0.5)

    opened = [
        client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE) for _ in range(4)
    ]
    try:
        assert all(assoc.is_established for assoc in opened)
        held = connections(embedded_site.port, pids)
    finally:
        for assoc in opened:
            assoc.release()

    assert sorted(held.values()) == [2, 2], held
