"""python -m worker.dimse — run the DICOM receiver until SIGTERM or SIGINT.

On a stop signal it closes the port at once, lets open associations finish for up to
LIGHTBOX_DICOM_SHUTDOWN_GRACE seconds, aborts what remains and exits 0. It starts and stops
its member processes itself (members.py): `--member K --listening-fd N --load-fd M` is how
it starts them, not for use by hand.
"""

import argparse
import logging
import os
import signal
import sys
import threading

import django


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.dimse")
    parser.add_argument("--member", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--listening-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    django.setup()
    from .server import run_member, run_until

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.member:
            run_member(stop, args.member, args.listening_fd, args.load_fd)
        else:
            run_until(stop)
    except OSError as exc:  # the port is taken, the certificate unreadable, ...
        logging.getLogger("lightbox.dimse").error("cannot start the DICOM receiver: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
