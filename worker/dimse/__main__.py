"""python -m worker.dimse — run the DICOM receiver until SIGTERM or SIGINT.

On a stop signal it closes the port at once, lets open associations finish for up to
LIGHTBOX_DICOM_SHUTDOWN_GRACE seconds, aborts what remains and exits 0.
"""

import logging
import os
import signal
import sys
import threading

import django


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    django.setup()
    from .server import run_until

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run_until(stop)
    except OSError as exc:  # the port is taken, the certificate unreadable, ...
        logging.getLogger("lightbox.dimse").error("cannot start the DICOM receiver: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
