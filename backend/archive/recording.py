"""python -m backend.archive.recording — the DICOM receiver's recording process
(ingest.RecordingProcess).

Says "ready" on stdout once set up, then reads one JSON line per file the receiver made
durable in the spool (id, size, source, detail, calling AE, urgent) from stdin and records
them in batches (ingest.BackgroundRecorder, which holds their indexing tasks for up to
LIGHTBOX_DICOM_INDEX_HOLD_MS while senders are still sending). The line "senders done"
(ingest.SENDERS_DONE) says the receiver has no association open: what is held goes then.
Stop signals are the receiver's to act on: this process ends when its stdin closes, after
recording everything it was given. A line it cannot read is logged and skipped (its file
is still in the spool, for the sweep).
"""

import json
import logging
import os
import signal
import sys
import uuid

import django

log = logging.getLogger("lightbox.ingest")


def main() -> int:
    # Ctrl-C reaches the whole process group: the receiver closes stdin once it has
    # finished its associations, and what they received must still be recorded.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    django.setup()
    from django.conf import settings

    from backend import heap, warm
    from backend.archive.ingest import SENDERS_DONE, BackgroundRecorder

    recorder = BackgroundRecorder(
        hold=settings.DICOM_INDEX_HOLD_MS / 1000, quiet=settings.DICOM_INDEX_QUIET_MS / 1000
    )
    warm.sender()
    heap.freeze_start_up()
    announce_ready()
    try:
        for line in sys.stdin.buffer:
            try:
                message = json.loads(line)
                if message == SENDERS_DONE:
                    recorder.senders_done()
                    continue
                record_id, size, source, detail, calling_ae, urgent = message
                recorder.enqueue(
                    uuid.UUID(record_id),
                    int(size),
                    source=str(source),
                    detail=str(detail),
                    calling_ae=str(calling_ae),
                    urgent=bool(urgent),
                )
            except (ValueError, TypeError):
                log.error("recording process: unreadable line %r", line[:200])
    finally:
        recorder.close(timeout=60)
    return 0


def announce_ready() -> None:
    """Tell the receiver this process is set up (RecordingProcess.wait_ready reads the line),
    then send anything else written to stdout to stderr: nobody reads that pipe any more."""
    try:
        sys.stdout.buffer.write(b"ready\n")
        sys.stdout.flush()
    except OSError:  # the receiver stopped waiting (and closed its end)
        pass
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
