"""Set-up a long-running process does at start-up rather than on its first file.

Some of what the first file costs is paid once and reused by every later one: the
database connection; the producer Celery app (queue.producer) with the modules Celery
imports on its first send and the broker connection; the JSON Schema validators of the
live events, with jsonschema and what it imports; Pillow's image plugins. On the machines
of docs/performance.md that was 30–100 ms of CPU in each recording process and worker
pool process, taken while a study arrived, from the processes receiving it.

Call before heap.freeze_start_up(), so what this makes stays out of the collector's walks
too. Nothing here is needed: a database or broker that is down now is logged and tried
again on first use, as before.
"""

import logging

log = logging.getLogger(__name__)


def sender() -> None:
    """What a process that records files and sends tasks needs (the recording process)."""
    from django.db import connection

    from backend.archive import queue

    pool = getattr(connection, "pool", None)  # PostgreSQL's: settings.DATABASES
    try:
        if pool is not None:
            pool.open(wait=False)  # connects in the background, retrying if it must
        else:
            connection.ensure_connection()
    except Exception as exc:
        log.warning("database not reachable at start-up (%s); connecting on first use", exc)
    try:
        queue.warm_up()
    except Exception as exc:
        log.warning("broker not reachable at start-up (%s); connecting on first send", exc)


def indexer() -> None:
    """What indexing and deriving need besides (a worker pool process)."""
    from PIL import Image

    from backend.live import events

    sender()
    events.warm_up()
    Image.preinit()  # the plugins save() loads first: JPEG and PNG among them
