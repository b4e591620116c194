"""Sending work to Celery workers by task name.

The backend never imports worker/ (imports point one way); it sends tasks by name through a
producer-only Celery app configured from the same settings.
"""

from functools import lru_cache

from celery import Celery

INGEST_FILE = "lightbox.ingest_file"
DERIVE_SERIES = "lightbox.derive_series"
SWEEP = "lightbox.sweep"


@lru_cache(maxsize=1)
def producer() -> Celery:
    app = Celery("lightbox", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    return app


def send(task_name: str, *args: object, countdown: float | None = None) -> None:
    producer().send_task(task_name, args=args, countdown=countdown)
