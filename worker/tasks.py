"""Celery tasks: thin wrappers that take ids and call one service each."""

# Imported here, before the pool forks, rather than by the first event each child process
# publishes (backend.live.events validates events with it): that import takes a few tenths
# of a second, in the middle of the first burst of arrivals.
import jsonschema  # noqa: F401
from celery import shared_task

from backend.archive import derive, indexing, recovery
from backend.nodes import jobs

# A retrieve or send of a large study takes far longer than indexing one file.
REMOTE_JOB_TIME_LIMIT = 6 * 3600


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


@shared_task(
    name="lightbox.remote_job",
    time_limit=REMOTE_JOB_TIME_LIMIT,
    soft_time_limit=REMOTE_JOB_TIME_LIMIT - 60,
)
def remote_job(job_id: int) -> str:
    """Run one RemoteJob (C-ECHO, C-FIND, C-MOVE/C-GET or C-STORE to a remote node)."""
    return jobs.run(job_id)
