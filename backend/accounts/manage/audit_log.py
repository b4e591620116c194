"""Reading the audit log on /manage: a validated search (AuditFilter), pages of it newest
first, the event types there are, and the CSV export, which is itself audited.
"""

import csv
import functools
import io
import json
import operator
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from ..models import AuditEvent
from .common import Actor, ManageError, NotFound, authorize, record_audit
from .inputs import parse_date, query_id, start_of, text

AUDIT_PAGE = 50
AUDIT_MAX_PAGE = 200
EXPORT_BATCH = 1000


@dataclass(frozen=True)
class AuditFilter:
    """A validated search of the audit log; `described` is what an export records."""

    condition: Q
    described: dict[str, str]

    def events(self) -> QuerySet[AuditEvent]:
        return AuditEvent.objects.filter(self.condition).order_by("-created_at", "-pk")


AUDIT_FILTERS = (
    "since",
    "until",
    "event_type",
    "user",
    "outcome",
    "study_instance_uid",
    "patient_id",
    "address",
    "text",
)


def check_audit_filter(actor: Actor, params: Mapping) -> AuditFilter:
    authorize(actor)
    given = {key: text(params, key, 200) for key in AUDIT_FILTERS}
    given = {key: value for key, value in given.items() if value}
    conditions = [_audit_condition(key, value) for key, value in given.items()]
    return AuditFilter(functools.reduce(operator.and_, conditions, Q()), given)


def _audit_condition(key: str, value: str) -> Q:
    if key == "since":
        return Q(created_at__gte=start_of(parse_date(value, key)))
    if key == "until":
        return Q(created_at__lt=start_of(parse_date(value, key) + timedelta(days=1)))
    if key == "event_type":
        # "admin.*" selects a family of events.
        prefix = value.removesuffix("*")
        return Q(event_type__startswith=prefix) if value.endswith("*") else Q(event_type=value)
    if key == "user":
        return Q(user__username__iexact=value)
    if key == "outcome":
        if value not in AuditEvent.Outcome.values:
            raise ManageError(f"outcome must be one of {', '.join(AuditEvent.Outcome.values)}")
        return Q(outcome=value)
    if key == "address":
        columns = ("peer_address", "calling_ae", "called_ae")
        return functools.reduce(operator.or_, (Q(**{f"{c}__istartswith": value}) for c in columns))
    if key == "text":
        return _detail_contains(value)
    return Q(**{key: value})


def _detail_contains(value: str) -> Q:
    # The detail is JSON: PostgreSQL's text form keeps characters as they are, SQLite's keeps
    # json.dumps' escapes (\u00e9, \"), so both spellings are searched.
    escaped = json.dumps(value)[1:-1]
    spellings = {value, escaped}
    return Q(pk__in=_detail_text_matches(spellings))


def _detail_text_matches(spellings: set[str]) -> QuerySet:
    rows = AuditEvent.objects.annotate(detail_text=Cast("detail", TextField()))
    condition = functools.reduce(operator.or_, (Q(detail_text__icontains=s) for s in spellings))
    return rows.filter(condition).values("pk")


def audit_page(
    actor: Actor, audit_filter: AuditFilter, params: Mapping
) -> tuple[list[AuditEvent], bool]:
    """One page of events, newest first, older than the event ?before=id if given; and
    whether older ones remain. Keyset paging keeps deep pages as fast as the first."""
    authorize(actor)
    limit = _limit(params)
    rows = audit_filter.events().select_related("user")
    if params.get("before"):
        rows = rows.filter(_older_than(query_id(params, "before")))
    page = list(rows[: limit + 1])
    return page[:limit], len(page) > limit


def _limit(params: Mapping) -> int:
    if not params.get("limit"):
        return AUDIT_PAGE
    return min(query_id(params, "limit"), AUDIT_MAX_PAGE)


def _older_than(event_id: int) -> Q:
    anchor = AuditEvent.objects.filter(pk=event_id).only("created_at").first()
    if anchor is None:
        raise NotFound("no such event")
    return _after_in_order(anchor)


def _after_in_order(event: AuditEvent) -> Q:
    """The events listed after `event`, newest first (the order of AuditFilter.events)."""
    return Q(created_at__lt=event.created_at) | Q(created_at=event.created_at, pk__lt=event.pk)


def event_types(actor: Actor) -> list[str]:
    authorize(actor)
    rows = AuditEvent.objects.order_by("event_type").values_list("event_type", flat=True)
    return list(rows.distinct())


CSV_COLUMNS = [
    "id",
    "time",
    "event_type",
    "outcome",
    "user",
    "peer_address",
    "calling_ae",
    "called_ae",
    "study_instance_uid",
    "patient_id",
    "detail",
]


def do_export_audit(actor: Actor, audit_filter: AuditFilter) -> tuple[AsyncIterator[str], bool]:
    """The CSV of the filter's newest LIGHTBOX_AUDIT_EXPORT_MAX_ROWS events, as chunks to
    stream, and whether more events matched. The export is audited first, and holds the
    events recorded before it: what the log held when it was asked for."""
    authorize(actor)
    limit = settings.LIGHTBOX_AUDIT_EXPORT_MAX_ROWS
    truncated = audit_filter.events()[limit : limit + 1].exists()
    detail = {"filter": audit_filter.described, "max_rows": limit, "truncated": truncated}
    export = record_audit(actor, "admin.audit_exported", detail)
    snapshot = AuditFilter(audit_filter.condition & Q(pk__lt=export.pk), audit_filter.described)
    return _csv_chunks(snapshot, limit), truncated


async def _csv_chunks(audit_filter: AuditFilter, limit: int) -> AsyncIterator[str]:
    # Async, so that uvicorn streams it: Django buffers a sync iterator under ASGI. The
    # database is read in keyset batches, in Django's thread for this request.
    yield _csv_lines([CSV_COLUMNS])
    sent, last = 0, None
    while sent < limit:
        batch = await sync_to_async(_batch)(audit_filter, last, min(EXPORT_BATCH, limit - sent))
        if not batch:
            return
        yield _csv_lines(_csv_row(event) for event in batch)
        sent, last = sent + len(batch), batch[-1]


def _batch(audit_filter: AuditFilter, last: AuditEvent | None, size: int) -> list[AuditEvent]:
    rows = audit_filter.events().select_related("user")
    if last is not None:
        rows = rows.filter(_after_in_order(last))
    return list(rows[:size])


def _csv_lines(rows: Iterable[list]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def _csv_row(event: AuditEvent) -> list:
    values = [
        event.created_at.isoformat(),
        event.event_type,
        event.outcome,
        event.user.username if event.user else "",
        event.peer_address,
        event.calling_ae,
        event.called_ae,
        event.study_instance_uid,
        event.patient_id,
        json.dumps(event.detail, ensure_ascii=False, sort_keys=True),
    ]
    return [event.pk, *(spreadsheet_safe(value) for value in values)]


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a quote first
    (OWASP "CSV injection"). Calling AE titles and patient IDs come from the network."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
