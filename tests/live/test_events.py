"""Every live event type has one schema; events leave only after their transaction commits."""

import copy

import pytest
from django.db import transaction

from backend.live.events import SCHEMAS, STUDIES_GROUP, EventSchemaError, publish, validate
from backend.live.models import OutboxEvent

# One valid example per declared type; a new type without an example fails the test below.
EXAMPLES = {
    "study.changed": {
        "type": "study.changed",
        "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
        "series_instance_uid": "1.2.826.0.1.3680043.8.498.2",
        "change": "created",
        "number_of_series": 1,
        "number_of_instances": 3,
        "modalities_in_study": "CT\\PT",
    },
}

# (type, what to break, how): each must be refused.
BAD = [
    ("study.changed", "missing field", lambda e: e.pop("number_of_instances")),
    ("study.changed", "extra field", lambda e: e.update(patient_name="Doe^Jane")),
    ("study.changed", "wrong type", lambda e: e.update(number_of_series="1")),
    ("study.changed", "negative count", lambda e: e.update(number_of_instances=-1)),
    ("study.changed", "bad study UID", lambda e: e.update(study_instance_uid="1.2.abc")),
    ("study.changed", "UID too long", lambda e: e.update(study_instance_uid="1." * 40)),
    ("study.changed", "bad series UID", lambda e: e.update(series_instance_uid="")),
    ("study.changed", "unknown change", lambda e: e.update(change="deleted")),
]


def test_it_has_an_example_for_every_declared_type():
    assert sorted(EXAMPLES) == sorted(SCHEMAS)


@pytest.mark.parametrize("event_type", sorted(SCHEMAS))
def test_it_accepts_a_good_example(event_type):
    validate(copy.deepcopy(EXAMPLES[event_type]))


def test_it_accepts_a_study_change_without_series():
    event = copy.deepcopy(EXAMPLES["study.changed"])
    del event["series_instance_uid"]
    validate(event)


@pytest.mark.parametrize(("event_type", "defect", "breaks"), BAD, ids=[b[1] for b in BAD])
def test_it_rejects_a_bad_example(event_type, defect, breaks):
    event = copy.deepcopy(EXAMPLES[event_type])
    breaks(event)
    with pytest.raises(EventSchemaError):
        validate(event)


@pytest.mark.parametrize("event", [{"type": "study.deleted"}, {}, {"type": None}])
def test_it_rejects_an_undeclared_type(event):
    with pytest.raises(EventSchemaError):
        validate(event)


@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_publish_an_invalid_event(settings):
    settings.REDIS_URL = ""
    with pytest.raises(EventSchemaError):
        publish(STUDIES_GROUP, {"type": "study.changed"})
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_it_writes_the_outbox_in_embedded_mode(settings):
    settings.REDIS_URL = ""
    with transaction.atomic():
        publish(STUDIES_GROUP, EXAMPLES["study.changed"])
    row = OutboxEvent.objects.get()
    assert (row.group, row.payload) == (STUDIES_GROUP, EXAMPLES["study.changed"])


@pytest.mark.django_db(transaction=True)
def test_it_publishes_nothing_from_a_rolled_back_transaction(settings):
    settings.REDIS_URL = ""

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        publish(STUDIES_GROUP, EXAMPLES["study.changed"])
        raise Abort
    assert not OutboxEvent.objects.exists()
