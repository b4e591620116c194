"""DICOM JSON (PS3.18 §F.2) of an instance's header, prepared at ingest for WADO-RS /metadata.

Values longer than BULK_THRESHOLD bytes of binary VR, and the pixel data, are replaced by a
BulkDataURI (§F.2.6) under the instance's /dicomweb path, so metadata stays small.
"""

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from backend.imaging.dicomfile import ParsedFile

BULK_THRESHOLD = 1024
PIXEL_TAGS = {Tag(0x7FE00010), Tag(0x7FE00008), Tag(0x7FE00009)}


def instance_path(ds: Dataset) -> str:
    return (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def dataset_to_json(ds: Dataset, parsed: ParsedFile) -> tuple[dict[str, Any], list[str]]:
    """The header as DICOM JSON, and warnings for elements left out because their value
    cannot be represented (e.g. an IS of '1A')."""
    base = instance_path(ds)

    def bulk(element: DataElement) -> str:
        return f"{base}/bulkdata/{element.tag:08X}"

    header = Dataset({tag: elem for tag, elem in ds.items() if tag not in PIXEL_TAGS})
    result = _without_nuls(header.to_json_dict(BULK_THRESHOLD, bulk, suppress_invalid_tags=True))
    dropped = [
        f"{Tag(tag)} left out of the metadata: its value is not valid for its VR"
        for tag in header.keys()
        if f"{tag:08X}" not in result
    ]
    if parsed.has_pixel_data:
        words = parsed.pixel_data_offset is not None and int(ds.get("BitsAllocated", 8)) > 8
        result["7FE00010"] = {
            "vr": "OW" if words else "OB",
            "BulkDataURI": f"{base}/bulkdata/7FE00010",
        }
    return result, dropped


def _without_nuls(value: Any) -> Any:
    """NUL padding is not text (PS3.5 §6.2 pads with spaces) and PostgreSQL's jsonb refuses
    it, so it goes."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {k: _without_nuls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nuls(v) for v in value]
    return value
