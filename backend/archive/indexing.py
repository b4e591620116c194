"""Indexing a received file, run in a Celery worker: parse ▸ validate ▸ store ▸ derive frames
▸ index ▸ event.

Each step is safe to repeat. A record is claimed with a conditional update, the original is
content-addressed (objects/<sha256>), the index is upserted by SOPInstanceUID, and the
spooled copy is removed only after the outcome is committed. A worker killed at any point
leaves the record claimable again by the sweep, and the rerun does only what is missing.

Policy for a different file under a SOPInstanceUID we already hold: the newest file wins
(a resend after a correction at the modality is the usual cause); the replaced file stays
in the store and its IngestRecord keeps pointing at it.
"""

import functools
import gc
import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, Field
from django.utils import timezone

from backend.imaging.dicomfile import InvalidDicom, Limits, ParsedFile, read_dicom
from backend.imaging.pixels import PixelDataError, Pixels, decode_pixels

from . import background, derive, notify, queue
from .attributes import Extracted, extract
from .dicomjson import metadata_json
from .models import IngestRecord, Instance, Patient, Series, Study, StudySource
from .spool import get_spool
from .storage import StorageError, get_storage, sync_dirs

log = logging.getLogger(__name__)
State = IngestRecord.State
NO_PIXEL_DATA = "no pixel data"  # the reason an instance without pixels is not viewable


def limits() -> Limits:
    return Limits(max_pixel_bytes=settings.INGEST_MAX_PIXEL_BYTES)


def _cycle_collector_paused(function):
    """Run `function` with Python's cycle collector off (as it was before, after).

    Indexing a file makes thousands of objects (a header's elements, its JSON, its
    attributes) that live until the file is committed; the collector, triggered every 700
    allocations, went through them again and again. Without it, parsing a CT slice and
    making its JSON and attributes took 4-8 % less CPU (docs/performance.md). What
    indexing frees it frees by reference counting; cycles it leaves wait for the next
    collection, once the collector is on again."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        if not gc.isenabled():
            return function(*args, **kwargs)
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            gc.enable()

    return run


@_cycle_collector_paused
def index_received(record_id: uuid.UUID | str) -> str | None:
    """Index one spooled file; returns its final state, or None if it was already done.

    No claim is written before the work: the final update is conditional on the record still
    being pending, so when two workers get the same record (a duplicate message, a sweep)
    one commits and the other's transaction rolls back. Attempts are counted beside the
    spooled file, so a file that keeps killing workers is quarantined after
    INGEST_MAX_ATTEMPTS.
    """
    record = IngestRecord.objects.filter(pk=uuid.UUID(str(record_id))).first()
    if record is None or record.is_final:
        return None
    try:
        prepared = _prepare(record)
        if not isinstance(prepared, Prepared):
            return prepared
        state = _commit_index(prepared)
    except _AlreadyFinished:
        return None
    except Exception as exc:
        get_spool().note_error(record.id, f"{type(exc).__name__}: {exc}")
        raise
    get_spool().remove(record.id)
    derive_if_done([prepared.series_id])
    return state


@_cycle_collector_paused
def index_batch(record_ids: list[str]) -> dict[str, int]:
    """Index several spooled files (a bulk import) with one transaction for the new ones.

    Same steps and outcomes as index_received, but new instances are inserted together
    and the counts of their series and study updated once, which is what makes bulk
    imports fast. Anything unusual (a replacement, a repeated UID in the batch, a race with
    another worker) falls back to the one-file path. A file whose preparation fails is
    left pending with its error noted; the sweep retries it.

    The batch's attempt is counted by one marker (Spool.begin_batch), there until the
    batch ends. A batch delivered again with its marker there was cut short by its
    worker's death (a SystemExit counts as one): each of its files goes alone.
    """
    ids = [uuid.UUID(str(i)) for i in record_ids]
    spool = get_spool()
    if not spool.begin_batch(ids):
        _retry_alone(ids)
        spool.end_batch(ids)
        return {}
    try:
        outcomes, series_ids = _index_batch(ids)
    except Exception:
        spool.end_batch(ids)  # failed, not killed: the files' errors are noted
        raise
    spool.end_batch(ids)
    derive_if_done(series_ids)
    return outcomes


def _index_batch(ids: list[uuid.UUID]) -> tuple[dict[str, int], list[int | None]]:
    """The outcomes, and the series the batch added to."""
    records = IngestRecord.objects.in_bulk(ids)
    outcomes: Counter[str] = Counter()
    opened: list[tuple[IngestRecord, Path, ParsedFile]] = []
    for record_id in ids:
        record = records.get(record_id)
        if record is None or record.is_final:
            continue
        result = _attempt(record, partial(_open, in_batch=True))
        if isinstance(result, tuple):
            opened.append((record, *result))
        elif result is _TRIED_BEFORE:
            _index_alone(record)
        elif result is not None:
            outcomes[result] += 1
    # Which of these SOP Instance UIDs the archive holds already: one query for the batch.
    known = _existing_instances(str(parsed.dataset.SOPInstanceUID) for _, _, parsed in opened)
    ready: list[Prepared] = []
    every: list[Prepared] = []
    for record, path, parsed in opened:
        uid = str(parsed.dataset.SOPInstanceUID)
        if any(p.extracted.instance["sop_instance_uid"] == uid for p in ready):
            # An earlier file of this batch has the same SOP Instance UID: commit what is
            # ready first, so this one is compared with what it follows.
            outcomes.update(_commit_prepared(ready))
            ready = []
            known.pop(uid, None)
        step = partial(_prepare_parsed, path=path, parsed=parsed, existing=known.get(uid, _UNKNOWN))
        prepared = _attempt(record, step)
        if isinstance(prepared, Prepared):
            ready.append(prepared)
            every.append(prepared)
        elif prepared is not None:
            outcomes[prepared] += 1
    outcomes.update(_commit_prepared(ready))
    return dict(outcomes), [p.series_id for p in every]


def _retry_alone(ids: list[uuid.UUID]) -> None:
    """A batch that its worker did not finish: each file still pending goes alone, with
    the batch's attempt counted."""
    records = IngestRecord.objects.in_bulk(ids)
    for record_id in ids:
        record = records.get(record_id)
        if record is not None and not record.is_final:
            get_spool().count_at_least(record.id, 1)
            _index_alone(record)


def _index_alone(record: IngestRecord) -> None:
    """A file of a batch that was tried before: index it in a task of its own.

    A batch that a worker did not finish (killed by a hostile file, or out of time) comes
    back whole, and every file in it had its attempt counted: retried together, the
    files beside the one that kills the worker would reach LIGHTBOX_INGEST_MAX_ATTEMPTS
    with it and be quarantined too. Alone, each is counted for what it does itself."""
    try:
        queue.send(queue.INGEST_FILE, str(record.id))
    except Exception:
        # Still pending with its file in the spool: the sweep queues it.
        log.exception("could not queue %s on its own; the sweep will", record.id)


def _attempt(record: IngestRecord, step):
    """step(record); None if another worker finished the record or the step failed (the
    error is noted beside the spooled file and the sweep retries it)."""
    try:
        return step(record)
    except _AlreadyFinished:
        return None
    except Exception as exc:
        get_spool().note_error(record.id, f"{type(exc).__name__}: {exc}", record.attempts)
        log.exception("indexing %s failed; it will be retried", record.id)
        return None


def _existing_instances(uids: Iterable[str]) -> dict[str, Instance | None]:
    """uid -> the Instance holding it, or None, for each of `uids`."""
    wanted = set(uids)
    found: dict[str, Instance | None] = dict.fromkeys(wanted)
    fields = ("pk", "sop_instance_uid", "sha256", "object_key", "file_size")
    for instance in Instance.objects.filter(sop_instance_uid__in=wanted).only(*fields):
        found[instance.sop_instance_uid] = instance
    return found


class _AlreadyFinished(Exception):
    """Another worker committed this record's outcome first."""


@dataclass
class Prepared:
    """A file parsed, stored and decoded, ready to be indexed."""

    record: IngestRecord
    extracted: Extracted
    frames: "FrameInfo"
    metadata: str
    object_key: str
    state: str  # STORED (a new SOP Instance UID) or REPLACED
    # The folder of the object's new link until it is fsynced (_make_durable); the whole
    # batch's links are made durable together, before any outcome is committed.
    unsynced_dir: Path | None = None
    series_id: int | None = None  # once committed by this worker


def _prepare(record: IngestRecord) -> "Prepared | str":
    """Everything but the index: returns a Prepared, or the final state it already reached
    (quarantined, duplicate)."""
    opened = _open(record)
    if isinstance(opened, str):
        return opened
    return _prepare_parsed(record, *opened)


_TRIED_BEFORE = "tried before"  # _open in a batch: a file whose attempts were counted before


def _open(record: IngestRecord, in_batch: bool = False) -> "tuple[Path, ParsedFile] | str":
    """Count an attempt and parse the spooled file; or the final state it reached
    (quarantined: gone, unreadable, or too many attempts). `in_batch`: the batch's marker
    counts the attempt, and a file with a marker of its own, tried before, is not opened
    but _TRIED_BEFORE returned (see _index_alone)."""
    spool = get_spool()
    path = spool.path(record.id)
    if not path.exists() and not _restore_from_store(record, path):
        return _finish_without_file(record)
    if in_batch:
        if spool.attempted(record.id):
            return _TRIED_BEFORE
        attempt = 1
    else:
        attempt = spool.begin_attempt(record.id)
    record.attempts = attempt
    if attempt > settings.INGEST_MAX_ATTEMPTS:
        cause = spool.last_error(record.id) or "the worker was killed or ran out of time"
        reason = f"gave up after {attempt - 1} attempts: {cause}"
        return quarantine(record, path, reason, attempts=attempt - 1)
    try:
        parsed = read_dicom(path, limits())
    except InvalidDicom as exc:
        return quarantine(record, path, str(exc), attempts=attempt)
    return path, parsed


def quarantine(record: IngestRecord, path, reason: str, **fields) -> str:
    """Keep an unusable file aside with the reason; admins list these records."""
    key = f"quarantine/{record.sha256}.dcm"
    get_storage().adopt(key, path)
    log.warning("quarantined %s (%s): %s", record.id, record.source_detail, reason)
    _finish(record, State.QUARANTINED, reason=reason, object_key=key, **fields)
    get_spool().remove(record.id)
    return State.QUARANTINED


def _restore_from_store(record: IngestRecord, path: Path) -> bool:
    """Put a pending record's file back in the spool from the store, if it is there.

    The object's link is durable before the outcome's commit, and the spooled copy is
    removed after it. A database that lost that commit (restored from a backup taken
    while the record was pending, or SQLite before its workers' commits waited for the
    disk: worker/celery.py) has the record pending and the file only in the store:
    indexing it again from there loses nothing. Content-addressed: the object under the
    record's checksum is its file."""
    try:
        stored = get_storage().path(f"objects/{record.sha256}")
        os.link(stored, path)
    except FileExistsError:
        return True
    except (StorageError, OSError):
        return False
    log.warning("%s: its spooled copy was gone; indexing it again from the store", record.id)
    return True


def _finish_without_file(record: IngestRecord) -> str:
    reason = "the spooled file disappeared before it was indexed"
    _finish(record, State.QUARANTINED, reason=reason)
    log.error("%s: %s", record.id, reason)
    return State.QUARANTINED


def _finish(record: IngestRecord, state: str, **fields) -> None:
    """Record the outcome, unless another worker already did (then raise)."""
    updated = IngestRecord.objects.filter(pk=record.pk, state=State.PENDING).update(
        state=state, finished_at=timezone.now(), **fields
    )
    if not updated:
        raise _AlreadyFinished


@dataclass
class FrameInfo:
    viewable: bool
    not_viewable_reason: str = ""
    frames_key: str = ""
    frames_offset: int | None = None
    frame_dtype: str = ""
    frame_photometric: str = ""
    frame_samples: int | None = None
    pixel_min: float | None = None
    pixel_max: float | None = None


_UNKNOWN = object()  # not looked up yet


def _prepare_parsed(
    record: IngestRecord, path: Path, parsed: ParsedFile, existing: Any = _UNKNOWN
) -> "Prepared | str":
    """`existing`: the Instance already holding this SOP Instance UID, or None, when the
    caller looked it up already."""
    ds = parsed.dataset
    sop_instance_uid = str(ds.SOPInstanceUID)
    if existing is _UNKNOWN:
        existing = Instance.objects.filter(sop_instance_uid=sop_instance_uid).first()
    if existing is not None and existing.sha256 == record.sha256:
        _finish(
            record,
            State.DUPLICATE,
            instance=existing,
            object_key=existing.object_key,
            sop_instance_uid=sop_instance_uid,
            study_instance_uid=str(ds.StudyInstanceUID),
            attempts=record.attempts,
        )
        get_spool().remove(record.id)
        return State.DUPLICATE

    object_key = f"objects/{record.sha256}"
    unsynced_dir = get_storage().adopt(object_key, path, sync=False)
    frames = derive_frames(parsed, path, object_key, record.sha256)
    extracted = extract(ds)
    extracted.instance["transfer_syntax_uid"] = parsed.transfer_syntax_uid
    metadata, dropped = metadata_json(ds, parsed)
    extracted.warnings[:0] = parsed.warnings + dropped
    return Prepared(
        record=record,
        extracted=extracted,
        frames=frames,
        metadata=metadata,
        object_key=object_key,
        state=State.REPLACED if existing is not None else State.STORED,
        unsynced_dir=unsynced_dir,
    )


def derive_frames(parsed: ParsedFile, path, object_key: str, sha256: str) -> FrameInfo:
    """Decode once, so that serving a frame later is reading bytes."""
    if not parsed.has_pixel_data:
        return FrameInfo(viewable=False, not_viewable_reason=NO_PIXEL_DATA)
    try:
        pixels = decode_pixels(parsed, path, limits())
    except PixelDataError as exc:
        return FrameInfo(viewable=False, not_viewable_reason=str(exc))
    if pixels.offset is not None:
        frames_key, offset = object_key, pixels.offset
    else:
        frames_key, offset = f"frames/{sha256}.raw", 0
        assert pixels.array is not None  # decode_pixels returns an offset or an array
        get_storage().create(frames_key, [pixels.array.data.cast("B")])
    return _frame_info(pixels, frames_key, offset)


def _frame_info(pixels: Pixels, frames_key: str, offset: int) -> FrameInfo:
    layout = pixels.layout
    return FrameInfo(
        viewable=True,
        frames_key=frames_key,
        frames_offset=offset,
        frame_dtype=layout.dtype,
        frame_photometric=layout.photometric,
        frame_samples=layout.samples,
        pixel_min=float(pixels.min_value),
        pixel_max=float(pixels.max_value),
    )


# Studies and series by UID, per worker process: a burst of one series then costs no
# look-ups. A stale entry (a row deleted meanwhile) is caught by the count updates or a
# foreign key error, and the transaction is retried with an empty cache.
_parents: dict[str, Study | Series] = {}
_PARENTS_MAX = 512
_sources_noted: set[tuple] = set()  # (study pk, source, sender) this process inserted


class _StaleParent(Exception):
    pass


def _make_durable(batch: list[Prepared]) -> None:
    """The objects' links must survive a crash before their records say STORED: the spool
    copy is removed after the commit, and the sweep deletes spool copies of finished
    records."""
    sync_dirs(p.unsynced_dir for p in batch)
    for prepared in batch:
        prepared.unsynced_dir = None


def _make_durable_meanwhile(batch: list[Prepared]) -> Callable[[], None]:
    """_make_durable in a thread; returns the wait for it, which the batch's transaction
    calls last, before its commit. The folders' fsyncs wait for the disk (some 9 ms for a
    task of 68 files, each in a folder of its own), the statements for the database: this
    way the two waits overlap."""
    future = background.thread("sync").submit(sync_dirs, [p.unsynced_dir for p in batch])

    def wait() -> None:
        future.result()
        for prepared in batch:
            prepared.unsynced_dir = None

    return wait


def _commit_index(prepared: Prepared) -> str:
    _make_durable([prepared])
    try:
        return _commit_once(prepared, existing_checked=True)
    except (_StaleParent, IntegrityError):
        # A cached parent vanished, or another worker inserted the same instance first.
        _parents.clear()
        return _commit_once(prepared, existing_checked=False)


def _commit_once(prepared: Prepared, existing_checked: bool) -> str:
    record, extracted, state = prepared.record, prepared.extracted, prepared.state
    with transaction.atomic():
        study, study_created = _upsert_study(extracted.study, extracted.patient)
        series, series_created = _upsert_series(extracted.series, study)
        instance, created, size_delta = _upsert_instance(
            prepared, series, maybe_exists=state == State.REPLACED or not existing_checked
        )
        _count(study, series, series_created, int(created), size_delta)
        final = State.STORED if created else State.REPLACED
        _finish(
            record,
            final,
            instance=instance,
            object_key=prepared.object_key,
            sop_instance_uid=instance.sop_instance_uid,
            study_instance_uid=study.study_instance_uid,
            attempts=record.attempts,
        )
        note_sources([(study, record)])
        if study_created or series_created:
            notify.study_changed(study, series, "created" if study_created else "series")
        schedule_derivation(series.pk)
    prepared.series_id = series.pk
    return final


def _commit_prepared(ready: list[Prepared]) -> list[str]:
    """Commit a batch: new instances together, replacements one by one. (index_batch
    never puts two files with the same SOP Instance UID in one batch.)"""
    bulk = [p for p in ready if p.state == State.STORED]
    single = [p for p in ready if p.state != State.STORED]
    states: list[str] = []
    if bulk:
        try:
            states += _commit_bulk(bulk, _make_durable_meanwhile(bulk))
        except (_StaleParent, IntegrityError):
            _parents.clear()
            single = bulk + single
    for prepared in single:
        try:
            states.append(_commit_index(prepared))
        except _AlreadyFinished:
            continue
        get_spool().remove(prepared.record.id)
    return states


def _commit_bulk(batch: list[Prepared], durable: Callable[[], None]) -> list[str]:
    """`durable()` returns once the batch's objects are durable (_make_durable_meanwhile);
    a replacement or a fallback to one file at a time (_commit_index) makes its own."""
    with transaction.atomic():
        pending = set(
            IngestRecord.objects.select_for_update()
            .filter(pk__in=[p.record.pk for p in batch], state=State.PENDING)
            .values_list("pk", flat=True)
        )
        batch = [p for p in batch if p.record.pk in pending]
        groups: dict[int, dict] = {}
        rows, series_ids = [], []
        for prepared in batch:
            study, study_created = _upsert_study(
                prepared.extracted.study, prepared.extracted.patient
            )
            series, series_created = _upsert_series(prepared.extracted.series, study)
            group = groups.setdefault(
                series.pk, {"study": study, "series": series, "n": 0, "size": 0}
            )
            group["created"] = (
                group.get("created")
                or ("created" if study_created else None)
                or ("series" if series_created else None)
            )
            group["n"] += 1
            group["size"] += prepared.record.size
            series_ids.append(series.pk)
            rows.append(_instance_fields(prepared, series))
        instance_ids = _insert_instances(rows)
        _finish_bulk(batch, instance_ids)
        note_sources((groups[i]["study"], p.record) for p, i in zip(batch, series_ids, strict=True))
        durable()  # before the commit that says STORED
        # Last, the updates that lock the study's and the series' rows: another task of the
        # same series waits for those locks until this commit, and no longer.
        for group in groups.values():
            created = group.get("created")
            _count(group["study"], group["series"], bool(created), group["n"], group["size"])
            if created:
                notify.study_changed(group["study"], group["series"], created)
            schedule_derivation(group["series"].pk)
    for prepared, series_id in zip(batch, series_ids, strict=True):
        prepared.series_id = series_id
        get_spool().remove(prepared.record.id)
    return [State.STORED] * len(batch)


def _finish_bulk(batch: list[Prepared], instance_ids: list[int]) -> None:
    now = timezone.now()
    for prepared, instance_id in zip(batch, instance_ids, strict=True):
        record = prepared.record
        record.state, record.finished_at, record.instance_id = State.STORED, now, instance_id
        record.object_key = prepared.object_key
        record.sop_instance_uid = prepared.extracted.instance["sop_instance_uid"]
        record.study_instance_uid = prepared.extracted.study["study_instance_uid"]
    _save_outcomes([p.record for p in batch])


# Every column of an instance but its id, in one order: _insert_instances binds each row's
# values as the ORM would, with a statement made once per row count. bulk_create built a
# model object per row and compiled its statement each time (docs/performance.md).
_INSERT_FIELDS = [f for f in Instance._meta.concrete_fields if not f.primary_key]
_INSERT_COLUMNS = [cast(str, f.column) for f in _INSERT_FIELDS]
_INSTANCE_PK = cast(str, cast(Field, Instance._meta.pk).column)
_STAMPED = {
    f for f in _INSERT_FIELDS if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
}
_INSERT_SQL: dict[int, str] = {}  # rows -> statement (SQLite; PostgreSQL gets COPY)
_INSERT_ROWS = 64  # at most per statement: 64 x 45 values, far below SQLite's limit


def _plain_type(field: Field) -> type | None:
    """The Python type whose values (and None) the field's get_db_prep_save returns as
    they are, on either database: str for text, int, float and bool; None for the others
    (dates, JSON, relations), which are always converted."""
    if isinstance(field, (models.CharField, models.TextField)):
        return str
    if isinstance(field, models.IntegerField):
        return int
    if isinstance(field, models.FloatField):
        return float
    if isinstance(field, models.BooleanField):
        return bool
    return None


# Per column: (field, its name, whether it is stamped, its plain type). Binding a plain
# value as it is skips 3,000 get_db_prep_save calls for a task of 68 CT slices.
_INSERT_PLAN = [(f, f.name, f in _STAMPED, _plain_type(f)) for f in _INSERT_FIELDS]


def _insert_instances(rows: list[dict]) -> list[int]:
    """INSERT new instances (_instance_fields dicts, without unknown keys); returns their
    ids, in order."""
    postgresql = connection.vendor == "postgresql"
    if len(rows) > _INSERT_ROWS and not postgresql:  # COPY has no such limit
        return _insert_instances(rows[:_INSERT_ROWS]) + _insert_instances(rows[_INSERT_ROWS:])
    now = timezone.now()
    params: list = []
    for row in rows:
        for field, name, stamped, plain in _INSERT_PLAN:
            if stamped:  # what the field's pre_save would set
                value = now
            elif name in row:
                value = row[name]
                if plain is not None and (value is None or type(value) is plain):
                    params.append(value)
                    continue
                if field.is_relation:
                    value = value.pk
            else:
                value = field.get_default()
            params.append(field.get_db_prep_save(value, connection))
    if postgresql:
        return _copy_instances(params, len(rows))
    sql = _INSERT_SQL.get(len(rows))
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(map(quote, _INSERT_COLUMNS))
        values = ", ".join(["(" + ", ".join(["%s"] * len(_INSERT_FIELDS)) + ")"] * len(rows))
        # Names from the model's metadata, values bound: nothing from a file is in the text.
        table, pk = quote(Instance._meta.db_table), quote(_INSTANCE_PK)
        sql = f"INSERT INTO {table} ({columns}) VALUES {values} RETURNING {pk}"  # noqa: S608
        _INSERT_SQL[len(rows)] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _copy_instances(params: list, count: int) -> list[int]:
    """PostgreSQL: the rows' ids from the sequence, then the rows by COPY. As one INSERT,
    a task's 16 CT instances were some 80 kB of SQL for the server to parse, their values
    quoted into it by psycopg in Python."""
    table = connection.ops.quote_name(Instance._meta.db_table)
    width = len(_INSERT_FIELDS)
    columns = ", ".join(map(connection.ops.quote_name, [_INSTANCE_PK, *_INSERT_COLUMNS]))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [Instance._meta.db_table, _INSTANCE_PK, count],
        )
        ids = [row[0] for row in cursor.fetchall()]
        # Django's cursor has no COPY: psycopg's, with Django's error classes
        # (IntegrityError makes _commit_prepared fall back to one file at a time).
        with connection.wrap_database_errors:
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for i, instance_id in enumerate(ids):
                    copy.write_row([instance_id, *params[i * width : (i + 1) * width]])
    return ids


# One prepared UPDATE run for every record: an update() per record compiled this same SQL
# each time, and bulk_update's CASE WHEN per field and row costs more still.
_SAVE_OUTCOME = (
    "UPDATE archive_ingestrecord SET state = %s, finished_at = %s, instance_id = %s,"
    " object_key = %s, sop_instance_uid = %s, study_instance_uid = %s, attempts = %s"
    " WHERE id = %s"
)
_OUTCOME_FIELDS = [
    cast(Field, IngestRecord._meta.get_field(name))
    for name in (
        "state",
        "finished_at",
        "instance",
        "object_key",
        "sop_instance_uid",
        "study_instance_uid",
        "attempts",
        "id",
    )
]


# PostgreSQL: one statement for the batch, each column an array. executemany sent one
# UPDATE per record (pipelined), each planned and run on its own: 7 ms for 68 records.
_SAVE_OUTCOMES = (
    "UPDATE archive_ingestrecord AS r SET state = v.state, finished_at = v.finished_at,"
    " instance_id = v.instance_id, object_key = v.object_key,"
    " sop_instance_uid = v.sop_instance_uid, study_instance_uid = v.study_instance_uid,"
    " attempts = v.attempts"
    " FROM unnest(%s::varchar[], %s::timestamptz[], %s::bigint[], %s::varchar[],"
    " %s::varchar[], %s::varchar[], %s::integer[], %s::uuid[])"
    " AS v(state, finished_at, instance_id, object_key, sop_instance_uid,"
    " study_instance_uid, attempts, id)"
    " WHERE r.id = v.id"
)


def _save_outcomes(records: list[IngestRecord]) -> None:
    if not records:
        return
    # Each value as the ORM would bind it (a UUID is 32 hex digits on SQLite, for one).
    rows = [
        [f.get_db_prep_save(getattr(r, f.attname), connection) for f in _OUTCOME_FIELDS]
        for r in records
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_SAVE_OUTCOMES, [list(column) for column in zip(*rows, strict=True)])
        else:
            cursor.executemany(_SAVE_OUTCOME, rows)


def note_sources(arrivals: Iterable[tuple[Study, IngestRecord]]) -> None:
    """Remember who sent each study (access rules and the uploader role read it). One
    insert per batch at most, and none for senders this process already noted."""
    rows = {}
    for study, record in arrivals:
        sender = (
            f"ae:{record.calling_ae}"
            if record.calling_ae
            else (f"user:{record.user_id}" if record.user_id else "")
        )
        key = (study.pk, record.source, sender)
        if key not in _sources_noted:
            rows[key] = StudySource(
                study=study,
                source=record.source,
                sender=sender,
                calling_ae=record.calling_ae,
                user_id=record.user_id,
            )
    if rows:
        StudySource.objects.bulk_create(rows.values(), ignore_conflicts=True)
        if len(_sources_noted) > _PARENTS_MAX:
            _sources_noted.clear()
        keys = set(rows)
        transaction.on_commit(lambda: _sources_noted.update(keys))  # not if rolled back


def _upsert_patient(values: dict) -> Patient:
    identity = {k: values[k] for k in ("patient_id", "issuer_of_patient_id", "patient_name")}
    patient, _ = Patient.objects.get_or_create(**identity, defaults=values)
    return patient


def _fill_blanks(obj, values: dict) -> None:
    """First sender wins, but a later instance may fill what the first left empty."""
    changed = [
        k for k, v in values.items() if v not in (None, "") and getattr(obj, k) in (None, "")
    ]
    for k in changed:
        setattr(obj, k, values[k])
    if changed:
        obj.save(update_fields=[*changed, "updated_at"])


def _cached(uid: str, model):
    found = _parents.get(uid)
    return found if isinstance(found, model) else None


def _remember(uid: str, obj) -> None:
    if len(_parents) >= _PARENTS_MAX:
        _parents.clear()
    _parents[uid] = obj


def _upsert_study(values: dict, patient_values: dict) -> tuple[Study, bool]:
    uid = values["study_instance_uid"]
    study, created = _cached(uid, Study), False
    if study is None:
        study = Study.objects.filter(study_instance_uid=uid).first()
    if study is None:
        patient = _upsert_patient(patient_values)
        study, created = Study.objects.get_or_create(
            study_instance_uid=uid, defaults={**values, "patient": patient}
        )
    if not created:
        _fill_blanks(study, values)
    _remember(uid, study)
    return study, created


def _upsert_series(values: dict, study: Study) -> tuple[Series, bool]:
    uid = values["series_instance_uid"]
    series = _cached(uid, Series)
    created = False
    if series is None:
        series, created = Series.objects.get_or_create(
            series_instance_uid=uid, defaults={**values, "study": study}
        )
    if not created:
        _fill_blanks(series, values)
    _remember(uid, series)
    return series, created


def _instance_fields(prepared: Prepared, series: Series) -> dict:
    return {
        **prepared.extracted.instance,
        **prepared.frames.__dict__,
        "series": series,
        "object_key": prepared.object_key,
        "file_size": prepared.record.size,
        "sha256": prepared.record.sha256,
        "dicom_json": prepared.metadata,
        "warnings": prepared.extracted.warnings,
        "slice_index": None,
    }


def _upsert_instance(prepared: Prepared, series: Series, maybe_exists: bool):
    record = prepared.record
    fields = _instance_fields(prepared, series)
    uid = fields.pop("sop_instance_uid")
    old = None
    if maybe_exists:
        old = Instance.objects.select_for_update().filter(sop_instance_uid=uid).first()
    if old is None:
        return Instance.objects.create(sop_instance_uid=uid, **fields), True, record.size
    size_delta = record.size - old.file_size
    for k, v in fields.items():
        setattr(old, k, v)
    old.save()
    return old, False, size_delta


def _count(
    study: Study, series: Series, series_created: bool, instances_added: int, size_delta: int
) -> None:
    # F() updates lock the rows, so concurrent workers add up instead of overwriting.
    found = Study.objects.filter(pk=study.pk).update(
        number_of_series=F("number_of_series") + int(series_created),
        number_of_instances=F("number_of_instances") + instances_added,
        size_bytes=F("size_bytes") + size_delta,
        updated_at=timezone.now(),
    )
    found += Series.objects.filter(pk=series.pk).update(
        number_of_instances=F("number_of_instances") + instances_added,
        derive_requested=F("derive_requested") + 1,
        updated_at=timezone.now(),
    )
    if found != 2:
        raise _StaleParent
    if series_created:
        # Recomputed under the study row lock taken above, so it sees every committed series.
        modalities = sorted(
            set(study.series.exclude(modality="").values_list("modality", flat=True))
        )
        Study.objects.filter(pk=study.pk).update(modalities_in_study="\\".join(modalities)[:255])


def derive_if_done(series_ids: Iterable[int | None]) -> None:
    """Derive these series now if nothing received lately is left to index.

    Otherwise the task schedule_derivation() queued does it, once a series has had no
    arrival for derive.QUIET: a tenth of a second or two after the burst's last commit,
    which is what a study sent in a second or so waited for before it was viewable. With
    nothing pending, no more is coming for now, so the burst's last task does it at once.
    (Records pending for longer than LIGHTBOX_INGEST_STALE_SECONDS are failing ones the
    sweep retries; they do not count.)
    """
    wanted = sorted({series_id for series_id in series_ids if series_id is not None})
    if not wanted:
        return
    since = timezone.now() - timedelta(seconds=settings.INGEST_STALE_SECONDS)
    if IngestRecord.objects.filter(state=State.PENDING, received_at__gte=since).exists():
        return
    for series_id in wanted:
        try:
            derive.derive_series(series_id, settled=True)
        except Exception:
            # The outcomes are committed; the queued task derives the series instead.
            log.exception("deriving series %s failed; its queued task will retry", series_id)


def schedule_derivation(series_id: int, delay: float = 0.1) -> None:
    """Queue one derivation per burst: only the update that flips the flag sends a task
    (after commit, so the task sees what was just indexed)."""
    if Series.objects.filter(pk=series_id, derive_scheduled=False).update(derive_scheduled=True):
        send = partial(queue.send, queue.DERIVE_SERIES, series_id, countdown=delay)
        transaction.on_commit(send)
