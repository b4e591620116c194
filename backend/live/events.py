"""Every live event type, declared once with its schema.

Events leave only after the transaction that caused them commits, so a browser never hears
of a study it cannot then load.
Payloads carry identifiers and counts, never patient names: a listener fetches what it may
see through the access-checked API.
"""

import logging
from functools import cache, partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

STUDIES_GROUP = "studies"

_UID = {"type": "string", "pattern": r"^[0-9.]{1,64}$"}
_COUNT = {"type": "integer", "minimum": 0}

SCHEMAS: dict[str, dict[str, Any]] = {
    "study.changed": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "type",
            "study_instance_uid",
            "change",
            "number_of_series",
            "number_of_instances",
            "modalities_in_study",
        ],
        "properties": {
            "type": {"const": "study.changed"},
            "study_instance_uid": _UID,
            # created: the first instance of a new study; series: a new series in it;
            # derived: a series' counts, order, thumbnail and metadata are up to date
            # (sent once per burst of arrivals, not per image).
            "change": {"enum": ["created", "series", "derived"]},
            "series_instance_uid": _UID,
            "number_of_series": _COUNT,
            "number_of_instances": _COUNT,
            "modalities_in_study": {"type": "string", "maxLength": 255},
        },
    },
}


class EventSchemaError(ValueError):
    pass


@cache
def _validator(event_type: str):
    import jsonschema

    schema = SCHEMAS.get(event_type)
    if schema is None:
        raise EventSchemaError(f"undeclared event type {event_type!r}")
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def warm_up() -> None:
    """Build every event type's validator, and the channel layer events are sent to, now
    rather than for the first event."""
    for event_type in SCHEMAS:
        _validator(event_type)
    if not uses_outbox():
        get_channel_layer()


def validate(event: dict[str, Any]) -> None:
    """Check an event against its declared schema (JSON Schema, Draft 2020-12)."""
    error = next(_validator(str(event.get("type", ""))).iter_errors(event), None)
    if error is not None:
        raise EventSchemaError(error.message)


def publish(group: str, event: dict[str, Any]) -> None:
    """Send `event` to `group`, but only once the current transaction commits.

    Embedded mode writes it to the outbox inside the transaction (web processes relay only
    committed rows); with Redis it is sent to the channel layer from an on-commit hook.
    """
    validate(event)
    if uses_outbox():
        from .models import OutboxEvent

        OutboxEvent.objects.create(group=group, payload=event)
    else:
        transaction.on_commit(partial(_send, group, event))


def uses_outbox() -> bool:
    return not settings.REDIS_URL


def _send(group: str, event: dict[str, Any]) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, {"type": "event", "event": event})
    except Exception:
        # The index is committed and is the truth; a lost notification only delays a
        # worklist refresh, so it must not fail the ingest.
        log.exception("could not publish %s to %s", event["type"], group)
