"""sweep(): work a crash or a lost broker message left undone is found and finished once."""

import os
import time
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from backend.archive import ingest, queue
from backend.archive.models import IngestRecord, Instance, Series, Study
from backend.archive.recovery import sweep
from backend.archive.spool import get_spool
from backend.archive.storage import get_storage

from ..conftest import pydicom_file
from .helpers import receive_file, variant

pytestmark = pytest.mark.django_db(transaction=True)
State = IngestRecord.State
LONG_AGO = timedelta(hours=2)


def age_file(path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def lost_receive(tasks, name="CT_small.dcm") -> IngestRecord:
    """A file received and recorded whose broker message was lost."""
    record = ingest.receive_path(pydicom_file(name), source="cli")
    assert tasks.sent == [(queue.INGEST_FILE, (str(record.id),))]
    tasks.sent.clear()
    return record


def test_it_adopts_a_spooled_file_without_a_record(tasks):
    spool = get_spool()
    record_id, size, sha256 = spool.receive([pydicom_file("CT_small.dcm").read_bytes()])
    age_file(spool.path(record_id))

    result = sweep()
    tasks.run()

    assert result.adopted == 1
    record = IngestRecord.objects.get(pk=record_id)
    assert (record.state, record.source) == (State.STORED, "recovered")
    assert (record.size, record.sha256) == (size, sha256)
    assert Instance.objects.get().sha256 == sha256
    assert not spool.path(record_id).exists()


def test_it_adopts_a_whole_file_the_receiver_spooled(tasks):
    spool = get_spool()
    data = pydicom_file("CT_small.dcm").read_bytes()
    record_id, _ = spool.receive_whole([data[:1000], memoryview(data)[1000:]])
    age_file(spool.path(record_id))

    result = sweep()
    tasks.run()

    assert result.adopted == 1
    assert IngestRecord.objects.get(pk=record_id).state == State.STORED


def test_it_removes_a_file_a_crash_cut_short_before_it_was_acknowledged(tasks):
    spool = get_spool()
    record_id, size = spool.receive_whole([pydicom_file("CT_small.dcm").read_bytes()])
    os.truncate(spool.path(record_id), size // 2)  # named, then the power went before fsync
    age_file(spool.path(record_id))

    result = sweep()

    assert (result.adopted, result.cleaned) == (0, 1)
    assert not spool.path(record_id).exists()
    assert tasks.sent == [] and not IngestRecord.objects.exists()


def test_it_leaves_a_freshly_spooled_file_to_its_receiver(tasks):
    get_spool().receive([b"arriving"])
    assert sweep().adopted == 0
    assert tasks.sent == []
    assert not IngestRecord.objects.exists()


def test_it_requeues_a_stale_pending_record(tasks):
    record = lost_receive(tasks)
    IngestRecord.objects.filter(pk=record.pk).update(received_at=timezone.now() - LONG_AGO)

    result = sweep()
    tasks.run()

    assert result.requeued == 1
    record.refresh_from_db()
    assert record.state == State.STORED
    assert Instance.objects.count() == 1


def test_it_waits_for_a_recent_pending_record(tasks, settings):
    settings.INGEST_STALE_SECONDS = 600
    lost_receive(tasks)
    assert sweep().requeued == 0
    assert tasks.sent == []


def killed_mid_attempt(record, attempts: int = 1, seconds_ago: float = 3600) -> None:
    """What a worker killed while indexing leaves: a pending record and its attempt marker."""
    spool = get_spool()
    for _ in range(attempts):
        spool.begin_attempt(record.id)
    IngestRecord.objects.filter(pk=record.pk).update(received_at=timezone.now() - LONG_AGO)
    age_file(spool.root / f"{record.id}.attempts", seconds_ago)


def test_it_requeues_an_abandoned_record_and_indexes_it_once(tasks):
    record = lost_receive(tasks)
    killed_mid_attempt(record)

    assert sweep().requeued == 1
    # The lost message turns up after all: a second delivery of the same task.
    tasks.send(queue.INGEST_FILE, str(record.id))
    tasks.run()
    sweep()
    tasks.run()

    record.refresh_from_db()
    assert (record.state, record.attempts) == (State.STORED, 2)
    assert Instance.objects.count() == 1
    assert Study.objects.get().number_of_instances == 1


def test_it_leaves_a_record_a_worker_is_still_processing(tasks):
    record = lost_receive(tasks)
    killed_mid_attempt(record, seconds_ago=1)
    assert sweep().requeued == 0
    assert tasks.sent == []


def killed_mid_batch(tasks, tmp_path, seconds_ago: float) -> list[IngestRecord]:
    """What a worker killed in a batch leaves: pending records and the batch's marker."""
    paths = [variant(tmp_path, SOPInstanceUID="new-uid", InstanceNumber=n) for n in range(3)]
    opened = [(str(p), lambda p=p: open(p, "rb")) for p in paths]
    records = [r.record for r in ingest.receive_many(opened, source="cli")]
    tasks.sent.clear()
    spool = get_spool()
    assert spool.begin_batch([r.id for r in records])
    IngestRecord.objects.update(received_at=timezone.now() - LONG_AGO)
    for path, _, _ in spool.batches():
        age_file(path, seconds_ago)
    return records


def test_it_leaves_the_files_of_a_batch_a_worker_is_still_processing(tasks, tmp_path):
    killed_mid_batch(tasks, tmp_path, seconds_ago=1)
    assert sweep().requeued == 0
    assert tasks.sent == []
    assert len(list(get_spool().batches())) == 1


def test_it_requeues_the_files_of_an_abandoned_batch_then_removes_its_marker(tasks, tmp_path):
    records = killed_mid_batch(tasks, tmp_path, seconds_ago=3600)
    assert sweep().requeued == 3
    assert sorted(tasks.sent) == sorted((queue.INGEST_FILE, (str(r.id),)) for r in records)
    assert len(list(get_spool().batches())) == 1  # its files are still pending
    tasks.run()
    # Each was tried twice: in the batch, then alone.
    assert list(IngestRecord.objects.values_list("state", "attempts")) == [(State.STORED, 2)] * 3
    sweep()
    assert list(get_spool().batches()) == []
    assert not list(get_spool().root.glob("*.attempts"))


def test_it_quarantines_a_record_that_keeps_killing_workers(tasks, settings):
    settings.INGEST_MAX_ATTEMPTS = 2
    record = lost_receive(tasks)
    killed_mid_attempt(record, attempts=2)

    sweep()
    tasks.run()

    record.refresh_from_db()
    assert record.state == State.QUARANTINED
    assert "2 attempts" in record.reason
    assert "killed" in record.reason
    assert record.object_key.startswith("quarantine/")
    assert get_storage().exists(record.object_key)
    assert not Instance.objects.exists()
    assert not get_spool().path(record.id).exists()


def test_it_names_the_last_error_when_it_gives_up(tasks, settings, monkeypatch):
    from backend.archive import indexing

    settings.INGEST_MAX_ATTEMPTS = 1
    record = lost_receive(tasks)

    def broken(*args):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(indexing, "_prepare_parsed", broken)
    with pytest.raises(RuntimeError):
        indexing.index_received(record.id)
    monkeypatch.undo()
    indexing.index_received(record.id)

    record.refresh_from_db()
    assert record.state == State.QUARANTINED
    assert "RuntimeError: decoder exploded" in record.reason


def test_it_lets_only_one_of_two_concurrent_workers_commit(tasks):
    from backend.archive import indexing

    record = lost_receive(tasks)
    assert indexing.index_received(record.id) == State.STORED
    # A second worker that read the record while it was pending finishes later: it must
    # not commit a second outcome.
    stale_copy = IngestRecord.objects.get(pk=record.pk)
    stale_copy.state = State.PENDING
    with pytest.raises(indexing._AlreadyFinished):
        indexing._finish(stale_copy, State.DUPLICATE)
    assert Instance.objects.count() == 1


def test_it_removes_the_spooled_copy_of_a_finished_record(tasks):
    record = receive_file(pydicom_file("CT_small.dcm"), tasks)
    # A crash between the commit and the removal leaves the spooled copy behind.
    path = get_spool().path(record.id)
    path.write_bytes(pydicom_file("CT_small.dcm").read_bytes())
    age_file(path)

    result = sweep()

    assert result.cleaned >= 1
    assert not path.exists()
    assert tasks.sent == []
    assert Instance.objects.count() == 1


def test_it_derives_a_series_whose_derivation_was_lost(tasks):
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    Series.objects.update(
        derive_requested=F("derive_requested") + 1,
        derive_scheduled=True,
        updated_at=timezone.now() - LONG_AGO,
    )

    result = sweep()
    tasks.run()

    assert result.series == 1
    series = Series.objects.get()
    assert series.is_derived and not series.derive_scheduled
    assert series.thumbnail_key and series.metadata_key


def test_it_does_nothing_when_nothing_is_unfinished(tasks):
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    result = sweep()
    assert (result.adopted, result.requeued, result.series) == (0, 0, 0)
    assert tasks.sent == []


def test_it_does_not_duplicate_a_backlog_still_in_the_queue(tasks):
    record = lost_receive(tasks)
    IngestRecord.objects.filter(pk=record.pk).update(received_at=timezone.now() - LONG_AGO)
    tasks.send(queue.INGEST_FILE, "some-other-record")  # the broker is still busy

    assert sweep().requeued == 0
    assert tasks.sent == [(queue.INGEST_FILE, ("some-other-record",))]


def test_a_lost_commit_whose_spooled_copy_was_removed_is_indexed_again_from_the_store(tasks):
    """What a power cut can leave with SQLite (synchronous=NORMAL makes a commit durable
    only at its next checkpoint): the outcome's commit lost, the removal of the spooled
    copy that followed it kept. The object, linked durably before the commit, is indexed
    again."""
    from backend.archive import indexing
    from backend.archive.models import Patient

    record = receive_file(pydicom_file("CT_small.dcm"), tasks)
    assert record.state == State.STORED
    Study.objects.all().delete()  # the index as it was before the commit
    Patient.objects.all().delete()
    IngestRecord.objects.filter(pk=record.pk).update(state=State.PENDING, finished_at=None)
    indexing._parents.clear()
    assert not get_spool().path(record.id).exists()

    assert indexing.index_received(record.id) == State.STORED
    record.refresh_from_db()
    assert (record.state, record.reason) == (State.STORED, "")
    assert Instance.objects.get().sha256 == record.sha256
    assert not get_spool().path(record.id).exists()


def test_a_pending_record_whose_file_is_nowhere_is_quarantined_with_the_reason(tasks):
    from backend.archive import indexing

    record = ingest.receive_path(
        pydicom_file("MR_small.dcm"),
        source="cli",
    )
    os.unlink(get_spool().path(record.id))
    assert indexing.index_received(record.id) == State.QUARANTINED
    record.refresh_from_db()
    assert "disappeared" in record.reason


def test_a_batch_a_worker_did_not_finish_is_retried_one_file_at_a_time(
    tasks, settings, tmp_path, monkeypatch
):
    """A batch comes back whole when a file in it killed the worker; retried together,
    the files beside that one would reach the attempt limit with it."""
    from backend.archive import indexing

    settings.INGEST_MAX_ATTEMPTS = 2
    paths = [variant(tmp_path, SOPInstanceUID="new-uid", InstanceNumber=n) for n in range(4)]
    opened = [(str(p), lambda p=p: open(p, "rb")) for p in paths]
    records = [r.record for r in ingest.receive_many(opened, source="cli")]
    ((name, (batch,)),) = tasks.sent
    assert name == queue.INGEST_BATCH
    tasks.sent.clear()
    killer = records[2]
    real_prepare = indexing._prepare_parsed

    def prepare(record, *args, **kwargs):
        if record.pk == killer.pk:
            raise SystemExit("killed")  # not caught per file: the task ends here
        return real_prepare(record, *args, **kwargs)

    monkeypatch.setattr(indexing, "_prepare_parsed", prepare)
    with pytest.raises(SystemExit):
        indexing.index_batch(batch)  # every file's attempt was counted
    assert not tasks.sent

    indexing.index_batch(batch)  # delivered again: each goes in a task of its own
    assert tasks.sent == [(queue.INGEST_FILE, (str(r.pk),)) for r in records]
    assert not Instance.objects.exists()
    singles, tasks.sent = tasks.sent, []
    for _, (record_id,) in singles:
        if record_id == str(killer.pk):
            with pytest.raises(SystemExit):
                indexing.index_received(record_id)  # its second attempt
        else:
            indexing.index_received(record_id)
    indexing.index_received(str(killer.pk))  # delivered again: over the limit

    states = {r.pk: r.state for r in IngestRecord.objects.all()}
    assert [states[r.pk] for r in records] == [State.STORED] * 2 + [State.QUARANTINED] + [
        State.STORED
    ]
    assert Instance.objects.count() == 3
    assert "gave up after 2 attempts" in IngestRecord.objects.get(pk=killer.pk).reason
