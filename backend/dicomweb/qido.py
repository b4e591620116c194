"""QIDO-RS (PS3.18 §10.6): query parameters → a C-FIND identifier → DICOM JSON results.

Matching is the archive's C-FIND matching (backend/archive/query.py), so DIMSE and
DICOMweb answer the same question the same way. Where QIDO differs from C-FIND:

- /series and /instances without a study in the path are relational: the unique keys
  above may be empty, and study-level keys may match (PS3.18 §10.6.1.2).
- UID and code string lists are comma-separated (§8.3.4.1); backslashes work too.
- fuzzymatching=true matches person names word by word (query.find, fuzzy=True).
- Results are always bounded: `limit` defaults to QIDO_DEFAULT_LIMIT and may not exceed
  QIDO_MAX_LIMIT; when more matches exist a Warning header says so (§8.3.4.4).
"""

import re
from dataclasses import dataclass, field

import pydicom
from django.conf import settings
from django.db.models import QuerySet
from pydicom.datadict import dictionary_VR, keyword_dict, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.tag import Tag

from backend.archive import query
from backend.archive.models import Study

from .errors import DicomWebError

MAX_OFFSET = 1_000_000
CONTROL_PARAMETERS = {"includefield", "limit", "offset", "fuzzymatching"}
# Default return attributes per level (PS3.18 Tables 10.6.3-3, -4 and -5).
STUDY_FIELDS = [
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "InstanceAvailability",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDescription",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
]
SERIES_FIELDS = [
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "SeriesInstanceUID",
    "NumberOfSeriesRelatedInstances",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
]
INSTANCE_FIELDS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceAvailability",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
]
LEVEL_FIELDS = {"STUDY": STUDY_FIELDS, "SERIES": SERIES_FIELDS, "IMAGE": INSTANCE_FIELDS}
_LIST_VRS = {"UI", "CS"}  # values that can never hold a comma, so a comma separates
_TAG = re.compile(r"[0-9A-Fa-f]{8}")


@dataclass
class Search:
    """One QIDO-RS request, checked: what to match, what to return, which page."""

    level: str  # STUDY, SERIES or IMAGE
    identifier: pydicom.Dataset
    limit: int
    offset: int = 0
    fuzzy: bool = False
    relational: bool = False
    fields: list[str] = field(default_factory=list)


def parse(level: str, params, path_keys: dict[str, str], *, relational: bool) -> Search:
    """The Search a query string asks for; DicomWebError(400) says what is wrong."""
    search = Search(
        level,
        pydicom.Dataset(),
        limit=_limit(params.getlist("limit")),
        offset=_bounded("offset", params.getlist("offset"), 0, MAX_OFFSET, 0),
        fuzzy=_boolean(params.getlist("fuzzymatching")),
        relational=relational,
    )
    search.identifier.QueryRetrieveLevel = level
    levels = _returned_levels(level, relational)
    wanted = [name for lvl in levels for name in LEVEL_FIELDS[lvl]]
    wanted += _include_fields(params.getlist("includefield"), levels)
    for keyword in dict.fromkeys(wanted):
        if _returnable(keyword, level):
            _set(search.identifier, keyword, "")
    for name in params:
        if name in CONTROL_PARAMETERS:
            continue
        values = params.getlist(name)
        _set(search.identifier, _keyword(name), _value(name, values))
    for keyword, uid in path_keys.items():
        _set(search.identifier, keyword, uid)
    return search


def _returnable(keyword: str, level: str) -> bool:
    """Attributes of a level below the query's are not returned (PS3.18 §10.6.3.3)."""
    key = query.KEYS.get(keyword)
    return key is None or query.LEVELS.index(key.level) <= query.LEVELS.index(level)


def _returned_levels(level: str, relational: bool) -> list[str]:
    """A relational query also returns its parents' default attributes (§10.6.3.3)."""
    if level == "STUDY":
        return ["STUDY"]
    if level == "SERIES":
        return ["STUDY", "SERIES"] if relational else ["SERIES"]
    return ["STUDY", "SERIES", "IMAGE"] if relational else ["SERIES", "IMAGE"]


def _limit(values: list[str]) -> int:
    default = settings.LIGHTBOX_QIDO_DEFAULT_LIMIT
    return _bounded("limit", values, 1, settings.LIGHTBOX_QIDO_MAX_LIMIT, default, cap=True)


def _bounded(name: str, values: list[str], low: int, high: int, default: int, cap=False) -> int:
    if not values:
        return default
    if len(values) > 1:
        raise DicomWebError(400, f"{name} given more than once")
    if not re.fullmatch(r"[0-9]+", values[0].strip()):
        raise DicomWebError(400, f"{name} must be a whole number, not {values[0][:20]!r}")
    if len(values[0].strip()) > 12:
        raise DicomWebError(400, f"{name} must be at most {high}")
    number = int(values[0])
    if number < low:
        raise DicomWebError(400, f"{name} must be at least {low}")
    if number > high:
        if cap:
            return high  # a larger limit is served as the maximum, with a Warning
        raise DicomWebError(400, f"{name} must be at most {high}")
    return number


def _boolean(values: list[str]) -> bool:
    if not values:
        return False
    value = values[-1].strip().lower()
    if value not in ("true", "false"):
        raise DicomWebError(400, "fuzzymatching must be true or false")
    return value == "true"


def _include_fields(values: list[str], levels: list[str]) -> list[str]:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if "all" in names:
        return [
            keyword
            for keyword, key in query.KEYS.items()
            if key.level in (*levels, "PATIENT") and not keyword.startswith("NumberOfPatient")
        ]
    return [_keyword(name) for name in names]


def _keyword(name: str) -> str:
    """A keyword or an 8-digit tag (PS3.18 §8.3.4.1 attributeID); no sequence paths."""
    if "." in name:
        raise DicomWebError(400, f"{name[:60]!r}: matching inside sequences is not supported")
    if _TAG.fullmatch(name):
        keyword = keyword_for_tag(Tag(int(name, 16)))
        if keyword:
            return keyword
    elif name in keyword_dict:
        return name
    raise DicomWebError(400, f"{name[:60]!r} is not a DICOM attribute keyword or tag")


def _value(name: str, values: list[str]) -> str:
    """The text to match; NUL and undecodable bytes (which Django turns into U+FFFD) are
    refused rather than matched as something else."""
    value = "\\".join(values)
    if "\0" in value:
        raise DicomWebError(400, f"the value of {name[:60]} contains a NUL character")
    if "\ufffd" in value:
        raise DicomWebError(400, f"the value of {name[:60]} is not valid UTF-8")
    return value


def _set(ds: pydicom.Dataset, keyword: str, value: str) -> None:
    vr = dictionary_VR(keyword)
    if vr == "SQ":
        if value:
            raise DicomWebError(400, f"{keyword} is a sequence: it can be returned, not matched")
        ds.add(DataElement(Tag(keyword), "SQ", []))
        return
    if " or " in vr:
        vr = vr.split(" or ")[0]
    if vr in _LIST_VRS:
        value = value.replace(",", "\\")
    if len(value) > query.MAX_VALUE_LENGTH * 4:
        raise DicomWebError(400, f"the value of {keyword} is too long")
    try:
        ds.add(DataElement(Tag(keyword), vr, value if value else None))
    except (ValueError, TypeError, OverflowError) as exc:
        raise DicomWebError(400, f"{keyword}: {value[:40]!r} is not a valid {vr} value") from exc


def run(search: Search, studies: QuerySet[Study]) -> tuple[list[dict], bool]:
    """The page of results, and whether more matches exist beyond it."""
    try:
        results = list(
            query.find(
                search.identifier,
                model="study",
                studies=studies,
                limit=search.limit + 1,
                offset=search.offset,
                hierarchical=not search.relational,
                fuzzy=search.fuzzy,
                as_json=True,
            )
        )
    except query.QueryError as exc:
        raise DicomWebError(400, str(exc)) from None
    return results[: search.limit], len(results) > search.limit


def with_retrieve_url(result: dict, level: str, base_url: str) -> dict:
    """A result with its RetrieveURL (PS3.18 §10.6.3.3): where its level is retrieved."""
    url = f"{base_url}/studies/{_uid(result, '0020000D')}"
    if level in ("SERIES", "IMAGE"):
        url += f"/series/{_uid(result, '0020000E')}"
    if level == "IMAGE":
        url += f"/instances/{_uid(result, '00080018')}"
    result["00081190"] = {"vr": "UR", "Value": [url]}
    return result


def _uid(result: dict, tag: str) -> str:
    return (result.get(tag, {}).get("Value") or [""])[0]
