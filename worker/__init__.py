"""Lightbox's Celery worker: `celery -A worker worker`."""

from .celery import app

__all__ = ["app"]
