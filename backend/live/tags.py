"""The tag browser's rows: an instance's header (its stored DICOM JSON) as tag, name, VR
and value text, sequences flattened with their depth."""

import json

from pydicom.datadict import keyword_for_tag
from pydicom.tag import Tag

from backend.archive.access import visible_studies
from backend.archive.models import Instance

MAX_VALUE_TEXT = 500
MAX_ROWS = 5000


def instance_for(user, study_uid: str, sop_uid: str) -> Instance | None:
    if len(study_uid) > 64 or len(sop_uid) > 64:
        return None
    return (
        Instance.objects.select_related("series__study__patient")
        .filter(
            sop_instance_uid=sop_uid,
            series__study__study_instance_uid=study_uid,
            series__study__in=visible_studies(user),
        )
        .first()
    )


def rows(instance: Instance) -> list[dict]:
    out: list[dict] = []
    _walk(json.loads(instance.dicom_json or "{}"), 0, out)
    return out[:MAX_ROWS]


def _walk(header: dict, depth: int, out: list[dict]) -> None:
    for tag in sorted(header):
        element = header[tag]
        vr = element.get("vr", "")
        out.append(
            {
                "tag": f"({tag[:4]},{tag[4:]})",
                "name": keyword_for_tag(Tag(int(tag, 16))) or "",
                "vr": vr,
                "value": _text(element),
                "depth": depth,
            }
        )
        if vr == "SQ":
            for number, item in enumerate(element.get("Value") or [], start=1):
                out.append(
                    {"tag": "", "name": f"Item {number}", "vr": "", "value": "", "depth": depth + 1}
                )
                _walk(item or {}, depth + 2, out)
        if len(out) > MAX_ROWS:
            return


def _text(element: dict) -> str:
    if "BulkDataURI" in element or "InlineBinary" in element:
        return "(bulk data)"
    if element.get("vr") == "SQ":
        return f"{len(element.get('Value') or [])} item(s)"
    values = element.get("Value") or []
    parts = []
    for value in values:
        if isinstance(value, dict):  # PN
            parts.append(
                "=".join(
                    value.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")
                ).rstrip("=")
            )
        else:
            parts.append(str(value))
    return "\\".join(parts)[:MAX_VALUE_TEXT]
