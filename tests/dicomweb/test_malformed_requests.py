"""Malformed and hostile requests to every DICOMweb resource: each is refused with a 4xx
and an {"error": "..."} in JSON (a broken STOW-RS body: a 409 whose FailedSOPSequence says
why, PS3.18 §10.5.3), and never answered with a 500."""

import json

import pydicom
import pytest

from backend.archive.models import Instance, Study

from ..archive.helpers import receive_file
from ..conftest import pydicom_file
from .conftest import client_with_token

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # pydicom warns as hostile values become data elements; that is the point.
    pytest.mark.filterwarnings("ignore::UserWarning:pydicom"),
]

# The six search resources; {study} and {series} are CT_small's, so they exist.
ALL_SEARCHES = [
    "/dicomweb/studies",
    "/dicomweb/series",
    "/dicomweb/instances",
    "/dicomweb/studies/{study}/series",
    "/dicomweb/studies/{study}/instances",
    "/dicomweb/studies/{study}/series/{series}/instances",
]
BOUNDARY = "lightbox-test-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
CANNOT_UNDERSTAND = 0xC000


@pytest.fixture
def ct(tasks) -> pydicom.Dataset:
    """CT_small.dcm, ingested: a study and series for the paths of ALL_SEARCHES."""
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    return pydicom.dcmread(pydicom_file("CT_small.dcm"))


def in_study(path: str, ds: pydicom.Dataset) -> str:
    return path.format(study=ds.StudyInstanceUID, series=ds.SeriesInstanceUID)


@pytest.fixture
def hostile(token):
    """The reader's client, which answers a server error as a 500 instead of raising."""
    return client_with_token(token, raise_request_exception=False)


def refused(response, *statuses: int) -> str:
    """A 4xx (one of `statuses` if given) answered in words as JSON; the words."""
    status = response.status_code
    assert 400 <= status < 500, (status, response.content[:300])
    if statuses:
        assert status in statuses, (status, response.content[:300])
    assert response["Content-Type"] == "application/json", response.content[:300]
    error = json.loads(response.content)["error"]
    assert isinstance(error, str) and error
    return error


def part(body: bytes, content_type: str = "application/dicom") -> bytes:
    return f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode() + body + b"\r\n"


CLOSE = f"--{BOUNDARY}--\r\n".encode()
CT = pydicom_file("CT_small.dcm").read_bytes()
MR = pydicom_file("MR_small.dcm").read_bytes()


# QIDO-RS query parameters (PS3.18 §8.3.4)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/dicomweb/studies", "StudyDate=2019-13-45"),
        ("/dicomweb/studies", "StudyDate=abc"),
        ("/dicomweb/studies", "StudyDate=20191345"),
        ("/dicomweb/studies", "StudyDate=20190230"),
        ("/dicomweb/studies", "StudyDate=2019"),
        ("/dicomweb/studies", "StudyDate=2019-01-01"),
        ("/dicomweb/studies", "StudyDate=20190101-20191231-20200101"),
        ("/dicomweb/studies", "StudyDate=-"),
        ("/dicomweb/studies", "StudyDate=2004*"),
        ("/dicomweb/studies", "StudyDate=20040101%5C20050101"),
        ("/dicomweb/studies", "PatientBirthDate=abc"),
        ("/dicomweb/studies", "StudyTime=2561"),
        ("/dicomweb/studies", "StudyTime=25"),
        ("/dicomweb/studies", "StudyTime=abc"),
        ("/dicomweb/studies", "StudyTime=10:30"),
        ("/dicomweb/studies", "StudyTime=1030.1234567"),
        ("/dicomweb/studies", "StudyTime=10*"),
        ("/dicomweb/series", "SeriesDate=abc"),
        ("/dicomweb/series", "SeriesTime=9999"),
        ("/dicomweb/instances", "ContentDate=abc"),
        ("/dicomweb/instances", "ContentTime=99"),
        ("/dicomweb/instances", "AcquisitionDate=2019-13-45"),  # matched in stored headers
        ("/dicomweb/instances", "AcquisitionDateTime=abc"),
        ("/dicomweb/instances", "AcquisitionDateTime=2004-2005-2006"),
    ],
)
def test_it_refuses_dates_and_times_it_cannot_read(hostile, path, query):
    refused(hostile.get(f"{path}?{query}"), 400)


@pytest.mark.parametrize("path", ALL_SEARCHES)
@pytest.mark.parametrize(
    "query",
    [
        "FooBar=1",
        "99999999=1",
        "0010001=1",  # seven digits
        "001000100=1",  # nine
        "00091010=1",  # private, with no creator
        "patientname=x",  # keywords are case-sensitive
        "PatientName2=x",
        "limit2=1",
        "includefield=FooBar",
        "includefield=99999999",
        "includefield=PatientName,FooBar",
    ],
)
def test_it_refuses_attributes_it_does_not_know(hostile, ct, path, query):
    response = hostile.get(f"{in_study(path, ct)}?{query}")
    assert "not a DICOM attribute" in refused(response, 400)


@pytest.mark.parametrize(
    "query",
    [
        "00081111.00081150=1",
        "ReferencedStudySequence.ReferencedSOPInstanceUID=1",
        "00100010.=1",
        "ReferencedStudySequence=1",
        "00081110=1",
        "includefield=00081111.00081150",
    ],
)
def test_it_refuses_matching_inside_sequences(hostile, query):
    refused(hostile.get(f"/dicomweb/studies?{query}"), 400)


@pytest.mark.parametrize("path", ALL_SEARCHES)
@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=abc",
        "limit=0",
        "limit=1.5",
        "limit=",
        "limit=%2B5",
        "limit=1e3",
        "limit=1&limit=2",
        "offset=-1",
        "offset=abc",
        "offset=1e3",
        "offset=99999999999999",
        "offset=1000001",
        "offset=0&offset=1",
        "fuzzymatching=maybe",
        "fuzzymatching=1",
        "fuzzymatching=",
    ],
)
def test_it_refuses_paging_and_control_parameters_it_cannot_read(hostile, ct, path, query):
    refused(hostile.get(f"{in_study(path, ct)}?{query}"), 400)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/dicomweb/studies", "StudyInstanceUID=1.3.*"),
        ("/dicomweb/studies", "StudyInstanceUID=1.2.3,abc"),
        ("/dicomweb/studies", "StudyInstanceUID=1.2.3%5C1.02"),
        ("/dicomweb/studies", "Modality=CT"),  # a series key in a study search
        ("/dicomweb/series", "SeriesInstanceUID=1.2%3F"),
        ("/dicomweb/series", "SeriesNumber=1%5C2"),
        ("/dicomweb/series", "SOPInstanceUID=1.2.3"),  # an instance key in a series search
        ("/dicomweb/instances", "InstanceNumber=1%5C2"),
        ("/dicomweb/instances", "InstanceNumber=99999999999"),
        ("/dicomweb/instances", "Rows=abc"),
        ("/dicomweb/instances", "Rows=1*"),
        ("/dicomweb/instances", "InstanceNumber=abc"),
        ("/dicomweb/studies", "InstanceNumber=abc"),
        ("/dicomweb/series", "SeriesNumber=abc"),
        ("/dicomweb/series", "SeriesNumber=1*"),
        ("/dicomweb/instances", "NumberOfFrames=abc"),
        ("/dicomweb/studies", "PatientWeight=abc"),
        ("/dicomweb/instances", "KVP=abc"),
        ("/dicomweb/instances", "KVP=%27%20OR%201=1--"),
        ("/dicomweb/instances", "SliceThickness=abc"),
        ("/dicomweb/instances", "ImagePositionPatient=abc"),
    ],
)
def test_it_refuses_values_a_key_cannot_take(hostile, path, query):
    refused(hostile.get(f"{path}?{query}"), 400)


INJECTIONS = [
    "' OR 1=1--",
    "' OR '1'='1",
    '" OR ""="',
    "<script>alert(1)</script>",
    "Robert'); DROP TABLE archive_study;--",
    "1; SELECT pg_sleep(5)",
    "{{7*7}}",
    "${jndi:ldap://example.org/a}",
    "../../etc/passwd",
    "%",
    "_MR1",
    "[A-Z]*",
    "%' OR patient_id LIKE '%",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_it_matches_injection_strings_literally(hostile, stored, value):
    for key in ("PatientName", "PatientID", "AccessionNumber", "StudyDescription"):
        response = hostile.get("/dicomweb/studies", {key: value})
        assert response.status_code == 200, (key, response.content)
        assert response["Content-Type"] == "application/dicom+json"
        assert json.loads(response.content) == [], key
    response = hostile.get("/dicomweb/instances", {"ImageComments": value})
    assert json.loads(response.content) == []
    assert Study.objects.count() == 5


@pytest.mark.parametrize(
    "query",
    [
        "PatientName=a%00b",
        "PatientID=4MR%001",
        "StudyInstanceUID=1.2%003",
        "Patient%00Name=x",
        "includefield=Patient%00Name",
        "limit=1%00",
        "PatientName=%00",
        "PatientID=4MR1%00",
    ],
)
def test_it_refuses_nul_characters(hostile, stored, query):
    refused(hostile.get(f"/dicomweb/studies?{query}"), 400)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/dicomweb/studies", "PatientName=" + "a" * 10_000),
        ("/dicomweb/studies", "PatientName=" + "a" * 2_000),  # within qido's, past query's
        ("/dicomweb/studies", "PatientName=" + "%C3%A9" * 3_000),
        ("/dicomweb/studies", "PatientID=" + "x" * 10_000),
        ("/dicomweb/studies", "AccessionNumber=" + "x" * 10_000),
        ("/dicomweb/studies", "StudyInstanceUID=" + "1" * 10_000),
        ("/dicomweb/studies", "StudyInstanceUID=" + ",".join(["1.2"] * 1_001)),
        ("/dicomweb/studies", "StudyDate=" + "1" * 10_000),
        ("/dicomweb/studies", "ModalitiesInStudy=" + "CT," * 3_000),
        ("/dicomweb/studies", "a" * 10_000 + "=1"),
        ("/dicomweb/studies", "includefield=" + "a" * 10_000),
        ("/dicomweb/studies", "limit=" + "1" * 10_000),
        ("/dicomweb/instances", "KVP=" + "1" * 10_000),
        ("/dicomweb/instances", "ImageComments=" + "x" * 3_000),
    ],
)
def test_it_refuses_values_that_are_too_long(hostile, path, query):
    refused(hostile.get(f"{path}?{query}"), 400)


def test_it_refuses_too_many_parameters_in_json(hostile):
    query = "&".join(["includefield=PatientAge"] * 1_100)
    refused(hostile.get(f"/dicomweb/studies?{query}"), 400)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/dicomweb/studies", "%ff=1"),
        ("/dicomweb/studies", "includefield=%ff"),
        ("/dicomweb/studies", "limit=%ff"),
        ("/dicomweb/studies", "StudyInstanceUID=%ff"),
        ("/dicomweb/studies", "StudyDate=%ff"),
        ("/dicomweb/studies/%ff/series", ""),
        ("/wado", "requestType=WADO&studyUID=1.2&seriesUID=1.2&objectUID=%ff"),
        ("/dicomweb/studies", "PatientName=%ff"),
        ("/dicomweb/studies", "PatientName=%C3%28"),
        ("/dicomweb/studies", "PatientID=%ff"),
        ("/dicomweb/studies", "AccessionNumber=M%FCller"),
    ],
)
def test_it_refuses_text_that_is_not_utf8(hostile, path, query):
    refused(hostile.get(f"{path}?{query}" if query else path), 400)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "=1",
        "&&&",
        "PatientName",
        "PatientName=%5C",  # two empty values: universal matching
        "PatientName=%5E%5E%5E",
        "PatientName=*%3F*",
        "includefield=",
        "limit=%205",
        "StudyDescription=%F0%9F%98%80",
    ],
)
def test_it_answers_odd_but_harmless_queries(hostile, query):
    response = hostile.get(f"/dicomweb/studies?{query}")
    assert response.status_code == 200
    assert isinstance(json.loads(response.content), list)


# UIDs and frame numbers in paths (PS3.5 §9.1, PS3.18 §8.3.3)

BAD_UIDS = [
    "abc",
    "1" * 65,
    "1." + "2" * 63,  # 65 characters
    "1.02",
    "1..2",
    ".1",
    "1.",
    "1.2.a",
    "-1.2",
    "1,2",
    "*",
    "%201.2",
    "1.2%20",
    "%ff",
    "%00",
    "1.2%00",
    "%EF%BC%91.%EF%BC%92",  # fullwidth digits
]
UID_PATHS = [
    "/dicomweb/studies/{}",
    "/dicomweb/studies/{}/series",
    "/dicomweb/studies/{}/instances",
    "/dicomweb/studies/{}/metadata",
    "/dicomweb/studies/{}/rendered",
    "/dicomweb/studies/{}/thumbnail",
    "/dicomweb/studies/1.2/series/{}",
    "/dicomweb/studies/1.2/series/{}/instances",
    "/dicomweb/studies/1.2/series/{}/metadata",
    "/dicomweb/studies/1.2/series/{}/thumbnail",
    "/dicomweb/studies/1.2/series/1.3/instances/{}",
    "/dicomweb/studies/1.2/series/1.3/instances/{}/metadata",
    "/dicomweb/studies/1.2/series/1.3/instances/{}/frames/1",
    "/dicomweb/studies/1.2/series/1.3/instances/{}/rendered",
    "/dicomweb/studies/1.2/series/1.3/instances/{}/bulkdata/7FE00010",
    "/wado?requestType=WADO&studyUID={}&seriesUID=1.2&objectUID=1.3",
    "/wado?requestType=WADO&studyUID=1.2&seriesUID=1.3&objectUID={}",
]


@pytest.mark.parametrize("template", UID_PATHS)
@pytest.mark.parametrize("uid", BAD_UIDS)
def test_it_refuses_uids_that_are_not_uids(hostile, template, uid):
    assert "not a UID" in refused(hostile.get(template.format(uid)), 400)


@pytest.mark.parametrize("template", UID_PATHS)
def test_it_takes_a_64_character_uid_as_a_uid(hostile, template):
    uid = "1." + "2" * 62
    assert "no such" in refused(hostile.get(template.format(uid)), 404)


@pytest.mark.parametrize(
    "frames",
    [
        "0",
        "abc",
        "1,,2",
        "1,",
        ",1",
        "-1",
        "1.5",
        "1-2",
        "1%202",
        "99999999999",
        "%20",
        "%ff",
        "%00",
        "2",  # CT_small has one frame
        "1,2",
        ",".join(["1"] * 10_001),
    ],
)
def test_it_refuses_frame_lists_it_cannot_serve(hostile, stored, frames):
    ct = stored.ct
    instance = (
        f"/dicomweb/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
        f"/instances/{ct.SOPInstanceUID}"
    )
    for suffix in ("", "/rendered", "/thumbnail"):
        refused(hostile.get(f"{instance}/frames/{frames}{suffix}"))
    uids = f"studyUID={ct.StudyInstanceUID}&seriesUID={ct.SeriesInstanceUID}"
    refused(
        hostile.get(
            f"/wado?requestType=WADO&{uids}&objectUID={ct.SOPInstanceUID}&frameNumber={frames}"
        )
    )


@pytest.mark.parametrize(
    "path",
    [
        "/dicomweb/",
        "/dicomweb/foo",
        "/dicomweb/workitems",
        "/dicomweb/studies/1.2/foo",
        "/dicomweb/studies/1.2/series/1.3/instances/1.4/frames/1/foo",
        "/dicomweb/studies/1.2%2F3/series",
    ],
)
def test_it_answers_404_in_json_for_resources_that_do_not_exist(hostile, path):
    refused(hostile.get(path), 404)


# Headers


@pytest.mark.parametrize(
    "accept",
    [
        "garbage",
        ",",
        ";;",
        '"',
        "a/b/c",
        "text/html;;",
        "application/dicom+json; q",
        "application/dicom+json;q=abc",
        "application/dicom+json;q=2",
        "application/dicom+json;q=-1",
        "application/dicom+json;q=nan",
        "\x00",
    ],
)
def test_it_refuses_accept_headers_it_cannot_read(hostile, stored, accept):
    ct = stored.ct
    study = f"/dicomweb/studies/{ct.StudyInstanceUID}"
    instance = f"{study}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}"
    for path in [
        "/dicomweb/studies",
        f"{study}/series",
        study,
        f"{study}/metadata",
        f"{study}/rendered",
        f"{instance}/frames/1",
        f"{instance}/rendered",
        f"{instance}/thumbnail",
        f"{instance}/bulkdata/7FE00010",
    ]:
        assert "Accept" in refused(hostile.get(path, headers={"Accept": accept}), 400), path


METHODS = [
    ("post", "/dicomweb/series"),
    ("post", "/dicomweb/instances"),
    ("delete", "/dicomweb/studies"),
    ("put", "/dicomweb/studies"),
    ("put", "/dicomweb/studies/1.2.3"),
    ("post", "/dicomweb/studies/1.2.3/metadata"),
    ("patch", "/dicomweb/studies/1.2.3/series"),
    ("delete", "/dicomweb/studies/1.2.3/series/1.2.4/instances/1.2.5"),
    ("post", "/wado"),
]


@pytest.mark.parametrize(("method", "path"), METHODS)
def test_it_refuses_methods_a_resource_does_not_take(hostile, method, path):
    response = getattr(hostile, method)(path)
    assert response.status_code == 405
    assert "GET" in response["Allow"]


@pytest.mark.parametrize(("method", "path"), METHODS[:3])
def test_it_refuses_methods_in_json(hostile, method, path):
    refused(getattr(hostile, method)(path), 405)


# STOW-RS bodies (PS3.18 §10.5)


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 415),
        ("application/dicom+json", 415),
        ("text/plain", 415),
        ("application/dicom", 415),  # one instance, but not in multipart/related
        (f"multipart/related; boundary={BOUNDARY}", 415),  # no type
        (f'multipart/related; type="application/dicom+xml"; boundary={BOUNDARY}', 415),
        (f"multipart/form-data; boundary={BOUNDARY}", 415),
        ("garbage", 415),
        (";;", 415),
        (f"{STOW_TYPE}; q=7", 415),
        ('multipart/related; type="application/dicom"', 400),  # no boundary
        ('multipart/related; type="application/dicom"; boundary=', 400),
    ],
)
def test_it_refuses_a_store_that_is_not_multipart_dicom(hostile, tasks, content_type, status):
    response = hostile.generic("POST", "/dicomweb/studies", part(CT) + CLOSE, content_type)
    refused(response, status)
    tasks.run()
    assert Instance.objects.count() == 0


def test_it_refuses_a_store_to_a_study_that_is_not_a_uid(hostile, tasks):
    response = hostile.generic("POST", "/dicomweb/studies/abc", part(CT) + CLOSE, STOW_TYPE)
    assert "not a UID" in refused(response, 400)


BROKEN_BODIES = {
    "no closing delimiter": part(CT),
    "cut inside a part": part(CT)[:500],
    "garbage": b"garbage garbage garbage",
    "NUL bytes": b"\x00" * 1_000,
    "empty": b"",
    "headers that never end": f"--{BOUNDARY}\r\nContent-Type: application/dicom".encode(),
    "a header line without a colon": part(CT).replace(b"Content-Type:", b"nocolon") + CLOSE,
    "another boundary": part(CT).replace(BOUNDARY.encode(), b"other") + b"--other--\r\n",
    "a JSON part": part(b"{}", "application/json") + CLOSE,
    "a part that is not DICOM": part(b"hello") + CLOSE,
    "a cut DICOM file": part(CT[:400]) + CLOSE,
}


@pytest.mark.parametrize("body", BROKEN_BODIES.values(), ids=BROKEN_BODIES.keys())
def test_it_reports_a_broken_body_as_failed_never_500(hostile, tasks, body):
    response = hostile.generic("POST", "/dicomweb/studies", body, CONTENT_TYPE=STOW_TYPE)
    assert 400 <= response.status_code < 500, response.content[:300]
    if response["Content-Type"] == "application/dicom+json":  # 409, or 400 with reasons
        ds = pydicom.Dataset.from_json(json.loads(response.content))
        assert "ReferencedSOPSequence" not in ds
        assert [item.FailureReason for item in ds.FailedSOPSequence] == [CANNOT_UNDERSTAND]
        assert response["Warning"].startswith("299 ")
    else:
        refused(response)
    tasks.run()
    assert Instance.objects.count() == 0


@pytest.mark.parametrize(
    "boundary", ["b" * 71, '"unclosed', f"{BOUNDARY}; boundary=other"], ids=["long", "quote", "two"]
)
def test_it_reports_a_boundary_it_cannot_use(hostile, tasks, boundary):
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    response = hostile.generic("POST", "/dicomweb/studies", part(CT) + CLOSE, content_type)
    assert 400 <= response.status_code < 500
    tasks.run()
    assert Instance.objects.count() == 0


def test_it_stores_the_parts_before_the_body_breaks(hostile, tasks):
    body = part(CT) + part(MR)[:300]
    response = hostile.generic("POST", "/dicomweb/studies", body, STOW_TYPE)
    assert response.status_code == 202
    ds = pydicom.Dataset.from_json(json.loads(response.content))
    assert [item.ReferencedSOPInstanceUID for item in ds.ReferencedSOPSequence] == [
        pydicom.dcmread(pydicom_file("CT_small.dcm")).SOPInstanceUID
    ]
    assert [item.FailureReason for item in ds.FailedSOPSequence] == [CANNOT_UNDERSTAND]
    tasks.run()
    assert Instance.objects.count() == 1


def test_it_refuses_a_part_of_another_study_than_the_path_names(hostile, tasks):
    response = hostile.generic("POST", "/dicomweb/studies/1.2.3", part(CT) + CLOSE, STOW_TYPE)
    assert response.status_code == 409
    ds = pydicom.Dataset.from_json(json.loads(response.content))
    assert [item.FailureReason for item in ds.FailedSOPSequence] == [0xA900]
    tasks.run()
    assert Instance.objects.count() == 0


@pytest.mark.parametrize("path", ["/dicomweb/studies", "/dicomweb/studies/1.2.3"])
def test_it_refuses_a_body_of_no_parts(hostile, tasks, path):
    refused(hostile.generic("POST", path, CLOSE, STOW_TYPE), 400)
