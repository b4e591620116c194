"""The Celery app that runs ingestion and derivation.

Configured from Django settings (CELERY_*): Redis when REDIS_URL is set, else kombu's
filesystem transport under the data dir. Each child process gets an address-space limit and
every task a time limit, so a hostile file costs one task, never the worker.
"""

import os
import resource

import django
from celery import Celery
from celery.signals import task_prerun, worker_init, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402

from backend import heap, warm  # noqa: E402

app = Celery("lightbox")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=4,
    # Derivations are sent with a short countdown; the default 1 s timer precision would
    # make them up to a second late.
    worker_timer_precision=0.05,
    task_time_limit=settings.INGEST_TASK_TIME_LIMIT,
    # The soft limit raises inside the task (clean failure, error noted); the hard limit
    # kills the child if the decoder does not return.
    task_soft_time_limit=max(int(settings.INGEST_TASK_TIME_LIMIT * 0.8), 1),
    task_ignore_result=True,
    worker_concurrency=settings.WORKER_CONCURRENCY,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    beat_schedule_filename=str(settings.DATA_DIR / "celerybeat-schedule"),
    beat_schedule={
        "sweep": {"task": "lightbox.sweep", "schedule": float(settings.INGEST_SWEEP_SECONDS)},
    },
)
app.autodiscover_tasks(["worker"], related_name="tasks", force=True)


@worker_init.connect
def lower_priority(**_kwargs) -> None:
    """Run the worker (and the pool processes it forks) at LIGHTBOX_WORKER_NICE, so that a
    sender waiting for its C-STORE acknowledgement is not kept waiting by indexing."""
    os.setpriority(os.PRIO_PROCESS, 0, niceness(settings.WORKER_NICE))


def niceness(wanted: int) -> int:
    """`wanted` within 0-19, never below the niceness the worker was started with (only
    root may raise a priority)."""
    return max(min(wanted, 19), os.getpriority(os.PRIO_PROCESS, 0), 0)


@worker_process_init.connect
def limit_memory(**_kwargs) -> None:
    # Beyond this, allocations fail with MemoryError (caught per file) instead of the
    # kernel's OOM killer taking the whole machine's workers down.
    limit = settings.INGEST_WORKER_MEMORY_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@worker_process_init.connect
def durable_commits(**_kwargs) -> None:
    """SQLite commits in pool processes wait for the disk (synchronous=FULL).

    The settings' synchronous=NORMAL makes a commit durable only at the next checkpoint:
    a power cut can roll it back. That is fine for the records the receiver writes (their
    spooled files stay until indexed), but a worker removes a spooled copy right after
    committing its outcome, and both the record and the outcome could then be lost with
    the copy gone. With FULL the commit's fsync of the write-ahead log comes first, and
    it covers the records written before it too. PostgreSQL commits are durable already.
    """
    connection_created.connect(_synchronous_full)


def _synchronous_full(sender, connection, **_kwargs) -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=FULL")


@worker_init.connect
def start_up_pool_processes(**_kwargs) -> None:
    """Have each pool process set up what its first task would need, then freeze it.

    Connected now, not at import: Celery's Django fixup closes the database connections
    a pool process starts with, in a worker_process_init receiver it connects during
    worker_init, before this runs (its own receiver was connected when the app was made).
    Receivers run in the order they were connected, so these run after it, and the
    connection warm_up opens is kept; durable_commits, connected at import, gives it its
    pragma."""
    worker_process_init.connect(warm_up)
    worker_process_init.connect(freeze_start_up)


def warm_up(**_kwargs) -> None:
    """Connect, and set up what indexing uses, now rather than in the first task
    (backend/warm.py)."""
    warm.indexer()


def freeze_start_up(**_kwargs) -> None:
    """What the pool process inherited, and warm_up made, is kept out of the garbage
    collector's walks."""
    heap.freeze_start_up()


@task_prerun.connect
def check_connections(**_kwargs) -> None:
    """Before each task, what Django does before each request: close a connection that
    failed or outlived CONN_MAX_AGE (settings.CELERY_DB_REUSE_MAX keeps the others)."""
    close_old_connections()


@worker_ready.connect
def recover_on_start(**_kwargs) -> None:
    from backend.archive.recovery import sweep

    sweep(stale_seconds=0)
