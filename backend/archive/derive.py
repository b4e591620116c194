"""Per-series derivation, run once per burst of arrivals: slice order, a thumbnail, and the
series' WADO-RS /metadata document, so that opening a series is reading prepared files.
"""

import gzip
import hashlib
import logging
from concurrent import futures
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from backend.imaging.render import render

from . import background, notify, queue
from .frames import frame_array, frame_layout
from .models import Instance, Series
from .ordering import SliceInfo, slice_order
from .storage import get_storage

log = logging.getLogger(__name__)
THUMBNAIL_SIZE = 128
# What ordering reads of each instance, as plain values: model objects for a 275-slice
# series took 19 ms of a 41 ms derivation, the last step before the series is viewable.
_ORDER_FIELDS = (
    "pk",
    "instance_number",
    "image_position_patient",
    "image_orientation_patient",
    "slice_index",
    "viewable",
)
# What the thumbnail reads, of the one instance it shows.
_THUMBNAIL_FIELDS = (
    "pk",
    "viewable",
    "not_viewable_reason",
    "number_of_frames",
    "rows",
    "columns",
    "frame_samples",
    "frame_dtype",
    "frame_photometric",
    "frames_key",
    "frames_offset",
    "rescale_slope",
    "rescale_intercept",
    "window_center",
    "window_width",
)


@dataclass
class _Slice:
    pk: int
    instance_number: int | None
    image_position_patient: list | None
    image_orientation_patient: list | None
    slice_index: int | None
    viewable: bool


def series_key(series: Series, suffix: str) -> str:
    digest = hashlib.sha256(series.series_instance_uid.encode()).hexdigest()
    return f"derived/{digest}{suffix}"


# While images keep arriving, derive at most every BUSY_INTERVAL seconds; once a series has
# been quiet for QUIET seconds, derive at once. A new series is derived straight away, so its
# thumbnail shows early.
QUIET = 0.1
BUSY_INTERVAL = 3.0


def derive_series(series_id: int, settled: bool = False) -> bool:
    """Bring a series' derived data up to date; returns False if it did not (yet) need to.
    `settled`: the caller knows no more is coming for now (indexing.derive_if_done), so
    a series that just changed is derived without waiting for it to be quiet."""
    series = Series.objects.select_related("study").filter(pk=series_id).first()
    if series is None:
        return False
    if not settled and _still_arriving(series):
        # Keep the scheduled flag: arrivals meanwhile need no task of their own.
        queue.send(queue.DERIVE_SERIES, series_id, countdown=QUIET)
        return False
    # Clear the flag first: arrivals from now on schedule another run. Then read the counts
    # again: an arrival committed between loading the series and clearing the flag saw the
    # flag still set and scheduled nothing, so this run must cover it. Whoever calls this
    # committed arrivals that set the flag or found it set: if it is clear now, another
    # run cleared it since, and covers them. (Two tasks of one burst that end together
    # each derived the series, at the same time, before the series could be viewable.)
    if not Series.objects.filter(pk=series_id, derive_scheduled=True).update(
        derive_scheduled=False
    ):
        return False
    series.refresh_from_db(fields=["derive_requested", "derived_version"])
    if series.is_derived:
        return False
    version = series.derive_requested
    slices = [_Slice(*row) for row in series.instances.values_list(*_ORDER_FIELDS)]
    ordered, changed = _slice_order(slices)
    # The thumbnail is made in a thread while this one writes the metadata: both wait
    # for the disk, and most of their computing (PIL, zlib) lets other threads run.
    thumbnail = _thumbnail_source(ordered)
    making = None
    if thumbnail is not None:  # the thread uses no database connection
        making = background.thread("thumbnail").submit(_write_thumbnail, series, thumbnail)
    try:
        metadata_key = _write_metadata(series, [i.pk for i in ordered])
    finally:
        if making is not None:
            futures.wait([making])  # not left running if the metadata failed
    thumbnail_key = making.result() if making is not None else ""
    with transaction.atomic():
        # The slice order with the rest: one commit, and never one without the other.
        _save_slice_indexes(changed)
        Series.objects.filter(pk=series_id, derived_version__lt=version).update(
            derived_version=version,
            thumbnail_key=thumbnail_key,
            metadata_key=metadata_key,
            derived_at=timezone.now(),
        )
        notify.study_changed(series.study, series, "derived")
    return True


def _still_arriving(series: Series) -> bool:
    now = timezone.now()
    recently_changed = (now - series.updated_at).total_seconds() < QUIET
    recently_derived = (
        series.derived_at is not None and (now - series.derived_at).total_seconds() < BUSY_INTERVAL
    )
    return recently_changed and recently_derived


def _slice_order(instances: list[_Slice]) -> tuple[list[_Slice], list[_Slice]]:
    """The slices in order, each with its new slice_index; and those whose index changed
    (for _save_slice_indexes)."""
    by_pk = {i.pk: i for i in instances}
    keys = slice_order(
        [
            SliceInfo(
                i.pk, i.instance_number, i.image_position_patient, i.image_orientation_patient
            )
            for i in instances
        ]
    )
    changed = []
    for index, pk in enumerate(keys):
        instance = by_pk[pk]
        if instance.slice_index != index:
            instance.slice_index = index
            changed.append(instance)
    return [by_pk[pk] for pk in keys], changed


def _save_slice_indexes(changed: list[_Slice]) -> None:
    """One prepared UPDATE run for every row: bulk_update's CASE WHEN with a branch per
    instance took half of a 275-slice derivation, which is the last step before a series
    is viewable. On PostgreSQL, one UPDATE for all of them: a statement per row, even
    prepared and pipelined, took 25-38 ms for 275 rows against 11-13 (docs/performance.md)."""
    if not changed:
        return
    with connection.cursor() as cursor:  # in derive_series' transaction
        if connection.vendor == "postgresql":
            cursor.execute(
                _SET_SLICE_INDEXES, [[i.pk for i in changed], [i.slice_index for i in changed]]
            )
        else:
            cursor.executemany(
                "UPDATE archive_instance SET slice_index = %s WHERE id = %s",
                [(i.slice_index, i.pk) for i in changed],
            )


_SET_SLICE_INDEXES = (
    "UPDATE archive_instance AS i SET slice_index = v.slice_index"
    " FROM unnest(%s::bigint[], %s::integer[]) AS v(id, slice_index) WHERE i.id = v.id"
)


def _thumbnail_source(ordered: list[_Slice]) -> Instance | None:
    """The instance the thumbnail shows: the middle one of those viewable, if any (read
    here, in the derivation's thread and database connection)."""
    viewable = [i for i in ordered if i.viewable]
    if not viewable:
        return None
    middle = viewable[len(viewable) // 2].pk
    # None if deleted meanwhile: the next derivation makes one.
    return Instance.objects.only(*_THUMBNAIL_FIELDS).filter(pk=middle).first()


def _write_thumbnail(series: Series, instance: Instance) -> str:
    try:
        frame = frame_array(instance, instance.number_of_frames // 2)
        image = render(
            frame,
            frame_layout(instance),
            rescale_slope=instance.rescale_slope or 1.0,
            rescale_intercept=instance.rescale_intercept or 0.0,
            window_center=(instance.window_center or [None])[0],
            window_width=(instance.window_width or [None])[0],
            max_size=THUMBNAIL_SIZE,
            fmt="jpeg",
            quality=85,
        )
    except Exception:
        log.exception("thumbnail of series %s failed", series.series_instance_uid)
        return ""
    key = series_key(series, ".thumb.jpg")
    get_storage().create(key, [image])
    return key


def _write_metadata(series: Series, ordered_pks: list[int]) -> str:
    """The series' /metadata response body (a JSON array), gzip-compressed, in slice order."""
    documents = dict(series.instances.values_list("pk", "dicom_json"))
    body = ",".join(documents[pk] for pk in ordered_pks)
    key = series_key(series, ".metadata.json.gz")
    get_storage().create(key, [gzip.compress(f"[{body}]".encode(), compresslevel=1)])
    return key
