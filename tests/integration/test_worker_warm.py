"""Each worker pool process connects to the database and the broker once started, before
its first task (worker/celery.py, start_up_pool_processes; backend/warm.py), and keeps the
database connection Celery's Django fixup would otherwise close after it is opened."""

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .helpers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def peers(pid: int) -> set[int]:
    """The remote ports of the TCP connections process `pid` holds open (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] == "01":  # ESTABLISHED
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def test_pool_processes_are_connected_before_their_first_task(start_worker, settings):
    from django.db import connection

    database_port = int(connection.settings_dict.get("PORT") or 5432)
    broker_port = urlsplit(settings.REDIS_URL).port or 6379
    worker = start_worker()  # -c 2: no task is sent
    pool = children(worker.popen.pid)
    assert len(pool) == 2

    def connected() -> bool:  # the database pool connects in the background
        return all({database_port, broker_port} <= peers(pid) for pid in pool)

    wait_until(connected, 20, lambda: f"connections: {[peers(pid) for pid in pool]}")
