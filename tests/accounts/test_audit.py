"""The audit log is append-only."""

import pytest

from backend.accounts.audit import record
from backend.accounts.models import AppendOnlyError, AuditEvent

pytestmark = pytest.mark.django_db


def test_it_records_an_event():
    event = record("dicom.echo", calling_ae="CT1", peer_address="10.0.0.5", detail={"n": 1})

    stored = AuditEvent.objects.get()
    assert (stored.event_type, stored.outcome, stored.calling_ae) == (
        "dicom.echo",
        "success",
        "CT1",
    )
    assert stored.detail == {"n": 1} and stored.pk == event.pk


def test_it_cuts_long_values_instead_of_failing():
    event = record("dicom.store", calling_ae="X" * 40, patient_id="P" * 100)
    assert (len(event.calling_ae), len(event.patient_id)) == (16, 64)


def test_it_refuses_to_change_or_delete_an_event():
    event = record("dicom.echo")
    event.outcome = "failure"

    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.update(outcome="failure")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().outcome == "success"
