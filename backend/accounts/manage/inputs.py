"""Checking what an administrator sends. Input arrives as decoded JSON or query parameters,
so nothing is trusted: wrong types, NUL characters, lone surrogates and over-long values are
refused here with a ManageError saying which field is wrong, never left to the database.
"""

import re
from collections.abc import Mapping
from datetime import date, datetime, time

from django.db.models import QuerySet
from django.utils import timezone

from .common import ManageError, NotFound

MAX_IDS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def text(data: Mapping, key: str, max_length: int, *, required: bool = False) -> str:
    """A one-line text field: stripped, refused when too long or unstorable."""
    value = data.get(key)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ManageError(f"{key} must be text")
    value = value.strip()
    if len(value) > max_length:
        raise ManageError(f"{key} is longer than {max_length} characters")
    if _CONTROL.search(value) or not encodable(value):
        raise ManageError(f"{key} holds characters that cannot be stored")
    if required and not value:
        raise ManageError(f"{key} is required")
    return value


def encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
        return False
    return True


def flag(data: Mapping, key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ManageError(f"{key} must be true or false")
    return value


def identifier(value: object, key: str) -> int:
    # bool is an int in Python; an id is not.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise ManageError(f"{key} must be an id")
    return value


def identifiers(data: Mapping, key: str) -> list[int]:
    values = data.get(key, [])
    if not isinstance(values, list) or len(values) > MAX_IDS:
        raise ManageError(f"{key} must be a list of ids")
    return [identifier(value, key) for value in values]


def get_row(queryset: QuerySet, pk: object, what: str):
    """The row of `queryset` whose id the input gives, or NotFound ("no such user")."""
    row = queryset.filter(pk=identifier(pk, f"{what} id")).first()
    if row is None:
        raise NotFound(f"no such {what}")
    return row


def query_id(params: Mapping, key: str) -> int:
    """An id given as a query parameter (?user=12): digits only."""
    value = text(params, key, 20)
    if not value.isascii() or not value.isdigit():
        raise ManageError(f"{key} must be an id")
    return identifier(int(value), key)


def parse_date(value: str, key: str) -> date:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:  # 2024-02-30
            pass
    raise ManageError(f"{key} must be a date, YYYY-MM-DD")


def start_of(day: date) -> datetime:
    """Midnight at the start of `day`, local time."""
    return timezone.make_aware(datetime.combine(day, time.min))
