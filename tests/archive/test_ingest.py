"""The shared ingest pipeline, end to end through the functions the worker runs."""

import gzip
import json

import numpy as np
import pydicom
import pytest

from backend.archive.frames import frame_array
from backend.archive.models import IngestRecord, Instance, Patient, Series, Study
from backend.archive.spool import get_spool
from backend.archive.storage import get_storage
from backend.live.models import OutboxEvent

from ..conftest import pydicom_file
from .helpers import receive_file, variant

pytestmark = pytest.mark.django_db(transaction=True)
State = IngestRecord.State


def test_it_indexes_a_ct_with_its_attributes(tasks):
    record = receive_file(pydicom_file("CT_small.dcm"), tasks)
    assert record.state == State.STORED
    instance = Instance.objects.get()
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    assert instance.sop_instance_uid == ds.SOPInstanceUID
    assert instance.rows == 128 and instance.columns == 128
    assert instance.image_position_patient == [float(v) for v in ds.ImagePositionPatient]
    assert instance.rescale_intercept == float(ds.RescaleIntercept)
    assert instance.viewable and instance.not_viewable_reason == ""
    study = Study.objects.get()
    assert study.study_instance_uid == ds.StudyInstanceUID
    assert (study.number_of_series, study.number_of_instances) == (1, 1)
    assert study.modalities_in_study == "CT"
    assert study.patient.patient_name == str(ds.PatientName)


def test_it_keeps_the_original_byte_for_byte(tasks):
    receive_file(pydicom_file("MR_small.dcm"), tasks)
    instance = Instance.objects.get()
    stored = get_storage().read(instance.object_key)
    assert stored == pydicom_file("MR_small.dcm").read_bytes()
    assert instance.file_size == len(stored)


def test_it_removes_the_spooled_copy_once_indexed(tasks):
    record = receive_file(pydicom_file("CT_small.dcm"), tasks)
    assert not get_spool().path(record.id).exists()


def test_it_serves_frames_equal_to_pydicoms_decode(tasks):
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    instance = Instance.objects.get()
    expected = pydicom.dcmread(pydicom_file("CT_small.dcm")).pixel_array
    np.testing.assert_array_equal(frame_array(instance, 0), expected)


def test_it_ignores_the_same_file_sent_twice(tasks):
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    second = receive_file(pydicom_file("CT_small.dcm"), tasks)
    assert second.state == State.DUPLICATE
    assert Instance.objects.count() == 1
    assert Study.objects.get().number_of_instances == 1


def test_it_replaces_a_different_file_with_the_same_sop_instance_uid(tasks, tmp_path):
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    changed = variant(tmp_path, SeriesDescription="corrected at the modality")
    record = receive_file(changed, tasks)
    assert record.state == State.REPLACED
    instance = Instance.objects.get()
    assert instance.sha256 == record.sha256
    assert Study.objects.get().number_of_instances == 1
    # The replaced original stays in the store.
    first = IngestRecord.objects.exclude(pk=record.pk).get()
    assert get_storage().exists(first.object_key)


def test_it_keeps_patients_apart_by_issuer(tasks, tmp_path):
    receive_file(
        variant(
            tmp_path,
            IssuerOfPatientID="HOSP-A",
            StudyInstanceUID="new-uid",
            SOPInstanceUID="new-uid",
        ),
        tasks,
    )
    receive_file(
        variant(
            tmp_path,
            IssuerOfPatientID="HOSP-B",
            StudyInstanceUID="new-uid",
            SOPInstanceUID="new-uid",
        ),
        tasks,
    )
    assert Patient.objects.count() == 2
    assert {p.issuer_of_patient_id for p in Patient.objects.all()} == {"HOSP-A", "HOSP-B"}


def test_it_never_overwrites_a_patient_name_that_differs(tasks, tmp_path):
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    receive_file(
        variant(
            tmp_path, PatientName="Other^Name", StudyInstanceUID="new-uid", SOPInstanceUID="new-uid"
        ),
        tasks,
    )
    names = sorted(Patient.objects.values_list("patient_name", flat=True))
    assert names == ["CompressedSamples^CT1", "Other^Name"]
    assert Study.objects.count() == 2


def test_it_counts_series_and_modalities_of_a_growing_study(tasks, tmp_path):
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    receive_file(
        variant(tmp_path, Modality="PT", SeriesInstanceUID="new-uid", SOPInstanceUID="new-uid"),
        tasks,
    )
    receive_file(variant(tmp_path, SOPInstanceUID="new-uid"), tasks)
    study = Study.objects.get()
    assert (study.number_of_series, study.number_of_instances) == (2, 3)
    assert study.modalities_in_study == "CT\\PT"


def test_it_quarantines_a_file_that_is_not_dicom(tasks, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    record = receive_file(path, tasks)
    assert record.state == State.QUARANTINED
    assert record.reason
    assert get_storage().read(record.object_key) == b"not an image"
    assert not Instance.objects.exists()


def receive_scrambled_slices(tasks, tmp_path, **attributes) -> None:
    """Three slices of one series (z = 10, 20, 30), received in scrambled order; each
    value of `attributes` is a function of the slice's z."""
    for z, number in [(30.0, 1), (10.0, 3), (20.0, 2)]:
        values = {name: value(z) for name, value in attributes.items()}
        receive_file(
            variant(
                tmp_path,
                SOPInstanceUID="new-uid",
                InstanceNumber=number,
                ImagePositionPatient=[0, 0, z],
                ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                **values,
            ),
            tasks,
        )


def test_it_derives_order_thumbnail_and_metadata_per_series(tasks, tmp_path):
    receive_scrambled_slices(tasks, tmp_path)
    series = Series.objects.get()
    assert series.is_derived
    ordered = list(series.instances.order_by("slice_index"))
    assert [i.image_position_patient[2] for i in ordered] == [10.0, 20.0, 30.0]
    assert get_storage().read(series.thumbnail_key)[:3] == b"\xff\xd8\xff"  # a JPEG
    metadata = json.loads(gzip.decompress(get_storage().read(series.metadata_key)))
    assert [m["00080018"]["Value"][0] for m in metadata] == [i.sop_instance_uid for i in ordered]
    assert "BulkDataURI" in metadata[0]["7FE00010"]


def test_the_series_thumbnail_shows_its_middle_slice_in_order(tasks, tmp_path):
    from backend.archive.derive import THUMBNAIL_SIZE, frame_layout
    from backend.imaging.render import render

    receive_scrambled_slices(tasks, tmp_path, WindowCenter=lambda z: z, WindowWidth=lambda z: 100)
    series = Series.objects.get()
    middle = series.instances.get(slice_index=1)
    expected = render(
        frame_array(middle, 0),
        frame_layout(middle),
        rescale_slope=middle.rescale_slope or 1.0,
        rescale_intercept=middle.rescale_intercept or 0.0,
        window_center=middle.window_center[0],
        window_width=middle.window_width[0],
        max_size=THUMBNAIL_SIZE,
        fmt="jpeg",
        quality=85,
    )
    assert middle.image_position_patient[2] == 20.0
    assert get_storage().read(series.thumbnail_key) == expected


def test_a_thumbnail_whose_instance_is_gone_is_left_for_the_next_derivation(tasks):
    from backend.archive import derive

    receive_file(pydicom_file("CT_small.dcm"), tasks)
    Series.objects.get()  # the series exists
    gone = derive._Slice(
        pk=Instance.objects.get().pk + 1,
        instance_number=1,
        image_position_patient=None,
        image_orientation_patient=None,
        slice_index=0,
        viewable=True,
    )
    assert derive._thumbnail_source([gone]) is None


def test_it_publishes_study_changed_after_commit(tasks, settings):
    settings.REDIS_URL = ""  # embedded mode: events go through the outbox table
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    changes = [e.payload["change"] for e in OutboxEvent.objects.order_by("pk")]
    assert changes == ["created", "derived"]
    assert OutboxEvent.objects.first().payload["number_of_instances"] == 1


@pytest.mark.parametrize(
    ("name", "patient_name", "search"),
    [
        ("chrFren.dcm", "Buc^Jérôme", "BUC JEROME"),
        ("chrRuss.dcm", "Люкceмбypг", "ЛЮКCEМБYPГ"),
        (
            "chrH31.dcm",
            "Yamada^Tarou=山田^太郎=やまだ^たろう",
            "YAMADA TAROU 山田 太郎 やまだ たろう",
        ),
        ("chrX2.dcm", "Wang^XiaoDong=王^小东", "WANG XIAODONG 王 小东"),
    ],
)
def test_it_decodes_character_sets(tasks, name, patient_name, search):
    receive_file(pydicom_file(f"../charset_files/{name}"), tasks)
    patient = Patient.objects.get()
    assert patient.patient_name == patient_name
    assert patient.patient_name_search == search


def test_it_indexes_a_batch_like_single_files(tasks, tmp_path):
    from backend.archive import ingest, queue

    paths = [variant(tmp_path, SOPInstanceUID="new-uid", InstanceNumber=n) for n in range(5)]
    paths.append(pydicom_file("MR_small.dcm"))  # another study in the same batch
    paths.append(tmp_path / "junk.txt")
    paths[-1].write_text("not dicom")
    opened = [(str(p), lambda p=p: open(p, "rb")) for p in paths]
    received = list(ingest.receive_many(opened, source="cli"))
    assert [name for name, _ in tasks.sent] == [queue.INGEST_BATCH]
    tasks.run()

    states = sorted(IngestRecord.objects.values_list("state", flat=True))
    assert states == [State.QUARANTINED] + [State.STORED] * 6
    assert all(r.record.pk for r in received)
    ct = Study.objects.get(study_instance_uid=pydicom.dcmread(paths[0]).StudyInstanceUID)
    assert (ct.number_of_series, ct.number_of_instances) == (1, 5)
    assert Study.objects.count() == 2
    assert all(r.instance_id for r in IngestRecord.objects.filter(state=State.STORED))
    assert Series.objects.filter(derived_version__lt=1).count() == 0
    assert not list(get_spool().root.glob("*.dcm"))
    assert not list(get_spool().root.glob("*.attempts"))  # the batch's marker is gone


def test_a_batch_stores_every_column_as_the_orm_would(tasks):
    """indexing._insert_instances (one statement per task; COPY on PostgreSQL) binds each
    value as Instance.objects.create does: the rows read back the same."""
    import datetime

    from django.db import transaction

    from backend.archive import indexing

    created = receive_file(pydicom_file("CT_small.dcm"), tasks).instance
    stamps = {"created_at", "updated_at"}
    fields = {f.name: getattr(created, f.name) for f in indexing._INSERT_FIELDS}
    fields.update(dict.fromkeys(stamps, datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)))
    fields.update(
        content_date=datetime.date(2026, 2, 28),
        content_time=datetime.time(23, 59, 58, 123456),
        window_center=[40.0, 400.5],
        modality_lut={"first": -1024, "data": [0, 1, 2]},
        voi_luts=[],
        warnings=['O\'Brien said "no"', "tab\there", "back\\slash", "ünïcode 王"],
        not_viewable_reason="",
        pixel_min=None,
        dicom_json='{"00080060": {"vr": "CS", "Value": ["CT"]}}',
    )
    # More rows than one SQLite statement takes (PostgreSQL: one COPY for them all).
    uids = [f"1.2.3.4.{n}" for n in range(1, indexing._INSERT_ROWS + 3)]
    rows = [{**fields, "sop_instance_uid": uid} for uid in uids]
    # Values of another type than the column's are converted as the ORM converts them.
    rows[-1].update(slice_thickness=2, rows=np.uint16(rows[-1]["rows"]))
    with transaction.atomic():
        ids = indexing._insert_instances(rows)
        orm = Instance.objects.create(**{**fields, "sop_instance_uid": "1.2.3.4.0"})

    def columns(instance):
        instance.refresh_from_db()
        skip = {"id", "sop_instance_uid", "created_at", "updated_at"}
        return {
            f.name: getattr(instance, f.name) for f in Instance._meta.fields if f.name not in skip
        }

    inserted = [Instance.objects.get(pk=i) for i in ids]
    assert [i.sop_instance_uid for i in inserted] == uids
    assert all(columns(instance) == columns(orm) for instance in inserted[:-1])
    assert columns(inserted[-1]) == {**columns(orm), "slice_thickness": 2.0}
    # Stamped now, whatever the row says, as the fields' pre_save does.
    assert created.created_at < inserted[0].created_at == inserted[0].updated_at <= orm.created_at


def test_a_big_batch_records_each_outcome(tasks, tmp_path):
    """A held burst goes in tasks of up to 128 files: each record gets its own outcome
    (one UPDATE for them all on PostgreSQL)."""
    from backend.archive import indexing, ingest

    paths = [
        variant(tmp_path, SOPInstanceUID=f"1.2.826.0.1.3680043.2.1125.9.{n}", InstanceNumber=n)
        for n in range(indexing._INSERT_ROWS + 6)
    ]
    opened = [(str(p), lambda p=p: open(p, "rb")) for p in paths]
    received = list(ingest.receive_many(opened, source="cli", batch_size=len(paths)))
    tasks.sent.clear()
    indexing.index_batch([str(r.record.pk) for r in received])

    study_uid = str(pydicom.dcmread(paths[0]).StudyInstanceUID)
    for n, item in enumerate(received):
        record = IngestRecord.objects.get(pk=item.record.pk)
        instance = Instance.objects.get(pk=record.instance_id)
        assert record.state == State.STORED and record.attempts == 1
        assert record.finished_at is not None
        assert record.sop_instance_uid == instance.sop_instance_uid
        assert instance.sop_instance_uid == f"1.2.826.0.1.3680043.2.1125.9.{n}"
        assert record.object_key == instance.object_key == f"objects/{record.sha256}"
        assert record.study_instance_uid == study_uid
    assert Study.objects.get().number_of_instances == len(paths)


def test_a_batch_that_loses_a_race_falls_back_to_single_files(tasks, tmp_path, monkeypatch):
    """Another worker indexed the same SOP Instance UID after the batch looked it up: the
    batch's insert fails on the unique UID, rolls back, and each file is indexed alone."""
    from backend.archive import indexing, ingest

    receive_file(pydicom_file("CT_small.dcm"), tasks)
    corrected = variant(tmp_path, SeriesDescription="corrected")
    other = variant(tmp_path, SOPInstanceUID="new-uid")
    monkeypatch.setattr(indexing, "_existing_instances", lambda uids: dict.fromkeys(uids))
    opened = [(str(p), lambda p=p: open(p, "rb")) for p in (corrected, other)]
    list(ingest.receive_many(opened, source="cli"))
    tasks.run()

    states = list(IngestRecord.objects.order_by("received_at").values_list("state", flat=True))
    assert states == [State.STORED, State.REPLACED, State.STORED]
    assert Instance.objects.count() == 2
    assert Study.objects.get().number_of_instances == 2
    replaced = IngestRecord.objects.order_by("received_at")[1]
    assert (
        Instance.objects.get(sop_instance_uid=replaced.sop_instance_uid).sha256 == replaced.sha256
    )


def test_indexing_pauses_the_cycle_collector_and_turns_it_on_again(tasks, monkeypatch):
    import gc

    from backend.archive import indexing

    seen = []

    def look_up(uids):
        seen.append(gc.isenabled())
        raise RuntimeError("the database went away")

    monkeypatch.setattr(indexing, "_existing_instances", look_up)
    with pytest.raises(RuntimeError):
        indexing.index_batch([])

    assert seen == [False]
    assert gc.isenabled()


def test_the_last_task_of_a_burst_derives_its_series_itself(tasks, tmp_path):
    """With nothing received lately left to index, the task that indexed the last files
    derives their series at once (indexing.derive_if_done), instead of the derivation
    queued at commit, which waits until the series has been quiet for a moment."""
    from datetime import timedelta

    from django.utils import timezone

    from backend.archive import indexing, ingest, queue

    paths = [
        variant(
            tmp_path, SOPInstanceUID="new-uid", InstanceNumber=n, ImagePositionPatient=[0, 0, n]
        )
        for n in (3, 1, 2)
    ]

    def received(some):
        list(ingest.receive_many([(str(p), lambda p=p: open(p, "rb")) for p in some], source="cli"))
        ((name, (ids,)),) = tasks.sent
        assert name == queue.INGEST_BATCH
        tasks.sent.clear()
        return ids

    first, last = received(paths[:2]), received(paths[2:])
    indexing.index_batch(first)
    series = Series.objects.get()
    assert not series.is_derived  # the last file waits to be indexed
    assert [name for name, _ in tasks.sent] == [queue.DERIVE_SERIES]  # queued, as before
    tasks.sent.clear()

    # A record pending for longer than LIGHTBOX_INGEST_STALE_SECONDS is one that keeps
    # failing (the sweep retries it): it does not hold the derivation back.
    stuck = received([variant(tmp_path, SOPInstanceUID="new-uid")])
    IngestRecord.objects.filter(pk=stuck[0]).update(received_at=timezone.now() - timedelta(hours=1))
    indexing.index_batch(last)
    series.refresh_from_db()
    assert series.is_derived  # before any queued task ran
    ordered = series.instances.order_by("slice_index")
    assert [i.instance_number for i in ordered] == [1, 2, 3]


def test_of_two_derivations_after_one_commit_only_the_first_runs(tasks, monkeypatch):
    """Two tasks of a burst that end together both find nothing left to index: the one
    that clears the series' flag derives it; the other, finding it clear, leaves it."""
    from backend.archive import derive

    receive_file(pydicom_file("CT_small.dcm"), tasks)  # derived
    series = Series.objects.get()
    Series.objects.filter(pk=series.pk).update(
        derive_requested=series.derive_requested + 1, derive_scheduled=True
    )  # another arrival committed
    thumbnails, others = [], []
    monkeypatch.setattr(derive, "_write_thumbnail", lambda s, i: thumbnails.append(i) or "")
    source = derive._thumbnail_source

    def meanwhile(ordered):
        if not others:  # the other task, while this one derives
            others.append(derive.derive_series(series.pk, settled=True))
        return source(ordered)

    monkeypatch.setattr(derive, "_thumbnail_source", meanwhile)
    assert derive.derive_series(series.pk, settled=True)
    assert others == [False]  # the flag was clear: the first covers it
    assert len(thumbnails) == 1
    series.refresh_from_db()
    assert series.is_derived and not series.derive_scheduled


def test_it_falls_back_to_single_files_for_replacements_in_a_batch(tasks, tmp_path):
    from backend.archive import ingest

    receive_file(pydicom_file("CT_small.dcm"), tasks)
    changed = variant(tmp_path, SeriesDescription="corrected")
    again = pydicom_file("CT_small.dcm")
    opened = [(str(p), lambda p=p: open(p, "rb")) for p in (changed, again)]
    list(ingest.receive_many(opened, source="cli"))
    tasks.run()
    states = list(IngestRecord.objects.order_by("received_at").values_list("state", flat=True))
    assert states[1:] == [State.REPLACED, State.REPLACED]  # in arrival order: the last wins
    assert (
        Instance.objects.get().sha256 == IngestRecord.objects.order_by("received_at").last().sha256
    )
    assert Instance.objects.count() == 1
    assert Study.objects.get().number_of_instances == 1
