"""A worker pool process's SQLite commits wait for the disk (worker/celery.py,
durable_commits): it removes a spooled copy right after committing the outcome, so that
commit must not be one a power cut can roll back (docs/operations.md, durability)."""

from django.db import connections
from django.db.backends.signals import connection_created

from worker.celery import _synchronous_full, durable_commits


def synchronous(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("PRAGMA synchronous")
        return cursor.fetchone()[0]


def test_a_pool_process_opens_its_sqlite_connections_with_synchronous_full(
    tmp_path, django_db_blocker
):
    alias = "commits_under_test"
    connections.settings[alias] = {
        **connections.settings["default"],
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(tmp_path / "index.sqlite3"),
        # as in settings.py
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
    }
    try:
        with django_db_blocker.unblock():
            assert synchronous(alias) == 1  # NORMAL: durable at the next checkpoint
            connections[alias].close()
            durable_commits()  # what each pool process runs once started
            assert synchronous(alias) == 2  # FULL: the log is fsynced at each commit
            connections[alias].close()
    finally:
        connection_created.disconnect(_synchronous_full)
        del connections[alias]
        del connections.settings[alias]
