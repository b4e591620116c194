"""Real processes for integration tests: Celery workers, manage.py commands, the web server.

Tests that need PostgreSQL and Redis skip, saying why, unless DATABASE_URL and REDIS_URL are
set (`.ci/run` sets both). Workers then share the pytest-django test database, the test's
data dir and a Redis database of their own (LIGHTBOX_TEST_REDIS_URL, the next ones up for
further pytest-xdist workers; flushed before each test). Every wait is bounded; a failing
test shows the logs of the processes it started.
"""

import os
from urllib.parse import quote, urlsplit

import pytest

from .helpers import PROCESS_LOGS, WORKER_COMMAND, Process

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/14"
# Short limits so that the sweep recovers abandoned work within a test's patience: a claim
# is abandoned after the time limit + 10 s. The soft limit is the hard one minus 10 s
# (worker/celery.py), so 15 leaves 5 s per task (a slice takes 0.2 s, deriving 299 0.4 s).
WORKER_SETTINGS = {
    "LIGHTBOX_INGEST_TIME_LIMIT": "15",
    "LIGHTBOX_INGEST_STALE_SECONDS": "2",
    "LIGHTBOX_INGEST_SWEEP_SECONDS": "2",
    "LIGHTBOX_LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for log in item.stash.get(PROCESS_LOGS, []):
            if log.exists():
                text = log.read_text(errors="replace")
                report.sections.append((f"log of {log.name}", text[-30000:]))
    return report


@pytest.fixture
def processes(request, tmp_path):
    """Start processes with `processes.start(...)`; all are stopped when the test ends, and
    their logs are shown if it failed."""
    started: list[Process] = []
    logs = request.node.stash.setdefault(PROCESS_LOGS, [])

    class Starter:
        def start(self, name: str, args: list[str], env: dict[str, str]) -> Process:
            log = tmp_path / f"{name}-{len(started) + 1}.log"
            logs.append(log)
            process = Process(name, args, env, log)
            started.append(process)
            return process

    yield Starter()
    for process in reversed(started):
        process.stop()


# --- PostgreSQL + Redis ---------------------------------------------------------------


@pytest.fixture
def services():
    """Skip unless PostgreSQL and Redis are configured, as in CI (.ci/run)."""
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]
    if missing:
        pytest.skip(f"needs PostgreSQL and Redis: {' and '.join(missing)} not set (see .ci/run)")
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip(f"needs PostgreSQL, DATABASE_URL points at {connection.vendor}")


@pytest.fixture
def test_redis(services, settings):
    """A Redis database for this test only (flushed), used as broker by this process and by
    the workers it starts."""
    import redis

    from backend.archive import queue

    url = own_redis_url()
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except redis.ResponseError as error:  # e.g. past the server's last database
        pytest.fail(f"test Redis {url}: {error} (one database per xdist worker)")
    settings.REDIS_URL = url
    settings.CELERY_BROKER_URL = url
    queue.producer.cache_clear()
    yield client
    queue.producer().close()
    queue.producer.cache_clear()
    client.flushdb()
    client.close()


def own_redis_url() -> str:
    """LIGHTBOX_TEST_REDIS_URL; under pytest-xdist, worker gwN takes the database N above it
    (gw0 the one named, gw1 the next, ...), so that parallel workers never share a broker."""
    url = os.environ.get("LIGHTBOX_TEST_REDIS_URL") or DEFAULT_TEST_REDIS_URL
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker:
        return url
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0) + int(worker.removeprefix("gw"))
    return parts._replace(path=f"/{db}").geturl()


def database_url() -> str:
    """The database pytest-django created (test_...), as a URL a worker can use."""
    from django.db import connection

    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}@{host}{port}/{db['NAME']}"


@pytest.fixture
def start_worker(transactional_db, test_redis, data_dir, processes):
    """Start a real Celery worker on the test database, broker and data dir; returns it once
    it is ready (its start-up sweep has run). Extra arguments go to `celery worker`."""
    from django.conf import settings

    env = {
        **os.environ,
        **WORKER_SETTINGS,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "LIGHTBOX_DATA_DIR": str(data_dir),
    }

    def start(*extra: str) -> Process:
        worker = processes.start("worker", [*WORKER_COMMAND, "--loglevel=INFO", *extra], env)
        worker.wait_for_output(" ready.")
        return worker

    return start
