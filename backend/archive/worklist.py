"""The worklist's search: which studies a user sees on `/`, in what order, one page at a time.

A search is a few optional fields typed by a person, not a DICOM identifier, so it is read
more forgivingly than C-FIND or QIDO-RS (backend/archive/query.py):

- Patient name: every word typed begins a word of the name, in any order, case and accents
  ignored ("jer buc" finds "Buc^Jérôme"), on the normalised `patient_name_search` column.
- Patient ID and accession number: the value begins the stored one, as typed or in capitals.
- Description: every word typed begins a word of the study description.
- Modality: one of the study's modalities (ModalitiesInStudy holds them backslash-separated).
- Study date: a range, either end open (ISO dates, as `<input type=date>` sends them).

Every condition is a prefix on an indexed column (PostgreSQL's pattern indexes), and the page
is cut in the database, so a page costs the same with 100,000 studies as with 100.
"""

import datetime
import functools
import operator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from .access import visible_studies
from .attributes import search_key
from .models import Patient, Study, StudyOpened

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_OFFSET = 10_000_000
COUNT_LIMIT = 1_000
PATIENTS_FIRST_MAX = 2_000
MAX_TEXT = 64  # longer than any of the DICOM values searched (PN components, LO, SH)

# Sort keys the page offers → columns, with the primary key last so pages never overlap.
SORTS: dict[str, tuple[str, ...]] = {
    "patient_name": ("patient__patient_name_search",),
    "patient_id": ("patient__patient_id",),
    "birth_date": ("patient__patient_birth_date",),
    "sex": ("patient__patient_sex",),
    "study_date": ("study_date", "study_time"),
    "modalities": ("modalities_in_study",),
    "description": ("study_description_search",),
    "accession": ("accession_number",),
    "series": ("number_of_series",),
    "images": ("number_of_instances",),
    "received": ("updated_at",),
}
DEFAULT_SORT = "-study_date"
# A missing value sorts as the lowest: last when newest first, first when oldest first, so
# one index serves both directions (migration 0004).
NULLABLE = {"study_date", "study_time", "patient__patient_birth_date"}


class SearchError(ValueError):
    """A search that cannot be run; str() says why in words for the page."""


@dataclass(frozen=True)
class Search:
    name: str = ""
    patient_id: str = ""
    accession: str = ""
    description: str = ""
    modality: str = ""
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    sort: str = DEFAULT_SORT
    limit: int = PAGE_SIZE
    offset: int = 0


def parse(params) -> Search:
    """A Search from query parameters (a QueryDict or dict); raises SearchError."""
    text = {key: _text(params, key) for key in _TEXT_FIELDS}
    sort = params.get("sort") or DEFAULT_SORT
    if sort.removeprefix("-") not in SORTS:
        raise SearchError(f"cannot sort by {sort[:40]!r}; choose one of {', '.join(SORTS)}")
    date_from, date_to = _date(params, "date_from"), _date(params, "date_to")
    if date_from and date_to and date_from > date_to:
        raise SearchError("the study date range ends before it begins")
    return Search(
        **text,
        date_from=date_from,
        date_to=date_to,
        sort=sort,
        limit=_int(params, "limit", PAGE_SIZE, 1, MAX_PAGE_SIZE),
        offset=_int(params, "offset", 0, 0, MAX_OFFSET),
    )


_TEXT_FIELDS = ("name", "patient_id", "accession", "description", "modality")


def _text(params, key: str) -> str:
    value = (params.get(key) or "").replace("\x00", "").strip()
    if len(value) > MAX_TEXT:
        raise SearchError(f"{key.replace('_', ' ')} is longer than {MAX_TEXT} characters")
    return value


def _date(params, key: str) -> datetime.date | None:
    value = (params.get(key) or "").strip()
    if not value:
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        label = key.replace("_", " ")
        raise SearchError(f"{label} {value[:20]!r} is not a date (YYYY-MM-DD)") from None


def _int(params, key: str, default: int, low: int, high: int) -> int:
    value = params.get(key)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise SearchError(f"{key} must be a whole number") from None
    if not low <= number <= high:
        raise SearchError(f"{key} must be between {low} and {high}")
    return number


def studies(user, search: Search) -> QuerySet[Study]:
    """The studies `user` may see that match, in the requested order (not yet cut)."""
    rows = visible_studies(user).filter(_conditions(search))
    columns = SORTS[search.sort.removeprefix("-")]
    if search.sort.startswith("-"):
        order = [F(c).desc(nulls_last=True) if c in NULLABLE else F(c).desc() for c in columns]
        return rows.order_by(*order, "-pk")
    order = [F(c).asc(nulls_first=True) if c in NULLABLE else F(c).asc() for c in columns]
    return rows.order_by(*order, "pk")


@dataclass(frozen=True)
class Page:
    rows: list[dict]
    total: int  # how many match, counted up to COUNT_LIMIT
    exact: bool  # False: at least `total` match


def page(user, search: Search) -> Page:
    """One page of worklist rows and how many studies match in all."""
    matching = studies(user, search)
    # Ids first: skipping `offset` rows then walks an index alone, and only the page's
    # rows are joined to their patient and read whole.
    ids = list(matching.values_list("pk", flat=True)[search.offset : search.offset + search.limit])
    opened = StudyOpened.objects.filter(user=user, study=OuterRef("pk")).values("opened_at")
    found = Study.objects.select_related("patient").annotate(opened_at=Subquery(opened[:1]))
    by_id = found.in_bulk(ids)
    new_since = timezone.now() - timedelta(hours=settings.LIGHTBOX_WORKLIST_NEW_HOURS)
    rows = [row(by_id[pk], new_since) for pk in ids if pk in by_id]
    if search.offset == 0 and len(ids) < search.limit:
        return Page(rows, len(ids), True)  # all of them are on this page: no count needed
    # Counting every match of a broad search would cost more than the page; past
    # COUNT_LIMIT the page says "1,000+" and keeps paging.
    total = matching.order_by().values("pk")[: COUNT_LIMIT + 1].count()
    return Page(rows, min(total, COUNT_LIMIT), total <= COUNT_LIMIT)


def row(study: Study, new_since: datetime.datetime) -> dict:
    """One study as the worklist shows it. `new`: it arrived or grew after this user last
    opened it (or, if never opened, within LIGHTBOX_WORKLIST_NEW_HOURS)."""
    patient = study.patient
    opened_at = getattr(study, "opened_at", None)
    return {
        "study_instance_uid": study.study_instance_uid,
        "patient_name": patient.patient_name,
        "patient_id": patient.patient_id,
        "patient_birth_date": _iso(patient.patient_birth_date),
        "patient_sex": patient.patient_sex,
        "study_date": _iso(study.study_date),
        "study_time": study.study_time.strftime("%H:%M:%S") if study.study_time else None,
        "modalities_in_study": study.modalities_in_study,
        "study_description": study.study_description,
        "accession_number": study.accession_number,
        "number_of_series": study.number_of_series,
        "number_of_instances": study.number_of_instances,
        "received_at": study.updated_at.isoformat(),
        "new": study.updated_at > (opened_at or new_since),
    }


def _iso(value: datetime.date | None) -> str | None:
    return value.isoformat() if value else None


def mark_opened(user, study: Study) -> None:
    """The user opened the study: it is no longer new to them until it grows again."""
    StudyOpened.objects.update_or_create(
        user=user, study=study, defaults={"opened_at": timezone.now()}
    )


def _conditions(search: Search) -> Q:
    conditions = [_patients(search)]
    if search.accession:
        conditions.append(_prefix("accession_number", search.accession))
    if search.description:
        conditions.append(_words("study_description_search", search.description))
    if search.modality:
        conditions.append(_modality(search.modality.upper()))
    if search.date_from:
        conditions.append(Q(study_date__gte=search.date_from))
    if search.date_to:
        conditions.append(Q(study_date__lte=search.date_to))
    return functools.reduce(operator.and_, conditions)


def _patients(search: Search) -> Q:
    """Name and patient ID are matched on the (smaller) patient table first. When few
    patients match, their keys go to the study query as a list: PostgreSQL then reads just
    their studies, where it would otherwise walk every study in date order testing each
    one's patient (its estimate for a word inside a name is blind) — ~150 ms at 100,000
    studies for a rare name instead of a few."""
    conditions = [Q()]
    if search.name:
        conditions.append(_words("patient_name_search", search.name))
    if search.patient_id:
        conditions.append(_prefix("patient_id", search.patient_id))
    if len(conditions) == 1:
        return Q()
    patients = Patient.objects.filter(functools.reduce(operator.and_, conditions))
    keys = list(patients.values_list("pk", flat=True)[: PATIENTS_FIRST_MAX + 1])
    if len(keys) <= PATIENTS_FIRST_MAX:
        return Q(patient_id__in=keys)
    return Q(patient__in=patients.values("pk"))  # broad: walking the sort order is better


def _words(column: str, value: str) -> Q:
    """Every word of `value` begins a word of the normalised column. Wildcards typed out of
    DICOM habit are read as the prefix they already are."""
    words = search_key(value.replace("*", " ").replace("?", " ")).split()
    if not words:
        return Q()
    return functools.reduce(
        operator.and_,
        (
            Q(**{f"{column}__startswith": word}) | Q(**{f"{column}__contains": f" {word}"})
            for word in words
        ),
    )


def _prefix(column: str, value: str) -> Q:
    condition = Q(**{f"{column}__startswith": value})
    if value.upper() != value:
        condition |= Q(**{f"{column}__startswith": value.upper()})
    return condition


def _modality(value: str) -> Q:
    column = "modalities_in_study"
    return (
        Q(**{column: value})
        | Q(**{f"{column}__startswith": value + "\\"})
        | Q(**{f"{column}__endswith": "\\" + value})
        | Q(**{f"{column}__contains": "\\" + value + "\\"})
    )
