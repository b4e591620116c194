"""The real DICOM receiver (`python -m worker.dimse`) and Celery worker as child processes,
with real peers (dcmtk's echoscu/storescu/findscu, pynetdicom clients).

Each test gets its own data dir and port. The embedded variant (always) gives the processes
an environment without DATABASE_URL and REDIS_URL: SQLite in the test's data dir, migrated
by `manage.py migrate`, read here with the sqlite3 module. The PostgreSQL variant (when
DATABASE_URL and REDIS_URL are set) shares pytest-django's test database and a Redis
database of its own with the processes, as tests/integration does.
"""

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

# The PostgreSQL variant reuses tests/integration's fixtures (they skip unless configured).
from ..integration.conftest import services, test_redis  # noqa: F401
from ..integration.helpers import PROCESS_LOGS, WORKER_COMMAND, Process, free_port, wait_until

RECEIVER_COMMAND = [sys.executable, "-m", "worker.dimse"]
AE_TITLE = "LIGHTBOX"
needs_dcmtk = pytest.mark.skipif(
    not shutil.which("storescu"), reason="dcmtk (echoscu, storescu, findscu) is not installed"
)


def pytest_collection_modifyitems(items):
    """Mark the PostgreSQL variants as transactional database tests. pytest-django sets up
    only the test databases that collected tests ask for by marker or fixture name, and the
    `site` fixture asks through getfixturevalue: run alone, these tests would otherwise
    find no test database and use DATABASE_URL's own."""
    for item in items:
        params = getattr(item, "callspec", None) and item.callspec.params
        if "postgres_site" in item.fixturenames or (params and params.get("site") == "postgres"):
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for log in item.stash.get(PROCESS_LOGS, []):
            if log.exists():
                report.sections.append((f"log of {log.name}", log.read_text()[-20000:]))
    return report


class Site:
    """One installation: a data dir, the environment of its processes, and its database."""

    def __init__(self, root: Path, env: dict[str, str], logs: list[Path]):
        self.root = root
        self.data_dir = root / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.env = {**env, "LIGHTBOX_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"}
        self.logs = logs
        self.started: list[Process] = []
        self.port = 0

    # --- processes -----------------------------------------------------------------------

    def start(self, name: str, args: list[str], **env: str) -> Process:
        log = self.root / f"{name}-{len(self.started) + 1}.log"
        self.logs.append(log)
        process = Process(name, args, {**self.env, **env}, log)
        self.started.append(process)
        return process

    def start_receiver(self, **env: str) -> Process:
        """The receiver on a free port of 127.0.0.1, once it listens."""
        self.port = free_port()
        receiver = self.start(
            "receiver",
            RECEIVER_COMMAND,
            LIGHTBOX_DICOM_HOST="127.0.0.1",
            LIGHTBOX_DICOM_PORT=str(self.port),
            LIGHTBOX_AE_TITLE=AE_TITLE,
            **env,
        )
        receiver.wait_for_output("listening on", timeout=20)
        return receiver

    def start_worker(self) -> Process:
        worker = self.start("worker", [*WORKER_COMMAND, "--loglevel=INFO"])
        worker.wait_for_output(" ready.")
        return worker

    def stop_all(self) -> None:
        for process in reversed(self.started):
            # Workers are killed: nothing of theirs is checked after the test, and a warm
            # shutdown costs seconds.
            process.kill() if process.name == "worker" else process.stop()

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    # --- database ------------------------------------------------------------------------

    def rows(self, sql: str) -> list[tuple]:
        raise NotImplementedError

    def wait_rows(self, sql: str, count: int, timeout: float = 30) -> list[tuple]:
        def ready() -> list[tuple] | None:
            rows = self.rows(sql)
            return rows if len(rows) == count else None

        return wait_until(ready, timeout, lambda: f"{sql} gave {self.rows(sql)}, not {count} rows")

    def add_node(self, ae_title: str, host: str, *flags: str) -> None:
        result = self.manage("dicomnode", "add", ae_title, host, "104", *flags)
        assert result.returncode == 0, result.stderr


class EmbeddedSite(Site):
    def rows(self, sql: str) -> list[tuple]:
        path = self.data_dir / "lightbox.sqlite3"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            return db.execute(sql).fetchall()


class PostgresSite(Site):
    def rows(self, sql: str) -> list[tuple]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()

    def add_node(self, ae_title: str, host: str, *flags: str) -> None:
        from django.core.management import call_command

        call_command("dicomnode", "add", ae_title, host, "104", *flags)


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("LIGHTBOX_")
    }


@pytest.fixture
def embedded_site(request, tmp_path):
    site = EmbeddedSite(tmp_path, _clean_env(), request.node.stash.setdefault(PROCESS_LOGS, []))
    result = site.manage("migrate", "--noinput")
    assert result.returncode == 0, result.stderr
    yield site
    site.stop_all()


@pytest.fixture
def postgres_site(request, tmp_path, test_redis, transactional_db, data_dir):  # noqa: F811
    from django.conf import settings

    from ..integration.conftest import database_url

    env = {**_clean_env(), "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL}
    site = PostgresSite(tmp_path, env, request.node.stash.setdefault(PROCESS_LOGS, []))
    site.data_dir = data_dir
    site.env["LIGHTBOX_DATA_DIR"] = str(data_dir)
    yield site
    site.stop_all()


@pytest.fixture(params=["embedded", "postgres"])
def site(request):
    """Both variants: embedded always, PostgreSQL + Redis when configured."""
    return request.getfixturevalue(f"{request.param}_site")
