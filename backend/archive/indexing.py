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

import json
import logging
import uuid
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from backend.imaging.dicomfile import InvalidDicom, Limits, ParsedFile, read_dicom
from backend.imaging.pixels import PixelDataError, Pixels, decode_pixels

from . import notify, queue
from .attributes import Extracted, extract
from .dicomjson import dataset_to_json
from .models import IngestRecord, Instance, Patient, Series, Study
from .spool import get_spool
from .storage import get_storage

log = logging.getLogger(__name__)
State = IngestRecord.State


def limits() -> Limits:
    return Limits(max_pixel_bytes=settings.INGEST_MAX_PIXEL_BYTES)


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
    spool = get_spool()
    path = spool.path(record.id)
    try:
        if not path.exists():
            return _finish_without_file(record)
        attempt = spool.begin_attempt(record.id)
        if attempt > settings.INGEST_MAX_ATTEMPTS:
            cause = spool.last_error(record.id) or "the worker was killed or ran out of time"
            reason = f"gave up after {attempt - 1} attempts: {cause}"
            return quarantine(record, path, reason, attempts=attempt - 1)
        return _index_file(record, path, attempt)
    except _AlreadyFinished:
        return None
    except Exception as exc:
        spool.note_error(record.id, f"{type(exc).__name__}: {exc}")
        raise


class _AlreadyFinished(Exception):
    """Another worker committed this record's outcome first."""


def _index_file(record: IngestRecord, path, attempt: int) -> str:
    try:
        parsed = read_dicom(path, limits())
    except InvalidDicom as exc:
        return quarantine(record, path, str(exc), attempts=attempt)
    return _index_parsed(record, path, parsed, attempt)


def quarantine(record: IngestRecord, path, reason: str, **fields) -> str:
    """Keep an unusable file aside with the reason; admins list these records."""
    key = f"quarantine/{record.sha256}.dcm"
    get_storage().adopt(key, path)
    log.warning("quarantined %s (%s): %s", record.id, record.source_detail, reason)
    _finish(record, State.QUARANTINED, reason=reason, object_key=key, **fields)
    get_spool().remove(record.id)
    return State.QUARANTINED


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


def _index_parsed(record: IngestRecord, path, parsed: ParsedFile, attempt: int) -> str:
    ds = parsed.dataset
    sop_instance_uid = str(ds.SOPInstanceUID)
    existing = Instance.objects.filter(sop_instance_uid=sop_instance_uid).first()
    if existing is not None and existing.sha256 == record.sha256:
        _finish(
            record,
            State.DUPLICATE,
            instance=existing,
            object_key=existing.object_key,
            sop_instance_uid=sop_instance_uid,
            study_instance_uid=str(ds.StudyInstanceUID),
            attempts=attempt,
        )
        get_spool().remove(record.id)
        return State.DUPLICATE

    object_key = f"objects/{record.sha256}"
    get_storage().adopt(object_key, path)
    frames = derive_frames(parsed, path, object_key, record.sha256)
    extracted = extract(ds)
    extracted.instance["transfer_syntax_uid"] = parsed.transfer_syntax_uid
    metadata, dropped = dataset_to_json(ds, parsed)
    extracted.warnings[:0] = parsed.warnings + dropped
    state = State.REPLACED if existing is not None else State.STORED
    record.attempts = attempt
    state = _commit_index(record, extracted, frames, metadata, object_key, state)
    get_spool().remove(record.id)
    return state


def derive_frames(parsed: ParsedFile, path, object_key: str, sha256: str) -> FrameInfo:
    """Decode once, so that serving a frame later is reading bytes."""
    if not parsed.has_pixel_data:
        return FrameInfo(viewable=False, not_viewable_reason="no pixel data")
    try:
        pixels = decode_pixels(parsed, path, limits())
    except PixelDataError as exc:
        return FrameInfo(viewable=False, not_viewable_reason=str(exc))
    if pixels.offset is not None:
        frames_key, offset = object_key, pixels.offset
    else:
        frames_key, offset = f"frames/{sha256}.raw", 0
        get_storage().create(frames_key, [memoryview(pixels.array).cast("B")])
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


class _StaleParent(Exception):
    pass


def _commit_index(record, extracted: Extracted, frames, metadata, object_key, state) -> str:
    try:
        return _commit_once(record, extracted, frames, metadata, object_key, state, True)
    except (_StaleParent, IntegrityError):
        # A cached parent vanished, or another worker inserted the same instance first.
        _parents.clear()
        return _commit_once(record, extracted, frames, metadata, object_key, state, False)


def _commit_once(record, extracted, frames, metadata, object_key, state, existing_checked):
    with transaction.atomic():
        study, study_created = _upsert_study(extracted.study, extracted.patient)
        series, series_created = _upsert_series(extracted.series, study)
        instance, created, size_delta = _upsert_instance(
            extracted,
            frames,
            metadata,
            series,
            object_key,
            record,
            maybe_exists=state == State.REPLACED or not existing_checked,
        )
        _count(study, series, series_created, created, size_delta)
        final = State.STORED if created else State.REPLACED
        _finish(
            record,
            final,
            instance=instance,
            object_key=object_key,
            sop_instance_uid=instance.sop_instance_uid,
            study_instance_uid=study.study_instance_uid,
            attempts=record.attempts,
        )
        if study_created or series_created:
            notify.study_changed(study, series, "created" if study_created else "series")
        schedule_derivation(series.pk)
    return final


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


def _upsert_instance(
    extracted: Extracted, frames: FrameInfo, metadata, series, object_key, record, maybe_exists
):
    fields = {
        **extracted.instance,
        **frames.__dict__,
        "series": series,
        "object_key": object_key,
        "file_size": record.size,
        "sha256": record.sha256,
        "dicom_json": json.dumps(metadata, separators=(",", ":")),
        "warnings": extracted.warnings,
        "slice_index": None,
    }
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
    study: Study, series: Series, series_created: bool, instance_created: bool, size_delta: int
) -> None:
    # F() updates lock the rows, so concurrent workers add up instead of overwriting.
    found = Study.objects.filter(pk=study.pk).update(
        number_of_series=F("number_of_series") + int(series_created),
        number_of_instances=F("number_of_instances") + int(instance_created),
        size_bytes=F("size_bytes") + size_delta,
        updated_at=timezone.now(),
    )
    found += Series.objects.filter(pk=series.pk).update(
        number_of_instances=F("number_of_instances") + int(instance_created),
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


def schedule_derivation(series_id: int, delay: float = 0.3) -> None:
    """Queue one derivation per burst: only the update that flips the flag sends a task
    (after commit, so the task sees what was just indexed)."""
    if Series.objects.filter(pk=series_id, derive_scheduled=False).update(derive_scheduled=True):
        send = partial(queue.send, queue.DERIVE_SERIES, series_id, countdown=delay)
        transaction.on_commit(send)
