"""Retrieve (PS3.4 C.4.2, C.4.3) without the network: which instances an identifier names,
and the data set each one leaves as."""

import numpy
import pydicom
import pytest
from pydicom.uid import (
    JPEG2000,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from backend.archive.models import Instance, Study
from backend.archive.retrieve import QueryError, dataset_for, instances_for

from ..conftest import pydicom_file
from .helpers import receive_file, variant

pytestmark = pytest.mark.django_db(transaction=True)

CT = pydicom.dcmread(pydicom_file("CT_small.dcm"))


@pytest.fixture
def archive(tasks, tmp_path):
    """CT_small with a second image and a second series; MR_small; a JPEG 2000 and an RLE
    sample; a hidden CT study of the same patient."""
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    receive_file(variant(tmp_path, SOPInstanceUID="new-uid", InstanceNumber=2), tasks)
    second_series = variant(tmp_path, SeriesInstanceUID="new-uid", SOPInstanceUID="new-uid")
    receive_file(second_series, tasks)
    for name in ("MR_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm"):
        receive_file(renamed(tmp_path, name), tasks)
    hidden = variant(
        tmp_path, StudyInstanceUID="new-uid", SeriesInstanceUID="new-uid", SOPInstanceUID="new-uid"
    )
    receive_file(hidden, tasks)
    return Study.objects.exclude(study_instance_uid=pydicom.dcmread(hidden).StudyInstanceUID)


def renamed(tmp_path, name: str):
    """A sample under a new SOP Instance UID (several samples share one)."""
    ds = pydicom.dcmread(pydicom_file(name))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path)
    return path


def identifier(level: str, **keys) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def uids(instances) -> set[str]:
    return {instance.sop_instance_uid for instance in instances}


def test_it_retrieves_a_study_in_both_models(archive):
    ct_study = CT.StudyInstanceUID
    study_root = instances_for(
        identifier("STUDY", StudyInstanceUID=ct_study), model="study", studies=archive
    )
    patient_root = instances_for(
        identifier("STUDY", PatientID=CT.PatientID, StudyInstanceUID=ct_study),
        model="patient",
        studies=archive,
    )
    assert len(study_root) == 3
    assert uids(study_root) == uids(patient_root)
    assert {i.series.study.study_instance_uid for i in study_root} == {ct_study}


def test_it_never_returns_instances_outside_the_studies_given(archive):
    everything = instances_for(
        identifier("PATIENT", PatientID=CT.PatientID), model="patient", studies=archive
    )
    assert len(everything) == 3  # the hidden study of the same patient is left out
    assert len(Instance.objects.filter(series__study__patient__patient_id=CT.PatientID)) == 4


def test_it_takes_a_list_of_uids_at_series_and_image_level(archive):
    first, second = Instance.objects.filter(series__study__in=archive)[:2]
    images = instances_for(
        identifier(
            "IMAGE",
            StudyInstanceUID=first.series.study.study_instance_uid,
            SeriesInstanceUID=first.series.series_instance_uid,
            SOPInstanceUID=f"{first.sop_instance_uid}\\{second.sop_instance_uid}",
        ),
        model="study",
        studies=archive,
    )
    assert uids(images) <= {first.sop_instance_uid, second.sop_instance_uid}
    series = instances_for(
        identifier("SERIES", SeriesInstanceUID=first.series.series_instance_uid),
        model="study",
        studies=archive,
    )
    assert first.sop_instance_uid in uids(series)


@pytest.mark.parametrize(
    "level,keys",
    [
        ("STUDY", {}),  # no unique key
        ("STUDY", {"StudyInstanceUID": "1.2.*"}),  # wildcard
        ("STUDY", {"StudyInstanceUID": "not-a-uid"}),
        ("PATIENT", {"PatientID": "A\\B"}),  # PatientID is not a UID list
        ("SERIES", {"StudyInstanceUID": "1.2\\1.3", "SeriesInstanceUID": "1.2.3"}),
        ("PATIENT", {"PatientID": "X"}),  # no PATIENT level in Study Root
        ("FRAME", {"SOPInstanceUID": "1.2"}),
    ],
)
def test_it_refuses_identifiers_it_cannot_process(archive, level, keys):
    with pytest.raises(QueryError):
        instances_for(identifier(level, **keys), model="study", studies=archive)


def stored(archive, transfer_syntax: str) -> Instance:
    return Instance.objects.get(series__study__in=archive, transfer_syntax_uid=transfer_syntax)


def test_it_sends_the_stored_file_when_its_transfer_syntax_was_accepted(archive):
    instance = stored(archive, JPEG2000)
    ds = dataset_for(instance, [ExplicitVRLittleEndian, JPEG2000])
    assert ds.file_meta.TransferSyntaxUID == JPEG2000
    original = pydicom.dcmread(pydicom_file("JPEG2000.dcm"))
    assert ds.PixelData == original.PixelData


@pytest.mark.parametrize("transfer_syntax", [JPEG2000, RLELossless])
@pytest.mark.parametrize("accepted", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_it_decompresses_for_a_peer_that_takes_only_uncompressed(
    archive, transfer_syntax, accepted
):
    instance = stored(archive, transfer_syntax)
    sample = "JPEG2000.dcm" if transfer_syntax == JPEG2000 else "MR_small_RLE.dcm"
    expected = pydicom.dcmread(pydicom_file(sample)).pixel_array

    ds = dataset_for(instance, [accepted])

    assert ds.file_meta.TransferSyntaxUID == accepted
    assert ds.SOPInstanceUID == instance.sop_instance_uid
    assert numpy.array_equal(ds.pixel_array, expected)


def test_it_re_encodes_an_uncompressed_file_for_a_peer_that_takes_only_implicit(archive):
    instance = stored(archive, ExplicitVRBigEndian)
    ds = dataset_for(instance, [ImplicitVRLittleEndian])
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    expected = pydicom.dcmread(pydicom_file("MR_small_bigendian.dcm")).pixel_array
    assert numpy.array_equal(ds.pixel_array, expected)


def test_it_leaves_the_file_as_stored_when_nothing_it_can_produce_was_accepted(archive):
    instance = stored(archive, JPEG2000)
    assert dataset_for(instance, [RLELossless]).file_meta.TransferSyntaxUID == JPEG2000
