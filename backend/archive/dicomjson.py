"""DICOM JSON (PS3.18 §F.2) of an instance's header, prepared at ingest for WADO-RS /metadata.

Values longer than BULK_THRESHOLD bytes of binary VR, and the pixel data, are replaced by a
BulkDataURI (§F.2.6) under the instance's /dicomweb path, so metadata stays small. A value
inside a sequence has the path to it in its URI: .../bulkdata/00880200/0/7FE00010 is the
pixel data of the first item of the Icon Image Sequence (backend/dicomweb/wado.py reads it).

The elements are written here rather than by pydicom's Dataset.to_json_dict, with the same
output: read_dicom has converted every value already, and pydicom's generic path (a new
Dataset, each element looked up again, the VR sets rebuilt per element) cost more than
reading the file. NULs are removed from the strings as they are written.

The index stores the document as text (metadata_json). A series' files repeat most of their
header byte for byte, so an element whose value read_dicom reused from an earlier file
(ParsedFile.value_keys) reuses that file's text too.
"""

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

from pydicom import config
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.valuerep import AMBIGUOUS_VR, BYTES_VR, FLOAT_VR, INT_VR, VR, PersonName

from backend.imaging.dicomfile import Bounded, ParsedFile

BULK_THRESHOLD = 1024
PIXEL_TAGS = {Tag(0x7FE00010), Tag(0x7FE00008), Tag(0x7FE00009)}

# pydicom's rules (DataElement.to_json_dict and jsonrep.convert_to_python_number), built once.
# A binary value is inline when its base64 form, 4/3 longer, is within the threshold.
_INLINE_MAX = (BULK_THRESHOLD // 4) * 3
_BINARY_VRS = frozenset((BYTES_VR | AMBIGUOUS_VR) - {VR.US_SS})
_INT_VRS = frozenset((INT_VR - {VR.AT}) | {VR.US_SS})
_FLOAT_VRS = frozenset(FLOAT_VR)
# pydicom's logger: what it logged before, and the handler masks the values it quotes.
_pydicom_log = config.logger

BulkHandler = Callable[[DataElement, str], str]  # (element, path of its item) -> URI


def instance_path(ds: Dataset) -> str:
    return (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def dataset_to_json(ds: Dataset, parsed: ParsedFile) -> tuple[dict[str, Any], list[str]]:
    """The header as DICOM JSON, and warnings for elements left out because their value
    cannot be represented (e.g. an IS of '1A')."""
    base = _text(instance_path(ds))
    bulk = _bulk_handler(base)
    result: dict[str, Any] = {}
    dropped: list[str] = []
    # Values still to be converted (pixel data in an icon sequence) are read strictly, and an
    # element that fails is left out whole, as Dataset.to_json_dict(suppress_invalid_tags=True).
    with config.strict_reading():
        for tag, elem in list(ds.items()):
            if tag not in PIXEL_TAGS and (value := _top_json(ds, tag, elem, bulk, dropped)):
                result[f"{tag:08X}"] = value
    if parsed.has_pixel_data:
        result["7FE00010"] = _pixel_json(ds, parsed, base)
    return result, dropped


def metadata_json(ds: Dataset, parsed: ParsedFile) -> tuple[str, list[str]]:
    """dataset_to_json's document as the text json.dumps(..., separators=(",", ":")) makes
    of it, and the same warnings."""
    base = _text(instance_path(ds))
    bulk = _bulk_handler(base)
    parts: list[str] = []
    dropped: list[str] = []
    with config.strict_reading():
        for tag, elem in list(ds.items()):
            if tag in PIXEL_TAGS:
                continue
            key = parsed.value_keys.get(tag)
            text = _TEXTS.get(key) if key is not None else None
            if text is None:
                value = _top_json(ds, tag, elem, bulk, dropped)
                if value is None:
                    continue
                text = _dumps({f"{tag:08X}": value})[1:-1]
                # A BulkDataURI names the instance: not the same for another file.
                if key is not None and "BulkDataURI" not in value:
                    _TEXTS.put(key, text)
            parts.append(text)
    if parsed.has_pixel_data:
        parts.append(_dumps({"7FE00010": _pixel_json(ds, parsed, base)})[1:-1])
    return "{" + ",".join(parts) + "}", dropped


def _bulk_handler(base: str) -> BulkHandler:
    """URIs under `base`, the instance's path."""

    def bulk(element: DataElement, where: str) -> str:
        return f"{base}/bulkdata/{where}{element.tag:08X}"

    return bulk


def _top_json(
    ds: Dataset, tag: int, elem: Any, bulk: BulkHandler, dropped: list[str]
) -> dict[str, Any] | None:
    """A top-level element's JSON, or None (and a warning in `dropped`) if it is left out."""
    key = f"{tag:08X}"
    try:
        return _element_json(_converted(ds, tag, elem), bulk, "")
    except Exception as exc:
        _pydicom_log.warning("Error while processing tag %s: %s", key, exc)
        dropped.append(f"{Tag(tag)} left out of the metadata: its value is not valid for its VR")
        return None


def _pixel_json(ds: Dataset, parsed: ParsedFile, base: str) -> dict[str, str]:
    words = parsed.pixel_data_offset is not None and int(ds.get("BitsAllocated", 8)) > 8
    return {
        "vr": "OW" if words else "OB",
        "BulkDataURI": f"{base}/bulkdata/7FE00010",
    }


_dumps = json.JSONEncoder(separators=(",", ":")).encode


# Elements' JSON text by the Conversions key of their value.
_TEXTS = Bounded[str](8192)


def _converted(dataset: Dataset, tag: int, elem: DataElement | RawDataElement) -> DataElement:
    return dataset[tag] if isinstance(elem, RawDataElement) else elem


def _item_json(item: Dataset, bulk: BulkHandler, where: str) -> dict[str, Any]:
    """A sequence item: any element that fails fails the whole sequence (pydicom's rule)."""
    result = {}
    for tag, elem in list(item.items()):
        key = f"{tag:08X}"
        try:
            result[key] = _element_json(_converted(item, tag, elem), bulk, where)
        except Exception:
            _pydicom_log.error("Error while processing tag %s", key)
            raise
    return result


def _element_json(elem: DataElement, bulk: BulkHandler, where: str) -> dict[str, Any]:
    """One element as PS3.18 §F.2.2 writes it, exactly as pydicom's DataElement.to_json_dict
    does (but for the BulkDataURIs of values in sequences); raises on a value that cannot be
    represented. `where`: the path of the item it is in ("" at the top, "00880200/0/")."""
    vr, value = elem.VR, elem.value
    result: dict[str, Any] = {"vr": _text(vr)}
    if vr in _BINARY_VRS:
        if _multiplicity(elem, value):
            result.update(_binary_json(elem, value, bulk, where))
    elif vr == VR.SQ:
        result["Value"] = [
            _item_json(item, bulk, f"{where}{elem.tag:08X}/{number}/")
            for number, item in enumerate(value)
        ]
    elif vm := _multiplicity(elem, value):
        result["Value"] = _values_json(vr, value if vm > 1 else [value])
    return result


def _binary_json(elem: DataElement, value: Any, bulk: BulkHandler, where: str) -> dict[str, str]:
    if len(value) > _INLINE_MAX:
        return {"BulkDataURI": bulk(elem, where)}
    if _pydicom_log.isEnabledFor(logging.INFO):
        _pydicom_log.info("encode bulk data element '%s' inline", elem.name)
    # PS3.18 §F.2.7: no padding to even length (CP 1920).
    return {"InlineBinary": base64.b64encode(value).decode("utf-8")}


def _values_json(vr: str, values: Any) -> list[Any]:
    if vr == VR.PN:
        return [_name_json(name) for name in values]
    if vr == VR.AT:
        return [format(tag, "08X") for tag in values]
    if vr in _INT_VRS:
        return [int(v) if v is not None else empty_value_for_VR(vr) for v in values]
    if vr in _FLOAT_VRS:
        return [float(v) if v is not None else empty_value_for_VR(vr) for v in values]
    return [_text(v) for v in values]


def _name_json(name: PersonName) -> dict[str, Any]:
    """PS3.18 §F.2.2: a PN value is an object of its component groups."""
    components = name.components
    result = {"Alphabetic": _text(components[0])}
    if len(components) > 1:
        result["Ideographic"] = _text(components[1])
    if len(components) > 2:
        result["Phonetic"] = _text(components[2])
    return result


def _multiplicity(elem: DataElement, value: Any) -> int:
    """DataElement.VM (for any VR but SQ), without its generic checks for common values."""
    if isinstance(value, str | bytes | PersonName):
        return 1 if value else 0
    if isinstance(value, MultiValue | list):
        return len(value)
    if isinstance(value, int | float):
        return 1
    return elem.VM  # None, a buffer, anything unusual: pydicom's own rule


def _text(value: Any) -> Any:
    """NUL padding is not text (PS3.5 §6.2 pads with spaces) and PostgreSQL's jsonb refuses
    it, so it goes."""
    return value.replace("\x00", "") if isinstance(value, str) else value
