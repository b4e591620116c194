"""The receiver's recording process (backend/archive/recording.py): what the receiver
acknowledged gets its ingest record even when that process dies, and when a stop signal
reaches the whole process group (Ctrl-C under `make run`)."""

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydicom.uid import generate_uid

from backend.archive.ingest import RESTART_INTERVAL, RecordingProcess

from ..integration.helpers import wait_until
from .peers import AE_TITLE, client, new_instance

RECORDS = "select id from archive_ingestrecord"
# The first receiver process and its recording process: no member process to take some
# of the associations (and have a recording process of its own).
ONE_PROCESS = {"LIGHTBOX_DICOM_PROCESSES": "1"}
# The senders count as paused after 0.5 s without a file, not 0.1 s: these tests send back
# to back, but a test machine running other tests beside them can stall a sender (or the
# recording process) for 0.1 s, and held tasks then rightly go out early.
QUIET = {"LIGHTBOX_DICOM_INDEX_QUIET_MS": "500"}


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
    receiver = embedded_site.start_receiver(**ONE_PROCESS)
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
    receiver = embedded_site.start_receiver(**ONE_PROCESS)
    os.kill(recording_process(receiver), signal.SIGKILL)

    assert store(embedded_site.port, 3) == [0x0000] * 3  # durable in the spool all the same

    assert receiver.output().count("the sweep records the file") == 3
    assert "starting it again" not in receiver.output()
    assert len(list((embedded_site.data_dir / "spool").glob("*.dcm"))) == 3


def test_a_stop_signal_to_the_group_still_records_what_was_received(embedded_site):
    receiver = embedded_site.start_receiver(**ONE_PROCESS)
    assert store(embedded_site.port, 20) == [0x0000] * 20

    os.killpg(receiver.popen.pid, signal.SIGINT)  # as Ctrl-C in a terminal

    assert receiver.popen.wait(timeout=20) == 0
    assert len(embedded_site.rows(RECORDS)) == 20


def queued(site) -> int:
    """Files queued for the workers: the ids in the embedded broker's waiting messages (no
    worker runs here to take them)."""
    for _ in range(50):
        try:
            total = 0
            for path in (site.data_dir / "broker" / "queue").glob("*.msg"):
                message = json.loads(path.read_bytes())
                args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
                total += len(args[0])
            return total
        except ValueError:  # a message being written: look again
            time.sleep(0.02)
    raise AssertionError("the broker's messages stay unreadable")


def test_tasks_held_while_files_keep_arriving_a_new_study_at_once(embedded_site):
    """LIGHTBOX_DICOM_INDEX_HOLD_MS (ingest.BackgroundRecorder): while files keep arriving
    they are recorded, but queued for the workers together when the sender pauses or the
    hold runs out; the first file of a study on an association is queued at once."""
    receiver = embedded_site.start_receiver(LIGHTBOX_DICOM_INDEX_HOLD_MS="1500", **QUIET)
    first_study = new_instance()
    first_study.StudyInstanceUID = generate_uid()
    assoc = client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE)
    assert assoc.is_established

    def send_for(seconds: float, study=first_study) -> int:
        sent, until = 0, time.monotonic() + seconds
        while time.monotonic() < until:
            ds = new_instance()
            ds.StudyInstanceUID = study.StudyInstanceUID
            assert assoc.send_c_store(ds).Status == 0x0000
            sent += 1  # back to back: well under QUIET apart
        return sent

    try:
        assert assoc.send_c_store(first_study).Status == 0x0000  # a new study: at once
        queued_soon(embedded_site, 1)

        held = send_for(0.8)  # less than the hold, never pausing
        assert len(embedded_site.rows(RECORDS)) > 1  # recorded as they come...
        assert queued(embedded_site) == 1  # ...but not queued yet

        second_study = new_instance()  # another study: it and what waits before it go now
        second_study.StudyInstanceUID = generate_uid()
        assert assoc.send_c_store(second_study).Status == 0x0000
        also_sent = send_for(0.5)
        # (with any that reached the recording process in the same moment)
        assert 1 + held + 1 <= queued(embedded_site) < 1 + held + 1 + also_sent

        also_sent += send_for(1.5)  # the hold runs out while the sender is still sending
        assert queued(embedded_site) > 1 + held + 1
    finally:
        assoc.release()

    queued_soon(embedded_site, 1 + held + 1 + also_sent)  # the sender paused
    embedded_site.wait_rows(RECORDS, 1 + held + 1 + also_sent)
    assert "Traceback" not in receiver.output()


def queued_soon(site, count: int) -> None:
    wait_until(lambda: queued(site) == count, 5, lambda: f"{queued(site)}")


def instances_of_one_study():
    """A maker of new instances, all of one new study."""
    study = generate_uid()

    def instance():
        ds = new_instance()
        ds.StudyInstanceUID = study
        return ds

    return instance


def two_associations(port: int) -> tuple:
    return tuple(client().associate("127.0.0.1", port, ae_title=AE_TITLE) for _ in range(2))


def test_a_study_sent_over_several_associations_is_new_once(embedded_site):
    """The first file of a study is queued at once once per receiver process, not once per
    association (handlers.RecentStudies): a second association sending the same study
    while the first is open leaves its files held like the rest."""
    embedded_site.start_receiver(LIGHTBOX_DICOM_INDEX_HOLD_MS="3000", **ONE_PROCESS, **QUIET)
    instance = instances_of_one_study()
    first, second = two_associations(embedded_site.port)
    try:
        assert first.is_established and second.is_established
        assert first.send_c_store(instance()).Status == 0x0000  # a new study: at once
        queued_soon(embedded_site, 1)
        sent, until = 0, time.monotonic() + 0.8
        while time.monotonic() < until:  # back to back, as in the test above
            assert second.send_c_store(instance()).Status == 0x0000
            sent += 1
        assert queued(embedded_site) == 1  # the second association's first file included
    finally:
        first.release()
        second.release()
    queued_soon(embedded_site, 1 + sent)


def test_held_tasks_go_when_the_last_association_ends(embedded_site):
    """The receiver tells its recording process when no association is left open
    (handlers.Services.senders_done): what it held goes then, not after the pause that
    LIGHTBOX_DICOM_INDEX_QUIET_MS sets (here 5 s), nor after the hold (10 s). An
    association still open keeps them held."""
    embedded_site.start_receiver(
        LIGHTBOX_DICOM_INDEX_HOLD_MS="10000", LIGHTBOX_DICOM_INDEX_QUIET_MS="5000", **ONE_PROCESS
    )
    instance = instances_of_one_study()
    first, second = two_associations(embedded_site.port)
    try:
        assert first.is_established and second.is_established
        assert first.send_c_store(instance()).Status == 0x0000  # a new study: at once
        queued_soon(embedded_site, 1)
        for _ in range(5):
            assert first.send_c_store(instance()).Status == 0x0000
        last_file = time.monotonic()
        embedded_site.wait_rows(RECORDS, 6)  # recorded...
        first.release()
        time.sleep(1)
        assert queued(embedded_site) == 1  # ...and held: the second association is open
        assert second.send_c_echo().Status == 0x0000
    finally:
        for assoc in (first, second):
            if assoc.is_established:
                assoc.release()
    queued_soon(embedded_site, 6)
    # Before the senders could count as paused (5 s without a file).
    assert time.monotonic() - last_file < 4.5


def test_the_recording_process_says_when_it_is_ready(monkeypatch, settings, tmp_path):
    settings.SETTINGS_MODULE = "backend.settings"
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(tmp_path))
    recorder = RecordingProcess()
    try:
        assert recorder.wait_ready(60)  # Django set up, the recorder thread started
    finally:
        recorder.close()
    assert recorder._process.returncode == 0


def started_as(monkeypatch, code: str) -> RecordingProcess:
    """A RecordingProcess whose child runs `code` instead."""

    def start(self):
        self._started = time.monotonic()
        return subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    monkeypatch.setattr(RecordingProcess, "_start", start)
    return RecordingProcess()


def test_waiting_for_a_recording_process_that_exits_ends_at_once(monkeypatch):
    recorder = started_as(monkeypatch, "raise SystemExit(1)")
    began = time.monotonic()
    assert not recorder.wait_ready(30)
    assert time.monotonic() - began < 10
    recorder.close()


def test_waiting_for_one_that_never_says_ready_ends_after_the_timeout(monkeypatch):
    recorder = started_as(monkeypatch, "import sys; sys.stdin.read()")
    began = time.monotonic()
    assert not recorder.wait_ready(0.5)
    assert time.monotonic() - began >= 0.5
    recorder.close()  # its stdin closes: it ends
    assert recorder._process.returncode == 0


def test_the_receiver_is_listening_once_its_recording_process_is_ready(embedded_site):
    receiver = embedded_site.start_receiver(**ONE_PROCESS)  # waits for "listening on"
    child = recording_process(receiver)
    # The child has set up and said so: its stdout now goes where its stderr does.
    assert os.readlink(f"/proc/{child}/fd/1") == os.readlink(f"/proc/{child}/fd/2")
    assert "was not ready" not in receiver.output()
