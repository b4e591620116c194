"""Each worker pool process connects to the database and the broker once started, before
its first task (worker/celery.py, start_up_pool_processes; backend/warm.py), and keeps the
database connection Celery's Django fixup would otherwise close after it is opened."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ..conftest import REPO
from .helpers import WORKER_COMMAND, wait_until

pytestmark = pytest.mark.integration


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


def open_files(pid: int) -> set[str]:
    files = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            files.add(os.readlink(fd))
        except OSError:
            continue
    return files


@pytest.mark.django_db(transaction=True)
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


def test_embedded_pool_processes_open_the_index_before_their_first_task(tmp_path, processes):
    data_dir = tmp_path / "data"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("LIGHTBOX_")
    }
    env["LIGHTBOX_DATA_DIR"] = str(data_dir)
    migrate = [sys.executable, "manage.py", "migrate", "-v0"]
    subprocess.run(migrate, cwd=REPO, env=env, check=True, timeout=120)
    worker = processes.start("worker", [*WORKER_COMMAND, "--loglevel=INFO"], env)
    worker.wait_for_output(" ready.")
    pool = children(worker.popen.pid)
    index = str(data_dir / "lightbox.sqlite3")

    assert len(pool) == 2
    wait_until(
        lambda: all(index in open_files(pid) for pid in pool),
        20,
        lambda: f"open files: {[open_files(pid) for pid in pool]}",
    )
