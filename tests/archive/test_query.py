"""C-FIND matching (PS3.4 Annex C) over an archive of real files ingested through the pipeline."""

from dataclasses import dataclass
from io import BytesIO

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from backend.archive.models import Study
from backend.archive.query import QueryError, find

from ..conftest import pydicom_file
from .helpers import receive_file, variant

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # Hostile values make pydicom warn as it builds the identifier; that is the point.
    pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning"),
]

CT = pydicom.dcmread(pydicom_file("CT_small.dcm"))
MR = pydicom.dcmread(pydicom_file("MR_small.dcm"))
FRENCH = pydicom.dcmread(pydicom_file("../charset_files/chrFren.dcm"))
JAPANESE = pydicom.dcmread(pydicom_file("../charset_files/chrH31.dcm"))
CT_STUDY = {
    "AccessionNumber": "ACC-001",
    "StudyDescription": "Head CT",
    "ReferringPhysicianName": "Smith^John",
}


@dataclass
class Archive:
    ct_series: str  # CT_small's own series, two images
    pt_series: str  # a second series of the CT study
    pt_image: str
    hidden_study: str  # a second study of the CT patient, outside `visible`
    other_study: str  # a study of another patient, outside `visible` too
    visible: "pydicom.Dataset"


@pytest.fixture
def archive(tasks, tmp_path) -> Archive:
    """Four visible studies (CT with CT and PT series, MR, two charset samples), two hidden."""
    receive_file(variant(tmp_path, **CT_STUDY, AcquisitionDateTime="20040119072731"), tasks)
    receive_file(
        variant(tmp_path, **CT_STUDY, SOPInstanceUID="new-uid", InstanceNumber=2, KVP="140"),
        tasks,
    )
    pt = variant(
        tmp_path,
        **CT_STUDY,
        SeriesInstanceUID="new-uid",
        SOPInstanceUID="new-uid",
        Modality="PT",
        SeriesNumber=2,
        SeriesDescription="PET AC",
        BodyPartExamined="HEAD",
        SeriesDate="20040120",
    )
    receive_file(pt, tasks)
    receive_file(pydicom_file("MR_small.dcm"), tasks)
    receive_file(pydicom_file("../charset_files/chrFren.dcm"), tasks)
    receive_file(pydicom_file("../charset_files/chrH31.dcm"), tasks)
    hidden = variant(
        tmp_path,
        AccessionNumber="SECRET",
        StudyDate="20040119",
        StudyInstanceUID="new-uid",
        SeriesInstanceUID="new-uid",
        SOPInstanceUID="new-uid",
    )
    receive_file(hidden, tasks)
    other = variant(
        tmp_path,
        "MR_small.dcm",
        PatientID="HIDDEN1",
        PatientName="Hidden^Person",
        AccessionNumber="SECRET",
        StudyInstanceUID="new-uid",
        SeriesInstanceUID="new-uid",
        SOPInstanceUID="new-uid",
    )
    receive_file(other, tasks)
    hidden_uids = [pydicom.dcmread(p).StudyInstanceUID for p in (hidden, other)]
    pt_ds = pydicom.dcmread(pt)
    return Archive(
        ct_series=CT.SeriesInstanceUID,
        pt_series=pt_ds.SeriesInstanceUID,
        pt_image=pt_ds.SOPInstanceUID,
        hidden_study=hidden_uids[0],
        other_study=hidden_uids[1],
        visible=Study.objects.exclude(study_instance_uid__in=hidden_uids),
    )


def query(archive: Archive | None, level: str, model="study", studies=None, limit=None, **keys):
    """Results of find(); with no archive, over all studies (for identifiers it refuses)."""
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    if studies is None:
        studies = archive.visible if archive else Study.objects.all()
    return list(find(identifier, model=model, studies=studies, limit=limit))


def check(cases: list[tuple[dict, list]], found) -> None:
    """Every case of a table at once (one archive for all): all mismatches in one report."""
    wrong = [(keys, found(keys), uids(*expected)) for keys, expected in cases]
    assert [case for case in wrong if case[1] != case[2]] == []


def studies(archive: Archive, model: str = "study", **keys) -> list[str]:
    """StudyInstanceUIDs found at STUDY level (with each patient's ID in the patient root)."""
    if model == "study":
        found = query(archive, "STUDY", **keys)
    else:
        found = []
        for patient_id in ("1CT1", "4MR1", "SCSFREN", "H31EXAMPLE"):
            found += query(archive, "STUDY", "patient", PatientID=patient_id, **keys)
    return sorted(ds.StudyInstanceUID for ds in found)


def uids(*datasets: pydicom.Dataset) -> list[str]:
    return sorted(ds.StudyInstanceUID for ds in datasets)


# Levels, models and the hierarchy


def test_it_finds_patients_with_counts_of_visible_studies_only(archive):
    (found,) = query(
        archive,
        "PATIENT",
        "patient",
        PatientID="1CT1",
        PatientName="",
        PatientSex="",
        NumberOfPatientRelatedStudies="",
        NumberOfPatientRelatedSeries="",
        NumberOfPatientRelatedInstances="",
    )
    assert found.QueryRetrieveLevel == "PATIENT"
    assert found.SpecificCharacterSet == "ISO_IR 192"
    assert (found.PatientName, found.PatientSex) == ("CompressedSamples^CT1", "O")
    # The hidden second study of this patient is not counted.
    assert found.NumberOfPatientRelatedStudies == 1
    assert found.NumberOfPatientRelatedSeries == 2
    assert found.NumberOfPatientRelatedInstances == 3


def test_it_refuses_the_patient_level_in_the_study_root():
    with pytest.raises(QueryError, match="QueryRetrieveLevel"):
        query(None, "PATIENT", "study")


@pytest.mark.parametrize("level", [None, "", "FOO", "study", "PATIENT\\STUDY"])
def test_it_needs_a_known_query_retrieve_level(level):
    identifier = pydicom.Dataset()
    if level is not None:
        identifier.QueryRetrieveLevel = level
    with pytest.raises(QueryError):
        find(identifier, model="patient", studies=Study.objects.all())


@pytest.mark.parametrize("model", ["patient", "study"])
def test_it_finds_studies_in_both_models(archive, model):
    assert studies(archive, model) == uids(CT, MR, FRENCH, JAPANESE)
    assert studies(archive, model, AccessionNumber="ACC-001") == uids(CT)


def test_it_needs_the_patient_id_above_the_study_level_in_the_patient_root():
    with pytest.raises(QueryError, match="PatientID"):
        query(None, "STUDY", "patient")
    with pytest.raises(QueryError, match="PatientID"):
        query(None, "STUDY", "patient", PatientID="1CT*")


@pytest.mark.parametrize("model", ["patient", "study"])
@pytest.mark.parametrize(
    ("level", "keys"),
    [
        ("SERIES", {}),
        ("SERIES", {"StudyInstanceUID": ""}),
        ("SERIES", {"StudyInstanceUID": "*"}),
        ("SERIES", {"StudyInstanceUID": f"{CT.StudyInstanceUID}\\{MR.StudyInstanceUID}"}),
        ("IMAGE", {"StudyInstanceUID": CT.StudyInstanceUID}),
        ("IMAGE", {"SeriesInstanceUID": CT.SeriesInstanceUID}),
    ],
)
def test_it_needs_a_single_unique_key_for_each_level_above(model, level, keys):
    if model == "patient":
        keys = {"PatientID": "1CT1", **keys}
    with pytest.raises(QueryError, match="needs a single"):
        query(None, level, model, **keys)


@pytest.mark.parametrize(
    ("level", "keys"),
    [
        ("STUDY", {"Modality": "CT"}),
        ("STUDY", {"SeriesInstanceUID": CT.SeriesInstanceUID}),
        ("SERIES", {"StudyInstanceUID": CT.StudyInstanceUID, "SOPInstanceUID": CT.SOPInstanceUID}),
    ],
)
def test_it_refuses_relational_queries(level, keys):
    with pytest.raises(QueryError, match="relational"):
        query(None, level, **keys)


def test_it_refuses_study_keys_at_the_patient_level():
    with pytest.raises(QueryError, match="relational"):
        query(None, "PATIENT", "patient", StudyDate="20040119")


def test_it_returns_keys_of_lower_levels_empty(archive):
    (found,) = query(archive, "STUDY", AccessionNumber="ACC-001", Modality="", SeriesNumber="")
    assert found.Modality == "" and found.SeriesNumber is None  # IS: empty is None in pydicom


@pytest.mark.parametrize("model", ["patient", "study"])
def test_it_finds_the_series_of_a_study(archive, model):
    keys = {"PatientID": "1CT1"} if model == "patient" else {}
    found = query(
        archive,
        "SERIES",
        model,
        StudyInstanceUID=CT.StudyInstanceUID,
        SeriesNumber="",
        Modality="",
        NumberOfSeriesRelatedInstances="",
        **keys,
    )
    assert [ds.SeriesInstanceUID for ds in found] == [archive.ct_series, archive.pt_series]
    assert [ds.Modality for ds in found] == ["CT", "PT"]
    assert [ds.NumberOfSeriesRelatedInstances for ds in found] == [2, 1]
    assert all(ds.StudyInstanceUID == CT.StudyInstanceUID for ds in found)
    assert all(ds.QueryRetrieveLevel == "SERIES" for ds in found)


SERIES_KEYS = [  # (keys, whether the PT series matches; the CT series never does)
    ({"Modality": "PT"}, True),
    ({"Modality": "P?"}, True),
    ({"Modality": "MR\\PT"}, True),
    ({"SeriesNumber": "2"}, True),
    ({"SeriesDescription": "PET*"}, True),
    ({"SeriesDescription": "PET AC"}, True),
    ({"SeriesDate": "20040120-"}, True),
    ({"BodyPartExamined": "HEAD"}, True),
    ({"SeriesDescription": "pet ac"}, False),
    ({"SeriesNumber": "3"}, False),
    ({"SeriesDate": "20050101-"}, False),
    ({"StudyDescription": "x"}, False),
]


def test_it_matches_series_keys(archive):
    uid_list = ({"SeriesInstanceUID": f"1.2.3\\{archive.pt_series}"}, True)
    wrong = []
    for keys, matches in [*SERIES_KEYS, uid_list]:
        found = query(archive, "SERIES", StudyInstanceUID=CT.StudyInstanceUID, **keys)
        if [ds.SeriesInstanceUID for ds in found] != ([archive.pt_series] if matches else []):
            wrong.append(keys)
    assert wrong == []


def test_it_matches_keys_of_the_levels_above(archive):
    keys = {"StudyInstanceUID": CT.StudyInstanceUID, "StudyDescription": "Head*"}
    assert len(query(archive, "SERIES", PatientName="compressed*", **keys)) == 2


@pytest.mark.parametrize("model", ["patient", "study"])
def test_it_finds_images_and_fills_return_keys_from_the_stored_header(archive, model):
    keys = {"PatientID": "1CT1"} if model == "patient" else {}
    found = query(
        archive,
        "IMAGE",
        model,
        StudyInstanceUID=CT.StudyInstanceUID,
        SeriesInstanceUID=archive.ct_series,
        InstanceNumber="",
        SOPClassUID="",
        ImageType="",
        SliceThickness="",
        PatientComments="",
        PatientName="",
        **keys,
    )
    assert [ds.InstanceNumber for ds in found] == [1, 2]
    first = found[0]
    assert first.SOPInstanceUID == CT.SOPInstanceUID
    assert first.SOPClassUID == CT.SOPClassUID
    assert list(first.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert first.SliceThickness == 5.0
    assert first.PatientComments == ""  # not in the file: universal return, empty
    assert first.PatientName == "CompressedSamples^CT1"
    assert first.QueryRetrieveLevel == "IMAGE"


IMAGE_KEYS = [  # (keys, InstanceNumbers of the CT series' images that match)
    ({"InstanceNumber": "2"}, [2]),
    ({"SOPInstanceUID": CT.SOPInstanceUID}, [1]),
    ({"SOPClassUID": CT.SOPClassUID}, [1, 2]),
    # Below: only in the stored header, matched in Python.
    ({"ImageType": "AXIAL"}, [1, 2]),  # any value of a multi-valued key
    ({"ImageType": "ORIG*"}, [1, 2]),
    ({"ImageType": "original"}, []),
    ({"KVP": "140"}, [2]),
    ({"KVP": "140.0\\999"}, [2]),
    ({"AcquisitionDateTime": "20040119072731"}, [1]),
    ({"AcquisitionDateTime": "200401-20040119"}, [1]),
    ({"AcquisitionDateTime": "2005-"}, []),
    ({"AcquisitionDate": "19970430"}, [1, 2]),
    ({"AcquisitionTime": "1129-1130"}, [1, 2]),
    ({"AcquisitionTime": "1130-"}, []),
    ({"Manufacturer": "*"}, [1, 2]),
    ({"PatientComments": "x"}, []),  # absent: only universal matching matches
    ({"PatientName": "compressedsamples*"}, [1, 2]),  # indexed, from the level above
]


def test_it_matches_image_keys(archive):
    wrong = []
    for keys, numbers in IMAGE_KEYS:
        found = query(
            archive,
            "IMAGE",
            StudyInstanceUID=CT.StudyInstanceUID,
            SeriesInstanceUID=archive.ct_series,
            **{"InstanceNumber": "", **keys},
        )
        if [ds.InstanceNumber for ds in found] != numbers:
            wrong.append(keys)
    assert wrong == []


# Matching types (PS3.4 C.2.2.2)


PERSON_NAMES = [
    ({"PatientName": "buc^jerome"}, [FRENCH]),
    ({"PatientName": "BUC^JÉRÔME"}, [FRENCH]),
    ({"PatientName": "Buc*"}, [FRENCH]),
    ({"PatientName": "B?c^J*"}, [FRENCH]),
    ({"PatientName": "Buc"}, []),
    ({"PatientName": "Yamada^Tarou"}, []),  # all component groups are one text
    ({"PatientName": "Yamada^Tarou*"}, [JAPANESE]),
    ({"PatientName": "*山田*"}, [JAPANESE]),
    ({"PatientName": "compressedsamples^*"}, [CT, MR]),
    ({"PatientName": "*"}, [CT, MR, FRENCH, JAPANESE]),
    ({"ReferringPhysicianName": "smith^john"}, [CT]),
    ({"ReferringPhysicianName": "SM*"}, [CT]),
]


@pytest.mark.parametrize("model", ["patient", "study"])
def test_it_matches_person_names_ignoring_case_and_accents(archive, model):
    check(PERSON_NAMES, lambda keys: studies(archive, model, **keys))


SINGLE_VALUES = [
    ({"AccessionNumber": "ACC-001"}, [CT]),
    ({"AccessionNumber": "acc-001"}, []),
    ({"StudyDescription": "Head CT"}, [CT]),
    ({"StudyDescription": "head ct"}, []),
    ({"StudyDescription": "Head"}, []),
    ({"StudyID": "4MR1"}, [MR]),
    ({"PatientSex": "F"}, [MR]),
    ({"PatientSex": "F\\O"}, [CT, MR]),
    ({"IssuerOfPatientID": "NOBODY"}, []),
    ({"PatientBirthDate": "19000101-"}, []),
]


@pytest.mark.parametrize("model", ["patient", "study"])
def test_it_matches_single_values_case_sensitively(archive, model):
    check(SINGLE_VALUES, lambda keys: studies(archive, model, **keys))


WILDCARDS = [
    ({"AccessionNumber": "ACC*"}, [CT]),
    ({"AccessionNumber": "AC?-00?"}, [CT]),
    ({"AccessionNumber": "*-001"}, [CT]),
    ({"AccessionNumber": "acc*"}, []),
    ({"AccessionNumber": "ACC%"}, []),  # SQL's wildcards are plain characters
    ({"AccessionNumber": "ACC_001"}, []),
    ({"AccessionNumber": "AC%*"}, []),
    ({"AccessionNumber": "A_C*"}, []),
    ({"AccessionNumber": "*\\NONE"}, [CT, MR, FRENCH, JAPANESE]),  # one universal value
    ({"AccessionNumber": "[A]CC*"}, []),  # and so are GLOB's brackets
    ({"StudyDescription": "*CT"}, [CT]),
    ({"StudyDescription": "He?d*"}, [CT]),
    ({"StudyDescription": "*ct"}, []),
    ({"StudyID": "?MR?"}, [MR]),
]


@pytest.mark.parametrize("model", ["patient", "study"])
def test_it_matches_wildcards(archive, model):
    check(WILDCARDS, lambda keys: studies(archive, model, **keys))


@pytest.mark.parametrize("model", ["patient", "study"])
def test_it_matches_empty_values_and_stars_universally(archive, model):
    # FRENCH and JAPANESE have no StudyDescription, AccessionNumber, ReferringPhysicianName.
    every = [CT, MR, FRENCH, JAPANESE]
    keys = ("StudyDescription", "AccessionNumber", "ReferringPhysicianName", "StudyTime")
    cases = [({key: value}, every) for key in keys for value in ("", "*", "**")]
    check(cases, lambda keys: studies(archive, model, **keys))


DATES_AND_TIMES = [
    ({"StudyDate": "20040119"}, [CT]),
    ({"StudyDate": "20040101-20040131"}, [CT]),
    ({"StudyDate": "20040120-"}, [MR]),
    ({"StudyDate": "-20040826"}, [CT, MR]),
    ({"StudyDate": "20050101-"}, []),
    ({"StudyDate": "20040131-20040101"}, []),
    ({"StudyTime": "072730"}, [CT]),
    ({"StudyTime": "0727"}, [CT]),  # to its precision: 07:27:00 to 07:27:59.999999
    ({"StudyTime": "07"}, [CT]),
    ({"StudyTime": "0728"}, []),
    ({"StudyTime": "07-08"}, [CT]),
    ({"StudyTime": "1800-"}, [MR]),
    ({"StudyTime": "-185059.5"}, [CT, MR]),
    ({"StudyTime": "-072729.999999"}, []),
    # StudyDate and StudyTime match independently (no combined matching, C.2.2.2.5.2).
    ({"StudyDate": "20040101-", "StudyTime": "-1200"}, [CT]),
]


@pytest.mark.parametrize("model", ["patient", "study"])
def test_it_matches_dates_and_times_and_their_ranges(archive, model):
    check(DATES_AND_TIMES, lambda keys: studies(archive, model, **keys))


@pytest.mark.parametrize("model", ["patient", "study"])
def test_it_matches_lists_of_uids(archive, model):
    both = f"{CT.StudyInstanceUID}\\{FRENCH.StudyInstanceUID}\\1.2.3"
    assert studies(archive, model, StudyInstanceUID=both) == uids(CT, FRENCH)
    assert studies(archive, model, StudyInstanceUID=MR.StudyInstanceUID) == uids(MR)


MODALITIES = [
    ({"ModalitiesInStudy": "PT"}, [CT]),
    ({"ModalitiesInStudy": "CT"}, [CT]),
    ({"ModalitiesInStudy": "MR\\PT"}, [CT, MR]),
    ({"ModalitiesInStudy": "?T"}, [CT, FRENCH, JAPANESE]),
    ({"ModalitiesInStudy": "US"}, []),
]


@pytest.mark.parametrize("model", ["patient", "study"])
def test_it_matches_a_study_when_any_of_its_modalities_matches(archive, model):
    check(MODALITIES, lambda keys: studies(archive, model, **keys))


# Responses


def test_it_returns_every_requested_key(archive):
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.AccessionNumber = "ACC-001"
    for keyword in (
        "PatientName",
        "PatientBirthDate",
        "StudyDate",
        "StudyTime",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "NumberOfPatientRelatedStudies",
        "SOPClassesInStudy",
        "InstanceAvailability",
        "RetrieveAETitle",
        "OtherPatientIDs",  # not indexed: empty
    ):
        setattr(identifier, keyword, "")
    identifier.StudyComments = "ignored"  # an optional key this archive cannot match on
    identifier.ReferencedStudySequence = Sequence([pydicom.Dataset()])  # no sequence matching
    identifier.add_new(0x00091001, "LO", "")  # a private tag
    (found,) = find(identifier, model="study", studies=archive.visible)
    assert found.StudyInstanceUID == CT.StudyInstanceUID  # the unique key, always
    assert found.PatientID == "1CT1"
    assert found.PatientName == "CompressedSamples^CT1"
    assert (found.StudyDate, found.StudyTime) == ("20040119", "072730")
    assert found.PatientBirthDate == ""
    assert list(found.ModalitiesInStudy) == ["CT", "PT"]
    assert (found.NumberOfStudyRelatedSeries, found.NumberOfStudyRelatedInstances) == (2, 3)
    assert found.NumberOfPatientRelatedStudies == 1
    assert found.SOPClassesInStudy == CT.SOPClassUID
    assert found.InstanceAvailability == "ONLINE"
    assert found.RetrieveAETitle == ""
    assert found.OtherPatientIDs == "" and found.StudyComments == ""
    assert found.ReferencedStudySequence == []
    assert found[0x00091001].value == ""


def test_it_returns_names_as_unicode_in_utf8(archive):
    (found,) = query(archive, "STUDY", PatientName="Buc*")
    assert found.PatientName == "Buc^Jérôme"
    assert found.SpecificCharacterSet == "ISO_IR 192"
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, found)
    assert "Buc^Jérôme".encode() in out.getvalue()
    (japanese,) = query(archive, "STUDY", PatientName="Yamada*")
    assert japanese.PatientName == "Yamada^Tarou=山田^太郎=やまだ^たろう"


# Access


@pytest.mark.parametrize("model", ["patient", "study"])
def test_it_never_returns_anything_outside_the_given_studies(archive, model):
    patient = {"PatientID": "HIDDEN1"} if model == "patient" else {}
    assert studies(archive, model, AccessionNumber="SECRET") == []
    assert query(archive, "STUDY", model, AccessionNumber="SECRET", **patient) == []
    for study in (archive.hidden_study, archive.other_study):
        keys = {"PatientID": "HIDDEN1" if study == archive.other_study else "1CT1"}
        keys = keys if model == "patient" else {}
        assert query(archive, "SERIES", model, StudyInstanceUID=study, **keys) == []
        hidden = Study.objects.get(study_instance_uid=study).series.get()
        image = {"SeriesInstanceUID": hidden.series_instance_uid}
        assert query(archive, "IMAGE", model, StudyInstanceUID=study, **image, **keys) == []


def test_it_never_returns_a_patient_without_a_visible_study(archive):
    assert query(archive, "PATIENT", "patient", PatientID="HIDDEN1") == []
    assert query(archive, "PATIENT", "patient", PatientName="Hidden*") == []
    everyone = query(archive, "PATIENT", "patient")
    assert sorted(ds.PatientID for ds in everyone) == ["1CT1", "4MR1", "H31EXAMPLE", "SCSFREN"]
    every_study = query(archive, "PATIENT", "patient", studies=Study.objects.all())
    assert len(every_study) == 5


def test_it_finds_nothing_in_no_studies(archive):
    for level, model in (("PATIENT", "patient"), ("STUDY", "study")):
        assert query(archive, level, model, studies=Study.objects.none()) == []
    keys = {"StudyInstanceUID": CT.StudyInstanceUID, "SeriesInstanceUID": CT.SeriesInstanceUID}
    assert query(archive, "IMAGE", studies=Study.objects.none(), **keys) == []


# Order and limits


def test_it_returns_studies_newest_first_and_stops_at_the_limit(archive):
    found = query(archive, "STUDY", StudyDate="20040101-")
    assert [ds.StudyInstanceUID for ds in found] == [MR.StudyInstanceUID, CT.StudyInstanceUID]
    (first,) = query(archive, "STUDY", StudyDate="20040101-", limit=1)
    assert first.StudyInstanceUID == MR.StudyInstanceUID
    assert query(archive, "STUDY", limit=0) == []
    assert len(query(archive, "STUDY", limit=3)) == 3


def test_it_applies_the_limit_after_matching_on_the_stored_header(archive):
    keys = {"StudyInstanceUID": CT.StudyInstanceUID, "SeriesInstanceUID": archive.ct_series}
    (found,) = query(archive, "IMAGE", KVP="140", InstanceNumber="", limit=1, **keys)
    assert found.InstanceNumber == 2


def test_it_streams_lazily_but_checks_the_identifier_at_once(archive):
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    with pytest.raises(QueryError):
        find(identifier, model="study", studies=archive.visible)  # no next() needed
    identifier.QueryRetrieveLevel = "STUDY"
    results = find(identifier, model="study", studies=archive.visible)
    assert next(results).QueryRetrieveLevel == "STUDY"


def test_it_refuses_a_negative_limit_or_unknown_model():
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    with pytest.raises(ValueError, match="limit"):
        find(identifier, model="study", studies=Study.objects.all(), limit=-1)
    with pytest.raises(ValueError, match="model"):
        find(identifier, model="worklist", studies=Study.objects.all())


# Hostile input


@pytest.mark.parametrize(
    "keys",
    [
        {"StudyDate": "20241399"},
        {"StudyDate": "-"},
        {"StudyDate": "2024-01-01"},
        {"StudyDate": "20240101-20240102-20240103"},
        {"StudyDate": "2004*"},
        {"StudyDate": "20040119\\20040826"},
        {"StudyTime": "25"},
        {"StudyTime": "07:27"},
        {"StudyTime": "0760"},
        {"StudyTime": "07.5"},
        {"StudyInstanceUID": "1.2.*"},
        {"StudyInstanceUID": "1.2.3' OR '1'='1"},
        {"StudyInstanceUID": "01.2"},
        {"StudyInstanceUID": "1." + "2" * 70},
        {"StudyInstanceUID": "\\".join(["1.2"] * 1001)},
        {"AccessionNumber": "A" * 5000},
        {"AccessionNumber": "A\0B"},
        {"PatientName": "\udcff"},
    ],
)
def test_it_refuses_malformed_values(keys):
    with pytest.raises(QueryError):
        query(None, "STUDY", **keys)


SQL_METACHARACTERS = [
    ({"AccessionNumber": "x' OR '1'='1"}, []),
    ({"AccessionNumber": "'; DROP TABLE archive_study; --"}, []),
    ({"StudyDescription": "%"}, []),
    ({"StudyDescription": "_"}, []),
    ({"PatientName": "%\\_"}, []),
    ({"PatientName": "%\\%"}, []),
    ({"StudyID": "*'*"}, []),
    ({"ModalitiesInStudy": "%"}, []),
]


def test_it_finds_nothing_for_sql_metacharacters(archive):
    check(SQL_METACHARACTERS, lambda keys: uids(*query(archive, "STUDY", **keys)))
    assert Study.objects.count() == 6


@pytest.mark.parametrize(
    "keys",
    [
        {"SeriesNumber": "1 OR 1=1"},
        {"SeriesNumber": "99999999999"},
        {"SeriesNumber": "1*"},
        {"SeriesNumber": "1-3"},
    ],
)
def test_it_refuses_values_that_are_not_numbers(keys):
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.StudyInstanceUID = CT.StudyInstanceUID
    for keyword, value in keys.items():  # as read from the network: converted on access
        tag = Tag(keyword)
        identifier[tag] = RawDataElement(tag, None, len(value), value.encode(), 0, True, True)
    with pytest.raises(QueryError):
        find(identifier, model="study", studies=Study.objects.all())


def test_it_refuses_values_of_the_wrong_type(archive):
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.add_new("StudyDate", "OB", b"\xff\xfe")
    with pytest.raises(QueryError):
        find(identifier, model="study", studies=archive.visible)
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.add_new("AccessionNumber", "SQ", Sequence([pydicom.Dataset()]))
    with pytest.raises(QueryError, match="sequence"):
        find(identifier, model="study", studies=archive.visible)
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.add_new("PatientName", "US", 5)  # a number where a name belongs: no such name
    assert list(find(identifier, model="study", studies=archive.visible)) == []


def test_it_reads_an_identifier_as_received_over_the_network(archive):
    identifier = pydicom.Dataset()
    identifier.SpecificCharacterSet = "ISO_IR 100"
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = "Buc^Jérôme"
    identifier.StudyInstanceUID = ""
    data = DicomBytesIO()
    data.is_little_endian, data.is_implicit_VR = True, True
    write_dataset(data, identifier)
    received = pydicom.dcmread(BytesIO(data.getvalue()), force=True)
    (found,) = find(received, model="study", studies=archive.visible)
    assert found.StudyInstanceUID == FRENCH.StudyInstanceUID
