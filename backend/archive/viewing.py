"""What the viewer needs to show a study: the manifest of its series and frames, and the
order in which frames should reach the reader. No network code (backend/live/viewer.py
streams, this decides)."""

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

from backend.imaging.dicomfile import Limits

from .frames import frame_layout
from .indexing import NO_PIXEL_DATA
from .models import Instance, Series, Study
from .storage import StorageError, get_storage

_INSTANCE_FIELDS = (
    "pk",
    "sop_instance_uid",
    "series_id",
    "instance_number",
    "slice_index",
    "number_of_frames",
    "rows",
    "columns",
    "frame_samples",
    "frame_dtype",
    "frame_photometric",
    "photometric_interpretation",
    "rescale_slope",
    "rescale_intercept",
    "window_center",
    "window_width",
    "voi_lut_function",
    "modality_lut",
    "voi_luts",
    "pixel_spacing",
    "image_position_patient",
    "image_orientation_patient",
    "slice_location",
    "slice_thickness",
    "viewable",
    "not_viewable_reason",
    "pixel_min",
    "pixel_max",
    "frames_key",
    "frames_offset",
)


@dataclass(frozen=True)
class FrameRef:
    """One frame of a study: its series, its position in the series' stack, and where its
    bytes are (a range of the prepared frames), so streaming it needs no database."""

    series: str
    index: int  # position in the series' stack (slice order, then frames)
    key: str
    offset: int
    size: int
    error: str = ""  # why the frame cannot be shown (it was not decoded at ingest)


def manifest(study: Study) -> tuple[dict, dict[str, list[FrameRef]]]:
    """The study as the viewer sees it (JSON-ready), and each series' frames in stack order."""
    text, stacks = manifest_json(study)
    return json.loads(text), stacks


def manifest_json(study: Study) -> tuple[str, dict[str, list[FrameRef]]]:
    """manifest() as the JSON text the viewer's socket sends. Each series' part is built
    once per version of the series (see _SeriesParts) and kept: opening a study again, or a
    study that another reader opened, costs two small queries."""
    series_list = list(
        Series.objects.filter(study=study).order_by("series_number", "pk").only(*_SERIES_FIELDS)
    )
    parts = _parts.get_many(series_list)
    if missing := [series for series in series_list if series.pk not in parts]:
        parts.update(_parts.build(missing))
    patient = study.patient
    head = json.dumps(
        {
            "type": "study",
            "study_instance_uid": study.study_instance_uid,
            "patient_name": patient.patient_name,
            "patient_id": patient.patient_id,
            "patient_birth_date": _text(patient.patient_birth_date),
            "patient_sex": patient.patient_sex,
            "study_date": _text(study.study_date),
            "study_time": _text(study.study_time),
            "study_description": study.study_description,
            "accession_number": study.accession_number,
        }
    )
    described = ", ".join(parts[series.pk][0] for series in series_list)
    stacks = {series.series_instance_uid: parts[series.pk][1] for series in series_list}
    return f'{head[:-1]}, "series": [{described}]}}', stacks


_SERIES_FIELDS = (
    "pk",
    "series_instance_uid",
    "series_number",
    "series_description",
    "modality",
    "body_part_examined",
    "thumbnail_key",
    "number_of_instances",
    "derive_requested",
    "derived_version",
    "created_at",
)


class _SeriesParts:
    """Each series' part of the manifest (its JSON text and its stack), kept per process
    while the series does not change. Every change to a series' instances goes through
    indexing, which counts it in derive_requested (and number_of_instances); derivation
    (slice order, thumbnail) moves derived_version: together they are the part's version.
    The version is read before the instances, so a part is never newer than its key says
    it is old: at worst it is built again."""

    MAX_SERIES = 256

    def __init__(self) -> None:
        self._parts: OrderedDict[tuple, tuple[str, list[FrameRef]]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _version(series: Series) -> tuple:
        return (
            series.pk,
            series.created_at,
            series.series_instance_uid,
            series.number_of_instances,
            series.derive_requested,
            series.derived_version,
            series.thumbnail_key,
            series.series_number,
            series.series_description,
            series.modality,
            series.body_part_examined,
        )

    def get_many(self, series_list: list[Series]) -> dict[int, tuple[str, list[FrameRef]]]:
        found = {}
        with self._lock:
            for series in series_list:
                key = self._version(series)
                if key in self._parts:
                    self._parts.move_to_end(key)
                    found[series.pk] = self._parts[key]
        return found

    def build(self, series_list: list[Series]) -> dict[int, tuple[str, list[FrameRef]]]:
        instances = Instance.objects.filter(series__in=series_list).only(*_INSTANCE_FIELDS)
        by_series: dict[int, list[Instance]] = {}
        for instance in instances.order_by("slice_index", "instance_number", "pk"):
            by_series.setdefault(instance.series_id, []).append(instance)
        built = {}
        for series in series_list:
            members = by_series.get(series.pk, [])
            uid = series.series_instance_uid
            stack = [
                _ref(uid, position, instance, frame)
                for position, (instance, frame) in enumerate(_frames(members))
            ]
            built[series.pk] = (json.dumps(_series(series, members)), stack)
        with self._lock:
            for series in series_list:
                self._parts[self._version(series)] = built[series.pk]
            while len(self._parts) > self.MAX_SERIES:
                self._parts.popitem(last=False)
        return built


_parts = _SeriesParts()


def _ref(series: str, position: int, instance: Instance, frame: int) -> FrameRef:
    if not _streamable(instance):
        reason = instance.not_viewable_reason or "the pixel data could not be decoded"
        return FrameRef(series, position, "", 0, 0, error=reason)
    size = frame_layout(instance).frame_bytes
    offset = (instance.frames_offset or 0) + frame * size
    return FrameRef(series, position, instance.frames_key, offset, size)


def _frames(members: list[Instance]):
    for instance in members:
        for frame in range(_frame_count(instance)):
            yield instance, frame


def _frame_count(instance: Instance) -> int:
    """Frames in the stack: an image whose pixels could not be decoded keeps its place,
    so that the reader is told about it where it belongs."""
    if _streamable(instance):
        return instance.number_of_frames
    if _undecodable(instance):  # a hostile count was refused at ingest: not repeated here
        return min(instance.number_of_frames, Limits().max_frames)
    return 0


def _streamable(instance: Instance) -> bool:
    return bool(instance.viewable and instance.frames_key and instance.frame_samples)


def _undecodable(instance: Instance) -> bool:
    """Pixel Data that was there but could not be decoded (a bad codestream, truncated
    values); not an instance without pixels (SR, RT plans, ...)."""
    return not instance.viewable and instance.not_viewable_reason != NO_PIXEL_DATA


def _series(series: Series, members: list[Instance]) -> dict:
    luts = _LookupTables()
    instances = [_instance(i, luts) for i in members]
    return {
        "series_instance_uid": series.series_instance_uid,
        "series_number": series.series_number,
        "series_description": series.series_description,
        "modality": series.modality,
        "body_part_examined": series.body_part_examined,
        "thumbnail": f"/api/series/{series.pk}/thumbnail" if series.thumbnail_key else None,
        "instances": instances,
        # Lookup tables of the series' instances, each once; instances refer to them by
        # position ("modality_lut", "voi_luts"): a series usually repeats one table.
        "luts": luts.tables,
    }


class _LookupTables:
    def __init__(self) -> None:
        self.tables: list[dict] = []
        self._positions: dict[str, int] = {}

    def position(self, table: dict) -> int:
        key = json.dumps(table, sort_keys=True)
        if key not in self._positions:
            self._positions[key] = len(self.tables)
            self.tables.append(table)
        return self._positions[key]


def _instance(instance: Instance, luts: _LookupTables) -> dict:
    modality_lut = instance.modality_lut
    return {
        "sop_instance_uid": instance.sop_instance_uid,
        "instance_number": instance.instance_number,
        "frames": _frame_count(instance),
        "viewable": _streamable(instance),
        "undecodable": _undecodable(instance),
        "not_viewable_reason": instance.not_viewable_reason,
        "rows": instance.rows,
        "columns": instance.columns,
        "samples": instance.frame_samples,
        "dtype": instance.frame_dtype,
        "photometric": instance.frame_photometric,
        "stored_photometric": instance.photometric_interpretation,
        "rescale_slope": instance.rescale_slope if instance.rescale_slope is not None else 1.0,
        "rescale_intercept": instance.rescale_intercept or 0.0,
        "window_center": instance.window_center,
        "window_width": instance.window_width,
        "voi_lut_function": instance.voi_lut_function or "LINEAR",
        "modality_lut": luts.position(modality_lut) if modality_lut else None,
        "voi_luts": [luts.position(table) for table in instance.voi_luts or []],
        "pixel_spacing": instance.pixel_spacing,
        "image_position_patient": instance.image_position_patient,
        "image_orientation_patient": instance.image_orientation_patient,
        "slice_location": instance.slice_location,
        "slice_thickness": instance.slice_thickness,
        "pixel_min": instance.pixel_min,
        "pixel_max": instance.pixel_max,
    }


def _text(value) -> str:
    return "" if value is None else str(value)


def outward(count: int, center: int) -> list[int]:
    """Stack positions from `center` outward: c, c+1, c-1, c+2, c-2, ... (PS: the reader
    scrolls both ways from where they are)."""
    center = min(max(center, 0), max(count - 1, 0))
    order = [center] if count else []
    for step in range(1, count):
        for position in (center + step, center - step):
            if 0 <= position < count:
                order.append(position)
    return order


def read_frame(ref: FrameRef) -> bytes:
    """The frame's raw little-endian values; empty if the stored frames cannot be read."""
    try:
        return get_storage().read_range(ref.key, ref.offset, ref.size)
    except (StorageError, OSError):
        return b""
