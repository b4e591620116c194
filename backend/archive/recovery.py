"""Finding work that a crash or a lost broker message left undone.

The broker only wakes workers; the spool, the IngestRecord table and the Series derivation
counters say what is unfinished. sweep() runs when a worker starts and periodically after.
"""

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError
from django.db.models import F
from django.utils import timezone

from . import queue
from .indexing import schedule_derivation
from .models import IngestRecord, Series
from .spool import get_spool

log = logging.getLogger(__name__)
State = IngestRecord.State


@dataclass
class SweepResult:
    adopted: int = 0  # spooled files that had no record (crash between spool and record)
    requeued: int = 0  # records pending or abandoned
    # spooled copies of finished records, half-written temporaries, files a crash cut short
    cleaned: int = 0
    series: int = 0  # series whose derivation was lost
    jobs: int = 0  # remote DICOM jobs whose message was lost


def sweep(stale_seconds: float | None = None) -> SweepResult:
    """Queue every unfinished piece of work again; tasks are idempotent, so repeats are safe."""
    stale = settings.INGEST_STALE_SECONDS if stale_seconds is None else stale_seconds
    result = SweepResult()
    _sweep_spool(stale, result)
    _requeue_records(stale, result)
    _reschedule_series(stale, result)
    result.cleaned += get_spool().clean_tmp()
    if not _broker_busy():
        from backend.nodes.jobs import requeue_lost

        result.jobs = requeue_lost()
    if result.adopted or result.requeued or result.series or result.jobs:
        log.info("sweep: %s", result)
    return result


def _sweep_spool(stale: float, result: SweepResult) -> None:
    spool = get_spool()
    for record_id in spool.waiting(older_than_seconds=max(stale, 5)):
        record = IngestRecord.objects.filter(pk=record_id).only("state").first()
        if record is None and spool.incomplete(record_id):
            log.warning(
                "sweep: removing %s, cut short by a crash before it was acknowledged", record_id
            )
            spool.remove(record_id)
            result.cleaned += 1
        elif record is None:
            _adopt(spool, record_id)
            result.adopted += 1
        elif record.is_final:
            spool.remove(record_id)
            result.cleaned += 1
    # Batch markers that a killed worker left, once none of their files is pending: the
    # broker did not deliver the batch again (its next delivery would have removed it).
    for path, _, ids in spool.batches():
        if not IngestRecord.objects.filter(pk__in=ids, state=State.PENDING).exists():
            path.unlink(missing_ok=True)
            result.cleaned += 1


def _adopt(spool, record_id) -> None:
    path = spool.path(record_id)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    try:
        IngestRecord.objects.create(
            id=record_id,
            source="recovered",
            source_detail="found in spool after restart",
            size=path.stat().st_size,
            sha256=digest.hexdigest(),
        )
    except IntegrityError:
        return  # its receiver recorded it meanwhile
    queue.send(queue.INGEST_FILE, str(record_id))


def _requeue_records(stale: float, result: SweepResult) -> None:
    """Queue pending records again, except those a worker began recently (their attempt
    marker, or their batch's, is younger than the task time limit): those are still being
    worked on.

    While the broker still holds messages, pending records are most likely among them:
    re-sending would only duplicate a backlog, so this waits until the queue drains.
    """
    if _broker_busy():
        return
    spool = get_spool()
    cutoff = timezone.now() - timedelta(seconds=stale)
    busy_since = time.time() - settings.INGEST_TASK_TIME_LIMIT - 10
    in_batches = {record_id: begun for _, begun, ids in spool.batches() for record_id in ids}
    waiting = IngestRecord.objects.filter(state=State.PENDING, received_at__lte=cutoff)
    for record_id in waiting.values_list("pk", flat=True).iterator(chunk_size=1000):
        started = max(spool.attempt_started(record_id) or 0, in_batches.get(record_id, 0))
        if started > busy_since:
            continue
        if record_id in in_batches:
            spool.count_at_least(record_id, 1)  # the attempt its batch made
        queue.send(queue.INGEST_FILE, str(record_id))
        result.requeued += 1


def _broker_busy() -> bool:
    try:
        return queue.waiting_messages() > 0
    except Exception:
        log.warning("cannot read the broker queue length; re-queueing anyway", exc_info=True)
        return False


def _reschedule_series(stale: float, result: SweepResult) -> None:
    cutoff = timezone.now() - timedelta(seconds=stale)
    lagging = Series.objects.filter(
        derived_version__lt=F("derive_requested"), updated_at__lte=cutoff
    )
    for series_id in lagging.values_list("pk", flat=True):
        # A scheduled flag whose task was lost would block scheduling forever: reset it.
        Series.objects.filter(pk=series_id).update(derive_scheduled=False)
        schedule_derivation(series_id, delay=0)
        result.series += 1
