"""Writing the audit log. Callers describe what happened; this keeps the row small. Each
new row is also sent as a DICOM audit message to syslog when configured (audit_export.py)."""

import time
from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from .audit_export import send_on_commit
from .models import AuditEvent

SUCCESS = AuditEvent.Outcome.SUCCESS
FAILURE = AuditEvent.Outcome.FAILURE


def record(
    event_type: str,
    outcome: str = SUCCESS,
    *,
    user=None,
    calling_ae: str = "",
    called_ae: str = "",
    peer_address: str = "",
    study_instance_uid: str = "",
    patient_id: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event. Values are cut to their column's size and NUL characters
    (which PostgreSQL text and jsonb refuse) replaced, never refused: an audit row must
    not fail because a peer sent a long or odd value."""
    return AuditEvent.objects.create(
        event_type=event_type,
        outcome=outcome,
        user=user,
        calling_ae=_clean(calling_ae)[:16],
        called_ae=_clean(called_ae)[:16],
        peer_address=_clean(peer_address)[:64],
        study_instance_uid=_clean(study_instance_uid)[:64],
        patient_id=_clean(patient_id)[:64],
        detail=_clean(detail or {}),
    )


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


REPEAT_SECONDS = 300
_recent: dict[tuple, float] = {}
_MAX_RECENT = 10_000


def record_once(key: tuple, event_type: str, **fields: Any) -> AuditEvent | None:
    """Append an event unless one with the same key was appended by this process in the
    last REPEAT_SECONDS: for reads that arrive as bursts of requests (a worklist's
    thumbnails, a viewer's frames), which would otherwise drown the log."""
    now = time.monotonic()
    if _recent.get((event_type, *key), 0) > now:
        return None
    if len(_recent) > _MAX_RECENT:
        _recent.clear()
    _recent[(event_type, *key)] = now + REPEAT_SECONDS
    return record(event_type, **fields)


@receiver(post_save, sender=AuditEvent, dispatch_uid="audit-export")
def _export(sender, instance: AuditEvent, created: bool, **kwargs) -> None:
    """Every new row also goes to the syslog collector when one is configured
    (LIGHTBOX_AUDIT_SYSLOG; audit_export.py), after its transaction commits."""
    if created:
        send_on_commit(instance)
