"""Retrieve (PS3.4 C.4.2 C-MOVE, C.4.3 C-GET): which stored instances an identifier names,
and each one as a data set the receiving peer can take. No network code: the DICOM
receiver's handlers call this.

Choices where the standard leaves room:

- Retrieve is hierarchical (PS3.4 C.4.2.1.4.1): the identifier holds QueryRetrieveLevel and
  the unique key of that level (PatientID, StudyInstanceUID, SeriesInstanceUID or
  SOPInstanceUID; a list of UIDs for the UID keys, C.4.2.2.1). Unique keys of the levels
  above are matched when present and must then hold one value; any other key is ignored.
  Wildcards and empty values are refused: retrieve does not search.
- Only instances of `studies` (the access-filtered queryset) are ever returned.
- The stored file goes out as it is when the peer accepted its transfer syntax; otherwise
  it is transcoded (compressed pixel data decoded to Explicit VR Little Endian, or Implicit
  VR Little Endian when that is all the peer takes). Lossy re-compression is never done.
"""

from collections.abc import Iterable
from io import BytesIO

import pydicom
from django.db.models import QuerySet
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .models import Instance, Study
from .query import MODEL_LEVELS, QueryError, _element_text, _level, _uids
from .storage import get_storage

__all__ = ["QueryError", "dataset_for", "instances_for"]

# The instance column each level's unique key selects on (PS3.4 C.6.1.1, C.6.2.1).
UNIQUE_COLUMNS = {
    "PatientID": "series__study__patient__patient_id",
    "StudyInstanceUID": "series__study__study_instance_uid",
    "SeriesInstanceUID": "series__series_instance_uid",
    "SOPInstanceUID": "sop_instance_uid",
}
LEVEL_KEYS = dict(zip(MODEL_LEVELS["patient"], UNIQUE_COLUMNS, strict=True))
ORDER = ("series__study__pk", "series__series_number", "series__pk", "instance_number", "pk")


def instances_for(identifier: pydicom.Dataset, *, model: str, studies: QuerySet[Study]):
    """The instances a C-MOVE or C-GET identifier names, within `studies`, in study, series
    and instance order. model: "patient" or "study" (PS3.4 C.6.1, C.6.2). Raises QueryError
    when the identifier cannot be processed (its message says why)."""
    if model not in MODEL_LEVELS:
        raise ValueError(f"unknown query/retrieve information model {model!r}")
    level = _level(identifier, model)
    levels = MODEL_LEVELS[model]
    rows = Instance.objects.filter(series__study__in=studies)
    for above in levels[: levels.index(level) + 1]:
        keyword = LEVEL_KEYS[above]
        values = _unique_values(identifier, keyword, required=above == level)
        if values:
            rows = rows.filter(**{f"{UNIQUE_COLUMNS[keyword]}__in": values})
    return list(rows.select_related("series__study").defer("dicom_json").order_by(*ORDER))


def _unique_values(identifier: pydicom.Dataset, keyword: str, *, required: bool) -> list[str]:
    """A unique key's values: a list of UIDs at the retrieve level (C.4.2.2.1), one value
    above it; never a wildcard or, at the level, empty."""
    text = _element_text(identifier, pydicom.tag.Tag(keyword)) if keyword in identifier else ""
    if not text:
        if required:
            raise QueryError(f"a retrieve needs a value in {keyword} (PS3.4 C.4.2.2.1)")
        return []
    if "*" in text or "?" in text:
        raise QueryError(f"{keyword} must not hold wildcards in a retrieve (PS3.4 C.4.2.2.1)")
    if keyword == "PatientID" or not required:
        if "\\" in text:
            raise QueryError(f"{keyword} must hold a single value (PS3.4 C.4.2.2.1)")
        return [text] if keyword == "PatientID" else _uids(text)
    return _uids(text)


def dataset_for(instance: Instance, accepted_transfer_syntaxes: Iterable[str]) -> pydicom.Dataset:
    """The stored file of `instance` as a data set in a transfer syntax the peer accepted:
    as stored when possible, else transcoded. When the peer accepted none that Lightbox can
    produce, the stored data set is returned and the sub-operation will fail on sending."""
    accepted = {UID(str(syntax)) for syntax in accepted_transfer_syntaxes}
    ds = pydicom.dcmread(BytesIO(get_storage().read(instance.object_key)))
    stored = UID(ds.file_meta.TransferSyntaxUID)
    if stored in accepted or not accepted & {ExplicitVRLittleEndian, ImplicitVRLittleEndian}:
        return ds
    if stored.is_compressed:
        # Native pixels, Explicit VR Little Endian. The SOP Instance UID is kept: the
        # decoding is lossless, so this is the same instance (pydicom would make a new one).
        ds.decompress(generate_instance_uid=False)
    target = (
        ExplicitVRLittleEndian if ExplicitVRLittleEndian in accepted else ImplicitVRLittleEndian
    )
    return _reencoded(ds, target)


def _reencoded(ds: pydicom.Dataset, transfer_syntax: UID) -> pydicom.Dataset:
    """The data set written and read back in `transfer_syntax` (an uncompressed one), so
    every element is in that encoding, whatever the stored endianness or VR was."""
    for tag in list(ds.keys()):
        # Convert every raw element while the reader's encoding still applies: a data set
        # whose encoding differs from its transfer syntax otherwise fails in dcmwrite.
        ds[tag]
    if not ds.original_encoding[1] and "PixelData" in ds:
        # From big endian (PS3.5 §A.3, retired): native pixel values need their bytes swapped;
        # dcmwrite converts every other element but leaves OW values as they are.
        pixels = ds.pixel_array
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    buffer = BytesIO()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    dcmwrite(buffer, ds, enforce_file_format=True)
    return pydicom.dcmread(BytesIO(buffer.getvalue()))


def storage_contexts(instances: Iterable[Instance]) -> list:
    """Presentation contexts for sending `instances` as a requestor (C-STORE SCU, C-MOVE
    sub-operations): per SOP class, each stored compressed syntax in a context of its own
    and the uncompressed ones in another, so a peer that refuses a compression still gets
    the (decoded) data. Callers keep to 128 contexts (PS3.8 §9.3.2.2)."""
    from pynetdicom import build_context

    stored: dict[str, set[str]] = {}
    for instance in instances:
        stored.setdefault(instance.sop_class_uid, set()).add(instance.transfer_syntax_uid)
    contexts = []
    for sop_class, syntaxes in stored.items():
        compressed = sorted(ts for ts in syntaxes if UID(ts).is_compressed)
        contexts += [build_context(sop_class, [ts]) for ts in compressed]
        contexts.append(build_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
    return contexts
