"""C-FIND matching over the index (PS3.4 Annex C), for the DICOM receiver and QIDO-RS.

find() turns a request identifier into one database query over the indexed columns and
yields one response identifier per match. Choices where the standard leaves room:

- Hierarchical search only (PS3.4 C.4.1.2.2): the unique keys of every level above the
  QueryRetrieveLevel must hold a single value (C.4.1.2.1); a value in a key of a level below
  is a relational query and raises QueryError. Keys of levels above may also match.
- Single value matching (C.2.2.2.1) is case-sensitive, except for PN (PatientName,
  ReferringPhysicianName), which compare the normalised *_search columns: case and accents
  ignored, '^' and '=' read as spaces, all component groups as one text. "Buc^Jerome" finds
  "Buc^Jérôme"; "Yamada^Tarou" does not find "Yamada^Tarou=山田^太郎", "Yamada^Tarou*" does.
- A key holding several values (backslash) matches if any value matches: list of UID
  matching (C.2.2.2.2) for UI, the same rule for the text keys (e.g. ModalitiesInStudy CT\\MR).
- Universal matching (C.2.2.2.3): an empty value, or a value of only '*'.
- Wildcards (C.2.2.2.4) '*' and '?' run in the database: LIKE on PostgreSQL (case-sensitive,
  and a fixed prefix uses the pattern index Django adds to db_index text columns), GLOB on
  SQLite (whose LIKE ignores case). Not allowed in UI, DA, TM and numbers.
- Range matching (C.2.2.2.5) for DA and TM; DT only at IMAGE level, from dicom_json. A TM
  bound matches to its precision: "1030" is 10:30:00 to 10:30:59.999999. StudyDate and
  StudyTime match independently: combined date-time matching (C.2.2.2.5.2) needs extended
  negotiation, which find() does not take.
- ModalitiesInStudy matches when any series of the study matches (Series.modality, indexed).
- Sequence matching (C.2.2.2.6) is not supported: a sequence is a return key only; the
  receiver may answer 0xFF01 (optional keys not supported) when one held items.
- Keys the index does not hold are returned empty and never match (optional keys,
  C.2.2.1.2), except at IMAGE level, where they are read from Instance.dicom_json and, when
  given a value, matched in Python on the rows the indexed keys selected.
- Counts (NumberOfPatientRelated*) count only the studies in `studies`.

Responses carry every requested key (universal return), the unique keys of the query level
and those above, QueryRetrieveLevel, and SpecificCharacterSet "ISO_IR 192" (PS3.5 §6.1):
names leave as the Unicode the index stores. RetrieveAETitle is left for the caller to fill.
"""

import datetime
import fnmatch
import functools
import json
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pydicom
from django.db.models import Count, F, Lookup, Model, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.tag import BaseTag, Tag

from .attributes import search_key
from .models import Instance, Patient, Series, Study

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
MODEL_LEVELS = {"patient": LEVELS, "study": LEVELS[1:]}  # PS3.4 C.6.1, C.6.2: no PATIENT level
UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
PARENT = {"STUDY": "patient", "SERIES": "study", "IMAGE": "series"}  # foreign key upwards
ORDERING = {
    "PATIENT": ("patient_name_search", "patient_id", "pk"),
    "STUDY": ("-study_date", "-study_time", "-pk"),
    "SERIES": ("series_number", "pk"),
    "IMAGE": ("instance_number", "pk"),
}
RESPONSE_CHARSET = "ISO_IR 192"
MAX_VALUE_LENGTH = 1024  # far above any VR's maximum (PS3.5 §6.2), far below harm
MAX_VALUES = 1000  # UIDs in one list of UID matching
CHUNK_SIZE = 500
PATIENTS_FIRST_MAX = 2000  # patients matched on their own keys before studies are
_QR_LEVEL = Tag("QueryRetrieveLevel")
_CHARSET = Tag("SpecificCharacterSet")
_NUMBER_VRS = {"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
_RANGE_VRS = {"DA", "TM", "DT"}
_TEXT_VRS = {"AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT", "UI"}
_JSON_MATCHING_VRS = _NUMBER_VRS | _RANGE_VRS | _TEXT_VRS
_DIGITS = {"DA": 8, "TM": 12, "DT": 20}  # YYYYMMDD, HHMMSSFFFFFF, both: for range compares
_DT = re.compile(r"(\d{4}(?:\d{2}){0,5}(?:\.\d{1,6})?)(?:[+-]\d{4})?")
_UID = re.compile(r"(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*))*")


class QueryError(ValueError):
    """The identifier cannot be processed; str(exc) says why. (C-FIND answers 0xA900 or
    0xC000-family.)"""


@dataclass(frozen=True)
class Key:
    """A key the index holds: its level, its column there, how a value matches it."""

    level: str
    column: str
    kind: str  # uid, text, pn, date, time, int, modality, or return (never matches)
    search: str = ""  # the normalised, indexed column a text match narrows by


KEYS: dict[str, Key] = {
    "PatientID": Key("PATIENT", "patient_id", "text"),
    "IssuerOfPatientID": Key("PATIENT", "issuer_of_patient_id", "text"),
    "PatientName": Key("PATIENT", "patient_name", "pn", "patient_name_search"),
    "PatientBirthDate": Key("PATIENT", "patient_birth_date", "date"),
    "PatientSex": Key("PATIENT", "patient_sex", "text"),
    "NumberOfPatientRelatedStudies": Key("PATIENT", "query_patient_studies", "return"),
    "NumberOfPatientRelatedSeries": Key("PATIENT", "query_patient_series", "return"),
    "NumberOfPatientRelatedInstances": Key("PATIENT", "query_patient_instances", "return"),
    "StudyInstanceUID": Key("STUDY", "study_instance_uid", "uid"),
    "StudyDate": Key("STUDY", "study_date", "date"),
    "StudyTime": Key("STUDY", "study_time", "time"),
    "AccessionNumber": Key("STUDY", "accession_number", "text"),
    "StudyID": Key("STUDY", "study_id", "text"),
    "StudyDescription": Key("STUDY", "study_description", "text", "study_description_search"),
    "ReferringPhysicianName": Key(
        "STUDY", "referring_physician_name", "pn", "referring_physician_search"
    ),
    "ModalitiesInStudy": Key("STUDY", "modalities_in_study", "modality"),
    "SOPClassesInStudy": Key("STUDY", "", "return"),
    "NumberOfStudyRelatedSeries": Key("STUDY", "number_of_series", "return"),
    "NumberOfStudyRelatedInstances": Key("STUDY", "number_of_instances", "return"),
    "SeriesInstanceUID": Key("SERIES", "series_instance_uid", "uid"),
    "Modality": Key("SERIES", "modality", "text"),
    "SeriesNumber": Key("SERIES", "series_number", "int"),
    "SeriesDescription": Key("SERIES", "series_description", "text"),
    "SeriesDate": Key("SERIES", "series_date", "date"),
    "SeriesTime": Key("SERIES", "series_time", "time"),
    "BodyPartExamined": Key("SERIES", "body_part_examined", "text"),
    "NumberOfSeriesRelatedInstances": Key("SERIES", "number_of_instances", "return"),
    "SOPInstanceUID": Key("IMAGE", "sop_instance_uid", "uid"),
    "SOPClassUID": Key("IMAGE", "sop_class_uid", "uid"),
    "InstanceNumber": Key("IMAGE", "instance_number", "int"),
    "ContentDate": Key("IMAGE", "content_date", "date"),
    "ContentTime": Key("IMAGE", "content_time", "time"),
    "NumberOfFrames": Key("IMAGE", "number_of_frames", "int"),
    "Rows": Key("IMAGE", "rows", "int"),
    "Columns": Key("IMAGE", "columns", "int"),
    "BitsAllocated": Key("IMAGE", "bits_allocated", "int"),
}
_PATIENT_COUNTS = {
    "NumberOfPatientRelatedStudies": Count("pk"),
    "NumberOfPatientRelatedSeries": Sum("number_of_series"),
    "NumberOfPatientRelatedInstances": Sum("number_of_instances"),
}
# Return keys with a fixed answer (PS3.4 C.4.1.2.2.1): everything indexed is on line.
_CONSTANTS = {"InstanceAvailability": "ONLINE", "RetrieveAETitle": None}


@dataclass(frozen=True)
class Requested:
    """One element of the identifier: its tag, VR, and value (None for a sequence)."""

    tag: BaseTag
    vr: str
    value: str | None

    @property
    def keyword(self) -> str:
        return keyword_for_tag(self.tag)

    @property
    def is_universal(self) -> bool:
        return self.value is None or _is_universal(self.value)


@dataclass
class Plan:
    level: str
    requested: list[Requested]
    indexed: list[Requested] = field(default_factory=list)  # matched by the database
    in_json: list[Requested] = field(default_factory=list)  # matched in Python (IMAGE level)
    fuzzy: bool = False


class _Wildcard(Lookup):
    """`*` and `?` (PS3.4 C.2.2.2.4) as a case-sensitive pattern the database can index."""

    lookup_name = "dicom_wildcard"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        pattern = re.sub(r"([\\%_])", r"\\\1", self.rhs).replace("*", "%").replace("?", "_")
        return f"{lhs} LIKE %s", [*params, pattern]

    def as_sqlite(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        # GLOB's * and ? are DICOM's; only its character classes need quoting.
        return f"{lhs} GLOB %s", [*params, self.rhs.replace("[", "[[]")]


def find(
    identifier: pydicom.Dataset,
    *,
    model: str,
    studies: QuerySet[Study],
    limit: int | None = None,
    offset: int = 0,
    hierarchical: bool = True,
    fuzzy: bool = False,
    as_json: bool = False,
) -> Iterator[Any]:
    """model: "patient" (Patient Root Q/R, PS3.4 C.6.1) or "study" (Study Root, C.6.2).
    `studies` is the access-filtered base queryset: results must never include anything
    outside it. Yields one identifier per match, skipping the first `offset`.

    hierarchical=False lets a query leave the unique keys above its level empty, as
    QIDO-RS does for /series and /instances (PS3.18 §10.6.1). fuzzy=True matches person
    names word by word: each given word starts a word of the name (PS3.18 §8.3.4.1).
    as_json=True yields DICOM JSON objects (PS3.18 §F.2) instead of data sets, built
    straight from the rows: QIDO-RS answers without a pydicom round trip.

    The identifier is checked before this returns, so a QueryError comes from the call
    itself; the rows are then streamed from the database in chunks, in a fixed order.
    """
    if model not in MODEL_LEVELS:
        raise ValueError(f"unknown query/retrieve information model {model!r}")
    if (limit is not None and limit < 0) or offset < 0:
        raise ValueError("limit and offset must not be negative")
    plan = _plan(identifier, model, hierarchical=hierarchical, fuzzy=fuzzy)
    if studies.query.is_sliced:
        studies = Study.objects.filter(pk__in=studies.values("pk"))
    rows = _queryset(plan, studies)
    if plan.level == "IMAGE" and not _needs_json(plan):
        rows = rows.defer("dicom_json")
    if not plan.in_json:
        rows = rows[offset : offset + limit] if limit is not None else rows[offset:]
        offset = 0
    return _results(plan, rows, limit, offset, as_json)


def _plan(
    identifier: pydicom.Dataset, model: str, *, hierarchical: bool = True, fuzzy: bool = False
) -> Plan:
    level = _level(identifier, model)
    plan = Plan(level, _requested(identifier), fuzzy=fuzzy)
    for item in plan.requested:
        _classify(plan, item)
    if hierarchical:
        _check_hierarchy(plan, model)
    return plan


def _level(identifier: pydicom.Dataset, model: str) -> str:
    level = _element_text(identifier, _QR_LEVEL) if _QR_LEVEL in identifier else ""
    if level not in MODEL_LEVELS[model]:
        allowed = ", ".join(MODEL_LEVELS[model])
        raise QueryError(f"QueryRetrieveLevel {level!r} is not one of {allowed}")
    return level


def _requested(identifier: pydicom.Dataset) -> list[Requested]:
    """Every key of the identifier but the command's own (group 0000, file meta, level)."""
    skip = {_QR_LEVEL, _CHARSET}
    items = []
    for tag in list(identifier.keys()):
        if tag.group in (0x0000, 0x0002) or tag.element == 0 or tag in skip:
            continue
        vr = _vr(identifier, tag)
        value = None if vr == "SQ" else _element_text(identifier, tag)
        items.append(Requested(tag, vr, value))
    return items


def _vr(identifier: pydicom.Dataset, tag: BaseTag) -> str:
    try:
        known = dictionary_VR(tag)
    except KeyError:
        known = ""
    if known and " " not in known:  # "US or SS" and friends: trust the sender
        return known
    try:
        return identifier[tag].VR
    except Exception as exc:
        raise QueryError(f"{tag} cannot be read: {exc}") from exc


def _element_text(identifier: pydicom.Dataset, tag: BaseTag) -> str:
    """A key's value as text, multiple values joined by backslash (PS3.5 §6.4)."""
    try:
        value = identifier[tag].value
    except Exception as exc:  # a value pydicom cannot convert
        raise QueryError(f"{tag} cannot be read: {exc}") from exc
    return _clean(tag, _as_text(tag, value))


def _as_text(tag: BaseTag, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise QueryError(f"{tag} is not text") from exc
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return "\\".join(_as_text(tag, v) for v in value)
    if isinstance(value, pydicom.Sequence | pydicom.Dataset):
        raise QueryError(f"{tag} is a sequence where a value was expected")
    return str(value)


def _clean(tag: BaseTag, text: str) -> str:
    """Padding dropped (PS3.5 §6.2); values no database can take refused."""
    text = text.strip(" \0")
    parts = text.split("\\")
    if len(parts) > MAX_VALUES or any(len(p) > MAX_VALUE_LENGTH for p in parts):
        raise QueryError(f"{tag} is too long")
    if "\0" in text:
        raise QueryError(f"{tag} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise QueryError(f"{tag} is not valid text") from exc
    return text


def _classify(plan: Plan, item: Requested) -> None:
    """A matching key goes to the database or, at IMAGE level, to the stored JSON."""
    if item.is_universal:
        return
    key = KEYS.get(item.keyword)
    if key is None:
        if (
            plan.level == "IMAGE"
            and item.vr in _JSON_MATCHING_VRS
            and item.keyword not in _CONSTANTS
        ):
            plan.in_json.append(item)
        return  # an optional key this archive cannot match on (PS3.4 C.2.2.1.2)
    if LEVELS.index(key.level) > LEVELS.index(plan.level):
        raise QueryError(
            f"{item.keyword} is below the {plan.level} level: relational queries "
            "are not supported (PS3.4 C.4.1.2.2)"
        )
    if key.kind != "return":
        plan.indexed.append(item)


def _check_hierarchy(plan: Plan, model: str) -> None:
    """Hierarchical search (PS3.4 C.4.1.2.1): one value in each unique key above the level."""
    given = {item.keyword: item.value for item in plan.requested}
    for level in MODEL_LEVELS[model][: MODEL_LEVELS[model].index(plan.level)]:
        keyword = UNIQUE_KEYS[level]
        value = given.get(keyword) or ""
        if not value or "\\" in value or "*" in value or "?" in value:
            raise QueryError(
                f"a {plan.level} level query needs a single {keyword} (PS3.4 C.4.1.2.1)"
            )


# The database query


def _queryset(plan: Plan, studies: QuerySet[Study]) -> QuerySet:
    rows = _base(plan.level, studies)
    indexed = plan.indexed
    if plan.level != "PATIENT":
        rows, indexed = _patients_first(plan, rows)
    for item in indexed:
        key = KEYS[item.keyword]
        rows = rows.filter(_condition(plan.level, key, item.value or "", fuzzy=plan.fuzzy))
    wanted = {item.keyword for item in plan.requested}
    for keyword, total in _PATIENT_COUNTS.items():
        if keyword in wanted:
            rows = rows.annotate(
                **{KEYS[keyword].column: _patient_count(plan.level, studies, total)}
            )
    return rows.order_by(*ORDERING[plan.level])


def _patients_first(plan: Plan, rows: QuerySet) -> tuple[QuerySet, list[Requested]]:
    """Patient keys (a name prefix, an ID) select few patients through their own indexes.
    Selecting them first keeps PostgreSQL from walking every study in date order while it
    tests each one's patient, which it chose for rare name prefixes (~200 ms at 100,000
    studies instead of ~2 ms). Returns the rows narrowed and the conditions still to apply."""
    on_patient = [i for i in plan.indexed if KEYS[i.keyword].level == "PATIENT"]
    if not on_patient:
        return rows, plan.indexed
    patients = Patient.objects.all()
    for item in on_patient:
        key = KEYS[item.keyword]
        patients = patients.filter(_condition("PATIENT", key, item.value or "", fuzzy=plan.fuzzy))
    pks = list(patients.values_list("pk", flat=True)[: PATIENTS_FIRST_MAX + 1])
    if len(pks) > PATIENTS_FIRST_MAX:
        return rows, plan.indexed  # not selective: the join is the better plan
    others = [i for i in plan.indexed if i not in on_patient]
    return rows.filter(**{f"{_path(plan.level, 'PATIENT')}pk__in": pks}), others


def _base(level: str, studies: QuerySet[Study]) -> QuerySet:
    """Rows of the level within `studies`, each with its parents in the same query."""
    if level == "PATIENT":
        return Patient.objects.filter(pk__in=studies.values("patient_id"))
    if level == "STUDY":
        return studies.select_related("patient")
    if level == "SERIES":
        return Series.objects.filter(study__in=studies).select_related("study__patient")
    return Instance.objects.filter(series__study__in=studies).select_related(
        "series__study__patient"
    )


def _path(query_level: str, key_level: str) -> str:
    """The lookup prefix from a row of the query level to its parent at the key's level."""
    parts = []
    level = query_level
    while level != key_level:
        parts.append(PARENT[level])
        level = LEVELS[LEVELS.index(level) - 1]
    return "".join(f"{p}__" for p in parts)


def _patient_count(level: str, studies: QuerySet[Study], total) -> Coalesce:
    """A count over the patient's studies that are in `studies`, never beyond."""
    patient = "pk" if level == "PATIENT" else _path(level, "STUDY") + "patient_id"
    related = studies.filter(patient_id=OuterRef(patient)).order_by().values("patient_id")
    return Coalesce(Subquery(related.annotate(n=total).values("n")[:1]), 0)


def _condition(level: str, key: Key, value: str, *, fuzzy: bool = False) -> Q:
    """Any of the backslash-separated values matches (list of UID matching, C.2.2.2.2)."""
    prefix = _path(level, key.level)
    if key.kind == "pn" and fuzzy and "*" not in value and "?" not in value:
        return _fuzzy_name(prefix + key.search, value)
    if key.kind == "uid":
        return Q(**{f"{prefix}{key.column}__in": _uids(value)})
    if key.kind in ("date", "time", "int") and "\\" in value:
        raise QueryError(f"{key.column} takes a single value or a range")
    values = value.split("\\")
    if any(_is_universal(v) for v in values):
        return Q()  # matches everything: Django drops an empty Q from an OR, so say it here
    return functools.reduce(operator.or_, (_single(prefix, key, v) for v in values))


def _fuzzy_name(column: str, value: str) -> Q:
    """Every word of `value` begins a word of the name, in any order and component:
    "jer buc" finds "Buc^Jérôme"; case and accents are ignored as in exact matching."""
    words = search_key(value.replace("\\", " ")).split()
    if not words:
        return Q()
    conditions = [
        Q(**{f"{column}__startswith": word}) | Q(**{f"{column}__contains": f" {word}"})
        for word in words
    ]
    return functools.reduce(operator.and_, conditions)


def _is_universal(value: str) -> bool:
    """Universal matching (PS3.4 C.2.2.2.3), or a value of only '*' (C.2.2.2.4)."""
    return value.strip("*") == ""


def _single(prefix: str, key: Key, value: str) -> Q:
    column = prefix + key.column
    if key.kind == "pn":
        return _pattern(prefix + key.search, search_key(value))
    if key.kind == "text":
        return _narrowed(prefix, key, value) & _pattern(column, value)
    if key.kind == "modality":
        series = Series.objects.filter(_pattern("modality", value))
        return Q(**{f"{prefix}pk__in": series.values("study_id")})
    if key.kind == "date":
        return _date_range(column, value)
    if key.kind == "time":
        low, high = _time_range(value)
        return Q(**{f"{column}__gte": low, f"{column}__lte": high})
    return Q(**{column: _integer(value)})


def _pattern(column: str, value: str) -> Q:
    """Single value matching, or wildcard matching when the value holds `*` or `?`."""
    if not value:
        return Q()  # a PN of separators only: nothing to compare
    if "*" in value or "?" in value:
        return Q(_Wildcard(F(column), value))
    return Q(**{column: value})


def _narrowed(prefix: str, key: Key, value: str) -> Q:
    """The indexed, normalised column selects candidates; the exact column decides."""
    if not key.search:
        return Q()
    if "*" not in value and "?" not in value:
        return Q(**{prefix + key.search: search_key(value)})
    # Only an ASCII prefix normalises the same alone as inside the longer stored text.
    literal = re.sub(r"[^\x20-\x7e].*|[*?].*", "", value, flags=re.S)
    normalised = search_key(literal)
    return Q(**{f"{prefix}{key.search}__startswith": normalised}) if normalised else Q()


def _uids(value: str) -> list[str]:
    uids = value.split("\\")
    for uid in uids:
        if len(uid) > 64 or not _UID.fullmatch(uid):
            raise QueryError(f"{uid[:70]!r} is not a UID (PS3.5 §9.1)")
    return uids


def _integer(value: str) -> int:
    if not re.fullmatch(r"[+-]?\d{1,10}", value.strip()) or abs(int(value)) > 2**31 - 1:
        raise QueryError(f"{value[:20]!r} is not an integer that can be stored")
    return int(value)


def _split_range(value: str) -> tuple[str, str] | None:
    """(low, high) of a range "A-B", "A-" or "-B" (PS3.4 C.2.2.2.5), None for one value."""
    if "-" not in value:
        return None
    low, _, high = value.partition("-")
    if "-" in high or not (low or high):
        raise QueryError(f"{value[:40]!r} is not a range")
    return low.strip(), high.strip()


def _date_range(column: str, value: str) -> Q:
    bounds = _split_range(value)
    if bounds is None:
        return Q(**{column: _date(value)})
    low, high = bounds
    after = Q(**{f"{column}__gte": _date(low)}) if low else Q()
    before = Q(**{f"{column}__lte": _date(high)}) if high else Q()
    return after & before


def _date(value: str) -> datetime.date:
    """DA (PS3.5 §6.2): YYYYMMDD."""
    try:
        if re.fullmatch(r"\d{8}", value):
            return datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        pass
    raise QueryError(f"{value[:40]!r} is not a date (YYYYMMDD)")


def _time_range(value: str) -> tuple[datetime.time, datetime.time]:
    bounds = _split_range(value)
    if bounds is None:
        return _time(value, upper=False), _time(value, upper=True)
    low, high = bounds
    return (
        _time(low, upper=False) if low else datetime.time.min,
        _time(high, upper=True) if high else datetime.time.max,
    )


def _time(value: str, *, upper: bool) -> datetime.time:
    """TM (PS3.5 §6.2) HH[MM[SS[.F{1,6}]]]; an upper bound extends to its precision."""
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", value)
    if not match or (match[4] and not match[3]):
        raise QueryError(f"{value[:40]!r} is not a time (HHMMSS.FFFFFF)")
    fill = "9" if upper else "0"
    hour, minute, second = match[1], match[2], match[3]
    fraction = (match[4] or "").ljust(6, fill) if second else fill * 6
    try:
        return datetime.time(
            int(hour),
            int(minute or (59 if upper else 0)),
            min(int(second or (59 if upper else 0)), 59),  # TM allows a leap second
            int(fraction),
        )
    except ValueError as exc:
        raise QueryError(f"{value[:40]!r} is not a time (HHMMSS.FFFFFF)") from exc


# Matching in Python: IMAGE-level keys that only the stored DICOM JSON holds


def _json_matches(items: list[Requested]) -> Callable[[dict], bool]:
    tests = [(f"{item.tag:08X}", _value_test(item)) for item in items]

    def matches(header: dict) -> bool:
        return all(_stored_matches(header.get(tag), test) for tag, test in tests)

    return matches


def _stored_matches(element: dict | None, test: Callable[[str], bool]) -> bool:
    values = (element or {}).get("Value") or []
    return any(test(_json_text(v)) for v in values if v is not None)


def _json_text(value: Any) -> str:
    if isinstance(value, dict):  # PN (PS3.18 §F.2.2): component groups
        groups = [value.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
        return "=".join(groups).rstrip("=")
    return str(value)


def _value_test(item: Requested) -> Callable[[str], bool]:
    """A test of one stored value against the requested value(s), by VR."""
    assert item.value is not None
    if item.vr == "UI":
        uids = set(_uids(item.value))
        return lambda stored: stored in uids
    if item.vr in _RANGE_VRS:
        return _range_test(item.vr, item.value)
    tests = [_one_value_test(item.vr, part) for part in item.value.split("\\")]
    return lambda stored: any(test(stored) for test in tests)


def _one_value_test(vr: str, value: str) -> Callable[[str], bool]:
    if _is_universal(value):
        return lambda stored: True
    if vr in _NUMBER_VRS:
        wanted = _number(value)
        return lambda stored: _number(stored, strict=False) == wanted
    normalise: Callable[[str], str] = search_key if vr == "PN" else str.strip
    value = normalise(value)
    if "*" in value or "?" in value:
        regex = re.compile(fnmatch.translate(value.replace("[", "[[]")))
        return lambda stored: regex.match(normalise(stored)) is not None
    return lambda stored: normalise(stored) == value


def _number(value: str, *, strict: bool = True) -> float | None:
    try:
        return float(value)
    except ValueError:
        if strict:
            raise QueryError(f"{value[:40]!r} is not a number") from None
        return None


def _range_test(vr: str, value: str) -> Callable[[str], bool]:
    """DA, TM, DT compared as digit strings padded to full precision (PS3.4 C.2.2.2.5)."""
    if "\\" in value:
        raise QueryError(f"{value[:40]!r}: a {vr} key takes a single value or a range")
    bounds = _split_range(value) or (value, value)
    low = _digits(vr, bounds[0], "0") if bounds[0] else ""
    high = _digits(vr, bounds[1], "9") if bounds[1] else "~"

    def test(stored: str) -> bool:
        try:
            return low <= _digits(vr, stored.strip(), "0") <= high
        except QueryError:
            return False

    return test


def _digits(vr: str, value: str, fill: str) -> str:
    if vr == "DA":
        _date(value)
    elif vr == "TM":
        _time(value, upper=False)
    elif not _DT.fullmatch(value):
        raise QueryError(f"{value[:40]!r} is not a date-time")
    digits = value.split("+")[0].split("-")[0] if vr == "DT" else value
    return digits.replace(".", "").ljust(_DIGITS[vr], fill)


# Responses


def _needs_json(plan: Plan) -> bool:
    return plan.level == "IMAGE" and any(
        item.keyword not in KEYS and item.keyword not in _CONSTANTS for item in plan.requested
    )


def _results(
    plan: Plan, rows: QuerySet, limit: int | None, offset: int = 0, as_json: bool = False
) -> Iterator[Any]:
    """`offset` here is what the database could not skip (matches made in Python)."""
    if limit == 0:
        return
    matches = _json_matches(plan.in_json) if plan.in_json else None
    needs_json = _needs_json(plan)
    sent = 0
    for row in rows.iterator(chunk_size=CHUNK_SIZE):
        header = json.loads(row.dicom_json) if needs_json else {}
        if matches and not matches(header):
            continue
        if offset:
            offset -= 1
            continue
        yield _json_response(plan, row, header) if as_json else _response(plan, row, header)
        sent += 1
        if limit is not None and sent >= limit:
            return


def _response(plan: Plan, row: Model, header: dict) -> pydicom.Dataset:
    objects = _objects(plan.level, row)
    ds = pydicom.Dataset()
    ds.SpecificCharacterSet = RESPONSE_CHARSET
    ds.QueryRetrieveLevel = plan.level
    for keyword in _unique_keys(plan.level):
        _add(ds, Tag(keyword), dictionary_VR(keyword), _indexed_value(keyword, row, objects))
    for item in plan.requested:
        if item.keyword in KEYS:
            _add(ds, item.tag, item.vr, _indexed_value(item.keyword, row, objects))
        elif item.keyword in _CONSTANTS:
            _add(ds, item.tag, item.vr, _CONSTANTS[item.keyword])
        else:
            _add_from_json(ds, item, header)
    return ds


def _unique_keys(level: str) -> list[str]:
    """The unique keys of the level and those above (PatientID is one in both models)."""
    return [UNIQUE_KEYS[lvl] for lvl in LEVELS[: LEVELS.index(level) + 1]]


def _objects(level: str, row: Model) -> dict[str, Model]:
    objects = {level: row}
    while level != "PATIENT":
        row = getattr(row, PARENT[level])
        level = LEVELS[LEVELS.index(level) - 1]
        objects[level] = row
    return objects


def _indexed_value(keyword: str, row: Model, objects: dict[str, Model]) -> Any:
    key = KEYS[keyword]
    if keyword in _PATIENT_COUNTS:
        return getattr(row, key.column)
    if key.level not in objects:
        return None  # a key of a level below: relational, never filled
    obj = objects[key.level]
    if keyword == "SOPClassesInStudy":
        return _sop_classes(obj)
    value = getattr(obj, key.column)
    if keyword == "ModalitiesInStudy":
        return value.split("\\") if value else None
    return _dicom(value)


def _sop_classes(study: Model) -> list[str]:
    instances = Instance.objects.filter(series__study_id=study.pk).order_by("sop_class_uid")
    return list(instances.values_list("sop_class_uid", flat=True).distinct())


def _dicom(value: Any) -> Any:
    """Index values in their DICOM string forms (PS3.5 §6.2)."""
    if isinstance(value, datetime.time):
        return value.strftime("%H%M%S.%f" if value.microsecond else "%H%M%S")
    if isinstance(value, datetime.date):
        return value.strftime("%Y%m%d")
    if value == "":
        return None
    return value


def _add(ds: pydicom.Dataset, tag: BaseTag, vr: str, value: Any) -> None:
    """An empty value is zero length, as the VR writes it (PS3.4 C.2.2.1.2 universal return)."""
    ds.add(DataElement(tag, vr, empty_value_for_VR(vr) if value in (None, "", []) else value))


def _add_from_json(ds: pydicom.Dataset, item: Requested, header: dict) -> None:
    """An IMAGE-level key from the stored header, or empty (universal return, C.2.2.1.2)."""
    element = header.get(f"{item.tag:08X}")
    if element and "BulkDataURI" not in element:
        try:
            stored = pydicom.Dataset.from_json({f"{item.tag:08X}": element})
            ds.add(stored[item.tag])
            return
        except Exception:  # noqa: S110 - a stored value pydicom refuses is returned empty
            pass
    _add(ds, item.tag, item.vr, None)


# DICOM JSON responses (PS3.18 §F.2), for QIDO-RS

_JSON_INTEGER_VRS = {"IS", "SL", "SS", "UL", "US", "UV", "SV"}
_JSON_FLOAT_VRS = {"DS", "FL", "FD"}


def _json_response(plan: Plan, row: Model, header: dict) -> dict[str, dict]:
    objects = _objects(plan.level, row)
    result = {f"{_CHARSET:08X}": {"vr": "CS", "Value": [RESPONSE_CHARSET]}}
    for keyword in _unique_keys(plan.level):
        result[f"{Tag(keyword):08X}"] = _json_element(
            dictionary_VR(keyword), _indexed_value(keyword, row, objects)
        )
    for item in plan.requested:
        tag = f"{item.tag:08X}"
        if item.keyword in KEYS:
            result[tag] = _json_element(item.vr, _indexed_value(item.keyword, row, objects))
        elif item.keyword in _CONSTANTS:
            result[tag] = _json_element(item.vr, _CONSTANTS[item.keyword])
        else:
            stored = header.get(tag)
            result[tag] = stored if stored and "BulkDataURI" not in stored else {"vr": item.vr}
    return dict(sorted(result.items()))


def _json_element(vr: str, value: Any) -> dict:
    if value in (None, "", []):
        return {"vr": vr}
    values = value if isinstance(value, list) else [value]
    return {"vr": vr, "Value": [_json_value(vr, v) for v in values]}


def _json_value(vr: str, value: Any) -> Any:
    if vr == "PN":
        groups = str(value).split("=")
        names = dict(zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False))
        return {k: v for k, v in names.items() if v}
    if vr in _JSON_INTEGER_VRS:
        return int(value)
    if vr in _JSON_FLOAT_VRS:
        return float(value)
    return str(value)
