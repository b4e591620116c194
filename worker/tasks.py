"""Celery tasks: thin wrappers that take ids and call one service each."""

from celery import shared_task

from backend.archive import derive, indexing, recovery


@shared_task(name="lightbox.ingest_file")
def ingest_file(record_id: str) -> str | None:
    """Parse, validate, store, decode and index one spooled file (IngestRecord id)."""
    return indexing.index_received(record_id)


@shared_task(name="lightbox.ingest_batch")
def ingest_batch(record_ids: list[str]) -> dict[str, int]:
    """Index several spooled files of a bulk import; returns counts per outcome."""
    return indexing.index_batch(record_ids)


@shared_task(name="lightbox.derive_series")
def derive_series(series_id: int) -> bool:
    """Refresh a series' slice order, thumbnail and /metadata after arrivals."""
    return derive.derive_series(series_id)


@shared_task(name="lightbox.sweep")
def sweep() -> None:
    """Re-queue work that a crash or a lost message left unfinished."""
    recovery.sweep()
