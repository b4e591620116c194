"""Sending work to Celery workers by task name.

The backend never imports worker/ (imports point one way); it sends tasks by name through a
producer-only Celery app configured from the same settings.
"""

from functools import lru_cache

from celery import Celery
from kombu.exceptions import ChannelError

INGEST_FILE = "lightbox.ingest_file"
INGEST_BATCH = "lightbox.ingest_batch"
DERIVE_SERIES = "lightbox.derive_series"
SWEEP = "lightbox.sweep"
REMOTE_JOB = "lightbox.remote_job"


@lru_cache(maxsize=1)
def producer() -> Celery:
    app = Celery("lightbox", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    # Results are never kept (no result backend): the disabled backend holds no state, so
    # one object can serve every sending thread, made once (warm_up) instead of per thread.
    app.conf.result_backend_thread_safe = True
    return app


def warm_up() -> None:
    """Do what the first send() would besides sending: make the producer app, import what
    Celery imports then, and connect to the broker (backend/warm.py)."""
    app = producer()
    app.backend  # noqa: B018  (properties that build and keep what send_task uses)
    app.amqp.send_task_message  # noqa: B018
    with app.producer_or_acquire() as task_producer:
        task_producer.connection.ensure_connection(max_retries=0)


def send(task_name: str, *args: object, countdown: float | None = None) -> None:
    producer().send_task(task_name, args=args, countdown=countdown)


def waiting_messages(queue_name: str = "celery") -> int:
    """Messages waiting in the broker queue (not counting those workers have prefetched)."""
    with producer().connection_for_write() as connection:
        channel = connection.default_channel
        try:
            return channel.queue_declare(queue=queue_name, passive=True).message_count
        except ChannelError:
            return 0  # never declared: nothing was ever sent
