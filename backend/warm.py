"""Set-up a long-running process does at start-up rather than on its first file.

Some of what the first file costs is paid once and reused by every later one: the
database connection or pool; the producer Celery app (queue.producer) with the modules Celery
imports on its first send and the broker connection; the JSON Schema validators of the
live events, with jsonschema and what it imports; Pillow's image plugins. On the machines
of docs/performance.md that was 30–100 ms of CPU in each recording process and worker
pool process, taken while a study arrived, from the processes receiving it.

Call before heap.freeze_start_up(), so what this makes stays out of the collector's walks
too. Nothing here is needed: a database or broker that is down now is logged and tried
again on first use, as before.
"""

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def sender() -> None:
    """What a process that records files and sends tasks needs: PostgreSQL's connection
    pool, which the process's threads share (the recording process records in a thread
    of its own), and the producer app with its broker connection."""
    from django.db import connection

    from backend.archive import queue

    pool = getattr(connection, "pool", None)  # PostgreSQL's: settings.DATABASES
    if pool is not None:
        _unless_down("database", lambda: pool.open(wait=False))  # retries in the background
    _unless_down("broker", queue.warm_up)


def indexer() -> None:
    """What indexing and deriving need besides, in a worker pool process, whose tasks run
    in the thread that calls this: its SQLite connection too."""
    from django.db import connection
    from PIL import Image

    from backend.live import events

    sender()
    if getattr(connection, "pool", None) is None:
        _unless_down("database", connection.ensure_connection)
    events.warm_up()
    Image.preinit()  # the plugins save() loads first: JPEG and PNG among them


def _unless_down(service: str, connect: Callable[[], object]) -> None:
    try:
        connect()
    except Exception as exc:
        log.warning("%s not reachable at start-up (%s); connecting on first use", service, exc)
