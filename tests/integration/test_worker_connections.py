"""A Celery task does not pay for a new database connection: Celery's Django fixup would
close every connection (with PostgreSQL, the whole pool) before and after each task, unless
CELERY_DB_REUSE_MAX is set; worker/celery.py closes only broken or old ones."""

from types import SimpleNamespace

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from worker.celery import app, check_connections

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # SQLite's test database is in memory, and Django never closes such a connection.
    pytest.mark.skipif(
        connection.vendor == "sqlite", reason="needs PostgreSQL: DATABASE_URL not set"
    ),
]

TASK = SimpleNamespace(request=SimpleNamespace(is_eager=False))


def worker_fixup() -> DjangoWorkerFixup:
    """The fixup as `celery worker` installs it, with the prefork pool."""
    fixup = DjangoWorkerFixup(app)
    fixup.worker = SimpleNamespace(pool_cls="celery.concurrency.prefork:TaskPool")
    return fixup


def run_tasks(fixup: DjangoWorkerFixup, count: int) -> None:
    """What the worker does around each task, as far as connections go."""
    for _ in range(count):
        fixup.on_task_prerun(sender=TASK)
        check_connections()
        with connection.cursor() as cursor:
            cursor.execute("select 1")
        fixup.on_task_postrun(sender=TASK)


def kept() -> object:
    """What must survive between tasks: the pool, or else the connection itself."""
    pool = getattr(connection, "pool", None)
    return pool if pool is not None else connection.connection


def test_tasks_keep_their_database_connection():
    fixup = worker_fixup()
    connection.ensure_connection()
    before = kept()
    run_tasks(fixup, 5)
    assert kept() is before


def test_a_broken_connection_is_replaced_before_the_next_task():
    fixup = worker_fixup()
    run_tasks(fixup, 1)
    connection.errors_occurred = True
    real = connection.is_usable
    connection.is_usable = lambda: False  # as after a database restart
    try:
        check_connections()
    finally:
        connection.is_usable = real
    assert connection.connection is None  # closed: the next query opens a new one
    run_tasks(fixup, 1)
