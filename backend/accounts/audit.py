"""Writing the audit log. Callers describe what happened; this keeps the row small."""

from typing import Any

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
    """Append one audit event. Values are cut to their column's size, never refused:
    an audit row must not fail because a peer sent a long or odd value."""
    return AuditEvent.objects.create(
        event_type=event_type,
        outcome=outcome,
        user=user,
        calling_ae=calling_ae[:16],
        called_ae=called_ae[:16],
        peer_address=peer_address[:64],
        study_instance_uid=study_instance_uid[:64],
        patient_id=patient_id[:64],
        detail=detail or {},
    )
