"""The receiver's recording process (backend/archive/recording.py): what the receiver
acknowledged gets its ingest record even when that process dies, and when a stop signal
reaches the whole process group (Ctrl-C under `make run`)."""

import os
import signal
import time
from pathlib import Path

from backend.archive.ingest import RESTART_INTERVAL

from .peers import AE_TITLE, client, new_instance

RECORDS = "select id from archive_ingestrecord"


def recording_process(receiver) -> int:
    pid = receiver.popen.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in map(int, children):
        if b"backend.archive.recording" in Path(f"/proc/{child}/cmdline").read_bytes():
            return child
    raise AssertionError(f"no recording process among {children}")


def store(port: int, count: int) -> list[int]:
    assoc = client().associate("127.0.0.1", port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        return [assoc.send_c_store(new_instance()).Status for _ in range(count)]
    finally:
        assoc.release()


def test_a_dead_recording_process_is_started_again(embedded_site):
    receiver = embedded_site.start_receiver()
    assert store(embedded_site.port, 2) == [0x0000] * 2
    embedded_site.wait_rows(RECORDS, 2)
    first = recording_process(receiver)
    time.sleep(RESTART_INTERVAL)  # one that dies sooner is not restarted (below)

    os.kill(first, signal.SIGKILL)
    assert store(embedded_site.port, 3) == [0x0000] * 3

    embedded_site.wait_rows(RECORDS, 5)
    assert recording_process(receiver) != first
    assert "starting it again" in receiver.output()


def test_one_that_dies_at_once_is_not_started_again_for_every_file(embedded_site):
    receiver = embedded_site.start_receiver()
    os.kill(recording_process(receiver), signal.SIGKILL)

    assert store(embedded_site.port, 3) == [0x0000] * 3  # durable in the spool all the same

    assert receiver.output().count("the sweep records the file") == 3
    assert "starting it again" not in receiver.output()
    assert len(list((embedded_site.data_dir / "spool").glob("*.dcm"))) == 3


def test_a_stop_signal_to_the_group_still_records_what_was_received(embedded_site):
    receiver = embedded_site.start_receiver()
    assert store(embedded_site.port, 20) == [0x0000] * 20

    os.killpg(receiver.popen.pid, signal.SIGINT)  # as Ctrl-C in a terminal

    assert receiver.popen.wait(timeout=20) == 0
    assert len(embedded_site.rows(RECORDS)) == 20
