"""QIDO-RS (PS3.18 §10.6) over real files ingested through the pipeline: the six search
resources, matching as C-FIND matches (PS3.4 C.2.2.2, PS3.18 §8.3.4), paging, and answers
in DICOM JSON (PS3.18 Annex F). Access first, then behaviour."""

import base64
import dataclasses
import json
from collections.abc import Callable

import pydicom
import pytest
from django.test import Client

from .conftest import PASSWORD, Stored, client_with_token, token_for, visible_uids

pytestmark = pytest.mark.django_db(transaction=True)

DICOM_JSON = "application/dicom+json"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
FIELDS = [field.name for field in dataclasses.fields(Stored)]
# The six search resources (PS3.18 Table 10.6.1-2), each with what it finds unfiltered.
ENDPOINTS: dict[str, tuple[Callable[[Stored], str], list[str]]] = {
    "studies": (lambda s: "/dicomweb/studies", ["ct", "mr", "nm", "mueller_ct", "berg"]),
    "series": (lambda s: "/dicomweb/series", FIELDS),
    "instances": (lambda s: "/dicomweb/instances", FIELDS),
    "study-series": (
        lambda s: f"/dicomweb/studies/{s.mueller_ct.StudyInstanceUID}/series",
        ["mueller_ct", "mueller_pt"],
    ),
    "study-instances": (
        lambda s: f"/dicomweb/studies/{s.mueller_ct.StudyInstanceUID}/instances",
        ["mueller_ct", "mueller_pt"],
    ),
    "series-instances": (
        lambda s: (
            f"/dicomweb/studies/{s.mueller_pt.StudyInstanceUID}"
            f"/series/{s.mueller_pt.SeriesInstanceUID}/instances"
        ),
        ["mueller_pt"],
    ),
}
# The same resources with made-up UIDs: credentials are checked before any lookup.
UNCHECKED_PATHS = [
    "/dicomweb/studies",
    "/dicomweb/series",
    "/dicomweb/instances",
    "/dicomweb/studies/1.2.3/series",
    "/dicomweb/studies/1.2.3/instances",
    "/dicomweb/studies/1.2.3/series/1.2.4/instances",
]


def search(client: Client, path: str, params: dict | None = None) -> list[pydicom.Dataset]:
    """The results of a search that must succeed, read back as data sets."""
    response = client.get(path, params or {})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].split(";")[0] == DICOM_JSON
    return [pydicom.Dataset.from_json(item) for item in json.loads(response.content)]


def unique_key(path: str) -> str:
    for suffix, keyword in (
        ("/studies", "StudyInstanceUID"),
        ("/series", "SeriesInstanceUID"),
        ("/instances", "SOPInstanceUID"),
    ):
        if path.endswith(suffix):
            return keyword
    raise AssertionError(path)


def named(stored: Stored, keyword: str, found: list[pydicom.Dataset]) -> list[str]:
    """The fixture names of what was found, by its unique key (first name wins: the
    study of mueller_ct and mueller_pt is mueller_ct's)."""
    names: dict[str, str] = {}
    for name in FIELDS:
        names.setdefault(getattr(stored, name)[keyword].value, name)
    return sorted(names.get(ds[keyword].value, f"? {ds[keyword].value}") for ds in found)


def found(client: Client, stored: Stored, path: str, params: dict | None = None) -> list[str]:
    return named(stored, unique_key(path), search(client, path, params))


def check(client: Client, stored: Stored, path: str, cases: list[tuple[dict, list[str]]]):
    """Every case of a table at once (one archive for all): all mismatches in one report."""
    wrong = [
        (params, got, sorted(expected))
        for params, expected in cases
        if (got := found(client, stored, path, params)) != sorted(expected)
    ]
    assert wrong == []


def basic(username: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()


# Access


@pytest.mark.parametrize("path", UNCHECKED_PATHS)
@pytest.mark.parametrize(
    "credentials", ["none", "inactive-session", "inactive-basic", "wrong-password", "revoked"]
)
def test_it_refuses_requests_without_valid_credentials(
    client, inactive, reader, revoked_token, path, credentials
):
    headers = {}
    if credentials == "inactive-session":
        client.force_login(inactive)
    elif credentials == "inactive-basic":
        headers["Authorization"] = basic("inactive")
    elif credentials == "wrong-password":
        headers["Authorization"] = "Basic " + base64.b64encode(b"reader:wrong").decode()
    elif credentials == "revoked":
        headers["Authorization"] = f"Bearer {revoked_token}"
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")
    assert "error" in response.json()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("how", ["session", "basic", "token", "read-only-token"])
def test_it_answers_the_reader_by_session_basic_or_token(client, reader, stored, endpoint, how):
    path, expected = ENDPOINTS[endpoint][0](stored), ENDPOINTS[endpoint][1]
    if how == "session":
        client.force_login(reader)
    elif how == "basic":
        client = Client(headers={"Authorization": basic("reader")})
    else:
        client = client_with_token(token_for(reader, ["read"] if how != "token" else None))
    assert found(client, stored, path) == sorted(expected)


@pytest.mark.parametrize("path", UNCHECKED_PATHS)
def test_it_refuses_a_token_without_the_read_scope(reader, path):
    response = client_with_token(token_for(reader, ["write"])).get(path)
    assert response.status_code == 403
    assert "error" in response.json()


def test_it_names_the_missing_scope_in_plain_words(reader):
    response = client_with_token(token_for(reader, ["write"])).get("/dicomweb/studies")
    assert "'read' scope" in response.json()["error"]


@pytest.mark.parametrize("endpoint", ["studies", "series", "instances"])
def test_it_finds_for_a_stranger_only_what_the_stranger_may_see(client, stranger, stored, endpoint):
    client.force_login(stranger)
    path = ENDPOINTS[endpoint][0](stored)
    visible = visible_uids(stranger)
    expected = [
        name for name in ENDPOINTS[endpoint][1] if getattr(stored, name).StudyInstanceUID in visible
    ]
    assert found(client, stored, path) == sorted(expected)


@pytest.mark.parametrize("resource", ["series", "instances"])
def test_it_answers_a_stranger_404_for_a_study_the_stranger_may_not_see(
    client, stranger, stored, resource
):
    client.force_login(stranger)
    visible = visible_uids(stranger)
    for ds in stored.studies():
        response = client.get(f"/dicomweb/studies/{ds.StudyInstanceUID}/{resource}")
        assert response.status_code == (200 if ds.StudyInstanceUID in visible else 404)


# The resources


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_finds_everything_under_each_resource(api, stored, endpoint):
    path, expected = ENDPOINTS[endpoint][0](stored), ENDPOINTS[endpoint][1]
    assert found(api, stored, path) == sorted(expected)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_answers_valid_dicom_json(api, stored, endpoint):
    response = api.get(ENDPOINTS[endpoint][0](stored), {"includefield": "all"})
    assert response["Content-Type"].split(";")[0] == DICOM_JSON
    results = json.loads(response.content)
    assert results
    for item in results:
        assert all(set(element) >= {"vr"} for element in item.values())
        assert all(tag == tag.upper() and len(tag) == 8 for tag in item)
        ds = pydicom.Dataset.from_json(item)
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert ds.to_json_dict() == item


def test_it_returns_names_as_the_unicode_stored(api, stored):
    (ds,) = search(api, "/dicomweb/studies", {"PatientID": "LBX-MUELLER"})
    assert ds.PatientName == "Müller^Jürgen"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "accept", ["application/dicom+xml", 'multipart/related; type="application/dicom+xml"']
)
def test_it_refuses_to_answer_in_xml(api, stored, endpoint, accept):
    response = api.get(ENDPOINTS[endpoint][0](stored), headers={"Accept": accept})
    assert response.status_code == 406
    assert DICOM_JSON in response.json()["error"]


@pytest.mark.parametrize(
    "accept",
    [
        DICOM_JSON,
        "application/json",
        "*/*",
        "application/*",
        "application/dicom+xml;q=0.9, application/dicom+json;q=0.5",
    ],
)
def test_it_answers_json_to_any_accept_that_allows_it(api, stored, accept):
    response = api.get("/dicomweb/studies", headers={"Accept": accept})
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == DICOM_JSON


@pytest.mark.parametrize(
    "path",
    [
        lambda s: "/dicomweb/studies/1.2.3/series",
        lambda s: "/dicomweb/studies/1.2.3/instances",
        lambda s: f"/dicomweb/studies/1.2.3/series/{s.ct.SeriesInstanceUID}/instances",
        lambda s: f"/dicomweb/studies/{s.ct.StudyInstanceUID}/series/1.2.3/instances",
        # A series that exists, but in another study.
        lambda s: (
            f"/dicomweb/studies/{s.mr.StudyInstanceUID}/series/{s.ct.SeriesInstanceUID}/instances"
        ),
    ],
    ids=["study-series", "study-instances", "no-study", "no-series", "series-elsewhere"],
)
def test_it_answers_404_for_a_study_or_series_that_is_not_there(api, stored, path):
    response = api.get(path(stored))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "no such" in response.json()["error"]


def test_it_answers_200_and_an_empty_list_when_nothing_matches(api, stored):
    # PS3.18 §8.3.4.4.1 once said 204; CP-2473 returns to 200 with an empty payload, which
    # RFC 9110 allows and every client reads.
    response = api.get("/dicomweb/studies", {"PatientID": "nobody"})
    assert response.status_code == 200
    assert response.json() == []


def test_it_answers_head_like_get_without_a_body(api, stored):
    response = api.head("/dicomweb/studies")
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == DICOM_JSON
    assert response.content == b""


# Matching (PS3.4 C.2.2.2, PS3.18 §8.3.4.1)


def test_it_matches_single_values(api, stored):
    uid = stored.ct.StudyInstanceUID
    check(
        api,
        stored,
        "/dicomweb/studies",
        [
            ({"PatientID": "4MR1"}, ["mr"]),
            ({"PatientID": "4mr1"}, []),  # case-sensitive but for person names
            ({"AccessionNumber": "ACC-2019-1"}, ["mueller_ct"]),
            ({"StudyID": "1CT1"}, ["ct", "mueller_ct"]),
            ({"PatientSex": "F"}, ["mr", "berg"]),
            ({"StudyDate": "20040826"}, ["mr", "nm"]),
            ({"StudyInstanceUID": uid}, ["ct"]),
            ({"PatientName": "CompressedSamples^MR1"}, ["mr"]),
            ({"PatientName": "Müller"}, []),  # the whole value, not a part of it
            ({"StudyDescription": "Whole Body Bone"}, ["nm"]),
            ({"PatientID": "4MR1", "StudyDate": "20040119"}, []),  # every key must match
        ],
    )


def test_it_matches_everything_with_an_empty_value_or_a_lone_star(api, stored):
    everything = ENDPOINTS["studies"][1]
    check(
        api,
        stored,
        "/dicomweb/studies",
        [
            ({"PatientID": ""}, everything),
            ({"PatientID": "*"}, everything),
            ({"PatientName": "**"}, everything),
            ({"StudyDate": ""}, everything),
        ],
    )


def test_it_matches_wildcards(api, stored):
    check(
        api,
        stored,
        "/dicomweb/studies",
        [
            ({"PatientName": "CompressedSamples*"}, ["ct", "mr", "nm"]),
            ({"PatientName": "*Samples^?R1"}, ["mr"]),
            ({"PatientName": "Compressed?amples^CT?"}, ["ct"]),
            ({"AccessionNumber": "ACC-20*"}, ["mueller_ct", "berg"]),
            ({"AccessionNumber": "ACC-2019-?"}, ["mueller_ct"]),
            ({"AccessionNumber": "ACC-2019-??"}, []),
            ({"AccessionNumber": "acc-20*"}, []),  # case-sensitive but for person names
            ({"PatientID": "*MR*"}, ["mr"]),
            ({"StudyDescription": "Whole*"}, ["nm"]),
        ],
    )


def test_it_takes_database_pattern_characters_literally(api, stored):
    check(
        api,
        stored,
        "/dicomweb/studies",
        [
            ({"PatientID": "%"}, []),
            ({"PatientID": "_MR1"}, []),
            ({"PatientID": "%MR%"}, []),
            ({"PatientID": "[4]MR1"}, []),
            ({"PatientID": "[4]*"}, []),
            ({"PatientName": "Compressed%"}, []),
        ],
    )


def test_it_ignores_case_and_accents_in_person_names(api, stored):
    check(
        api,
        stored,
        "/dicomweb/studies",
        [
            ({"PatientName": "muller^jurgen"}, ["mueller_ct"]),
            ({"PatientName": "MÜLLER^JÜRGEN"}, ["mueller_ct"]),
            ({"PatientName": "Müller Jürgen"}, ["mueller_ct"]),  # '^' reads as a space
            ({"PatientName": "compressedsamples^ct1"}, ["ct"]),
            ({"PatientName": "mül*"}, ["mueller_ct"]),
            ({"PatientName": "VAN DEN BERG*"}, ["berg"]),
        ],
    )


def test_it_matches_names_word_by_word_with_fuzzymatching(api, stored):
    def fuzzy(name: str) -> dict:
        return {"PatientName": name, "fuzzymatching": "true"}

    check(
        api,
        stored,
        "/dicomweb/studies",
        [
            (fuzzy("jur mul"), ["mueller_ct"]),  # prefixes, in any order
            (fuzzy("JÜR"), ["mueller_ct"]),
            (fuzzy("anna berg"), ["berg"]),
            (fuzzy("maria van"), ["berg"]),
            (fuzzy("compressed"), ["ct", "mr", "nm"]),
            (fuzzy("aria"), []),  # a word's start, not any part of it
            (fuzzy("jur smith"), []),  # every word must match
            ({"PatientName": "jur mul"}, []),
            ({"PatientName": "jur mul", "fuzzymatching": "false"}, []),
        ],
    )


def test_it_matches_date_ranges(api, stored):
    check(
        api,
        stored,
        "/dicomweb/studies",
        [
            ({"StudyDate": "20040101-20041231"}, ["ct", "mr", "nm"]),
            ({"StudyDate": "20040120-20040826"}, ["mr", "nm"]),  # bounds included
            ({"StudyDate": "20040826-20040826"}, ["mr", "nm"]),
            ({"StudyDate": "20190101-"}, ["mueller_ct", "berg"]),
            ({"StudyDate": "-20040826"}, ["ct", "mr", "nm"]),
            ({"StudyDate": "20200102-"}, []),
            ({"StudyDate": "20200101-20190101"}, []),
        ],
    )


def test_it_matches_time_ranges(api, stored):
    check(
        api,
        stored,
        "/dicomweb/studies",
        [
            ({"StudyTime": "1000-1100"}, ["mueller_ct"]),
            ({"StudyTime": "-0800"}, ["ct"]),
            ({"StudyTime": "1850-"}, ["mr", "nm", "berg"]),
            ({"StudyTime": "185059"}, ["mr", "nm"]),
            ({"StudyTime": "2359"}, ["berg"]),  # to its precision: 23:59:00 to 23:59:59.999999
            ({"StudyTime": "23"}, ["berg"]),
            ({"StudyTime": "101500.000000"}, ["mueller_ct"]),
        ],
    )


def test_it_matches_lists_of_uids(api, stored):
    ct, mr = stored.ct.StudyInstanceUID, stored.mr.StudyInstanceUID
    check(
        api,
        stored,
        "/dicomweb/studies",
        [
            ({"StudyInstanceUID": f"{ct},{mr}"}, ["ct", "mr"]),  # PS3.18 §8.3.4.1
            ({"StudyInstanceUID": f"{ct}\\{mr}"}, ["ct", "mr"]),  # PS3.4 C.2.2.2.2
            ({"StudyInstanceUID": [ct, mr]}, ["ct", "mr"]),  # the key given twice
            ({"StudyInstanceUID": f"{ct},1.2.3"}, ["ct"]),
            ({"StudyInstanceUID": "1.2.3,1.2.4"}, []),
        ],
    )


def test_it_matches_modalities_in_study(api, stored):
    check(
        api,
        stored,
        "/dicomweb/studies",
        [
            ({"ModalitiesInStudy": "PT"}, ["mueller_ct", "berg"]),  # any series matches
            ({"ModalitiesInStudy": "CT"}, ["ct", "mueller_ct"]),
            ({"ModalitiesInStudy": "MR,NM"}, ["mr", "nm"]),
            ({"ModalitiesInStudy": "MR\\NM"}, ["mr", "nm"]),
            ({"ModalitiesInStudy": "US"}, []),
        ],
    )


def test_it_takes_tags_as_keys(api, stored):
    check(
        api,
        stored,
        "/dicomweb/studies",
        [
            ({"00100020": "4MR1"}, ["mr"]),
            ({"00100010": "muller*"}, ["mueller_ct"]),
            ({"00080061": "PT"}, ["mueller_ct", "berg"]),
            ({"00080020": "20190101-"}, ["mueller_ct", "berg"]),
            ({"0020000D": stored.ct.StudyInstanceUID}, ["ct"]),
            ({"0020000d": stored.ct.StudyInstanceUID}, ["ct"]),
        ],
    )


def test_it_matches_series(api, stored):
    mueller = stored.mueller_ct.SeriesInstanceUID
    check(
        api,
        stored,
        "/dicomweb/series",
        [
            ({"Modality": "PT"}, ["mueller_pt", "berg"]),
            ({"00080060": "CT"}, ["ct", "mueller_ct"]),
            ({"SeriesNumber": "2"}, ["mueller_pt"]),
            (
                {"SeriesInstanceUID": f"{mueller},{stored.mr.SeriesInstanceUID}"},
                ["mueller_ct", "mr"],
            ),
            # All series (relational): study and patient keys match too (PS3.18 §10.6.1.2).
            ({"PatientID": "LBX-MUELLER"}, ["mueller_ct", "mueller_pt"]),
            ({"StudyDate": "20190315"}, ["mueller_ct", "mueller_pt"]),
            ({"PatientName": "mul*", "Modality": "PT"}, ["mueller_pt"]),
        ],
    )
    path = f"/dicomweb/studies/{stored.mueller_ct.StudyInstanceUID}/series"
    check(api, stored, path, [({"Modality": "PT"}, ["mueller_pt"]), ({"Modality": "MR"}, [])])


def test_it_matches_instances(api, stored):
    check(
        api,
        stored,
        "/dicomweb/instances",
        [
            ({"SOPClassUID": MR_STORAGE}, ["mr", "berg"]),
            ({"SOPInstanceUID": stored.nm.SOPInstanceUID}, ["nm"]),
            ({"InstanceNumber": "3"}, ["nm"]),
            ({"Modality": "CT"}, ["ct", "mueller_ct"]),
            ({"PatientName": "mül*"}, ["mueller_ct", "mueller_pt"]),
            # Not in the index: matched against each instance's stored header.
            ({"KVP": "120"}, ["ct", "mueller_ct", "mueller_pt"]),
            ({"00180060": "120"}, ["ct", "mueller_ct", "mueller_pt"]),
            ({"KVP": "140"}, []),
        ],
    )
    study = stored.mueller_ct.StudyInstanceUID
    check(
        api,
        stored,
        f"/dicomweb/studies/{study}/instances",
        [({"Modality": "PT"}, ["mueller_pt"]), ({"SOPClassUID": MR_STORAGE}, [])],
    )
    path = f"/dicomweb/studies/{study}/series/{stored.mueller_pt.SeriesInstanceUID}/instances"
    check(
        api,
        stored,
        path,
        [
            ({"SOPInstanceUID": stored.mueller_pt.SOPInstanceUID}, ["mueller_pt"]),
            ({"SOPInstanceUID": stored.mueller_ct.SOPInstanceUID}, []),
        ],
    )


def test_it_refuses_keys_of_a_level_below_in_a_study_search(api, stored):
    response = api.get("/dicomweb/studies", {"Modality": "CT"})
    assert response.status_code == 400
    assert "Modality" in response.json()["error"]


# Returned attributes (PS3.18 §8.3.4.3, §10.6.3.3)

STUDY_ATTRIBUTES = {  # Table 10.6.3-3
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "InstanceAvailability",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "RetrieveURL",
}
SERIES_ATTRIBUTES = {  # Table 10.6.3-4
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
    "RetrieveURL",
}
INSTANCE_ATTRIBUTES = {  # Table 10.6.3-5
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceAvailability",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
    "RetrieveURL",
}


@pytest.mark.parametrize(
    ("endpoint", "attributes"),
    [
        ("studies", STUDY_ATTRIBUTES),
        ("series", STUDY_ATTRIBUTES | SERIES_ATTRIBUTES),  # all series: the study's too
        ("study-series", SERIES_ATTRIBUTES),
        ("instances", STUDY_ATTRIBUTES | SERIES_ATTRIBUTES | INSTANCE_ATTRIBUTES),
        ("study-instances", SERIES_ATTRIBUTES | INSTANCE_ATTRIBUTES),
        ("series-instances", INSTANCE_ATTRIBUTES),
    ],
)
def test_it_returns_the_default_attributes_of_each_level(api, stored, endpoint, attributes):
    for ds in search(api, ENDPOINTS[endpoint][0](stored)):
        assert attributes - set(ds.dir()) == set()


def test_it_returns_the_values_the_files_hold(api, stored):
    (study,) = search(api, "/dicomweb/studies", {"PatientID": "LBX-MUELLER"})
    assert (study.StudyDate, study.StudyTime) == ("20190315", "101500")
    assert study.AccessionNumber == "ACC-2019-1"
    assert list(study.ModalitiesInStudy) == ["CT", "PT"]
    assert (study.NumberOfStudyRelatedSeries, study.NumberOfStudyRelatedInstances) == (2, 2)
    assert study.InstanceAvailability == "ONLINE"
    (instance,) = search(api, "/dicomweb/instances", {"SOPInstanceUID": stored.nm.SOPInstanceUID})
    assert (instance.Rows, instance.Columns) == (stored.nm.Rows, stored.nm.Columns)
    assert instance.SOPClassUID == stored.nm.SOPClassUID
    assert instance.InstanceNumber == 3


def test_it_leaves_out_what_was_not_asked_for(api, stored):
    (study,) = search(api, "/dicomweb/studies", {"PatientID": "4MR1"})
    assert "SOPClassesInStudy" not in study
    (instance,) = search(api, "/dicomweb/instances", {"SOPInstanceUID": stored.ct.SOPInstanceUID})
    assert "KVP" not in instance


@pytest.mark.parametrize(
    "includefield",
    [
        "SOPClassesInStudy",
        "00080062",
        "IssuerOfPatientID,SOPClassesInStudy",
        "IssuerOfPatientID, 00080062",
        ["IssuerOfPatientID", "SOPClassesInStudy"],  # the parameter given twice
    ],
)
def test_it_returns_included_fields_by_keyword_or_tag(api, stored, includefield):
    params = {"PatientID": "1CT1", "includefield": includefield}
    (study,) = search(api, "/dicomweb/studies", params)
    assert study.SOPClassesInStudy == stored.ct.SOPClassUID


@pytest.mark.parametrize("includefield", ["KVP", "00180060", "SliceThickness,KVP"])
def test_it_returns_included_fields_of_instances_from_their_headers(api, stored, includefield):
    params = {"SOPInstanceUID": stored.ct.SOPInstanceUID, "includefield": includefield}
    (instance,) = search(api, "/dicomweb/instances", params)
    assert instance.KVP == stored.ct.KVP


def test_it_returns_all_attributes_it_holds_with_includefield_all(api, stored):
    (study,) = search(api, "/dicomweb/studies", {"PatientID": "1CT1", "includefield": "all"})
    assert {"SOPClassesInStudy", "IssuerOfPatientID", "StudyDescription"} <= set(study.dir())
    params = {"SOPInstanceUID": stored.ct.SOPInstanceUID, "includefield": "all"}
    (instance,) = search(api, "/dicomweb/instances", params)
    assert instance.ContentDate == stored.ct.ContentDate
    assert instance.ContentTime == stored.ct.ContentTime


def test_it_leaves_out_included_instance_attributes_in_a_series_search(api, stored):
    path = f"/dicomweb/studies/{stored.ct.StudyInstanceUID}/series"
    (series,) = search(api, path, {"includefield": "Rows,SOPInstanceUID"})
    assert "Rows" not in series
    assert "SOPInstanceUID" not in series


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_gives_each_result_a_retrieve_url_that_works(api, stored, endpoint):
    for ds in search(api, ENDPOINTS[endpoint][0](stored)):
        expected = f"http://testserver/dicomweb/studies/{ds.StudyInstanceUID}"
        if "series" in endpoint or "instances" in endpoint:
            expected += f"/series/{ds.SeriesInstanceUID}"
        if "instances" in endpoint:
            expected += f"/instances/{ds.SOPInstanceUID}"
        assert ds.RetrieveURL == expected
        assert api.get(f"{ds.RetrieveURL}/metadata").status_code == 200


# Paging (PS3.18 §8.3.4.4)


def page(client: Client, path: str, **params) -> tuple[list[str], str | None]:
    response = client.get(path, params)
    assert response.status_code == 200, response.content
    results = [item["0020000D"]["Value"][0] for item in json.loads(response.content)]
    return results, response.headers.get("Warning")


def test_it_pages_with_limit_and_offset(api, stored):
    everything, warning = page(api, "/dicomweb/studies")
    assert len(everything) == 5
    assert warning is None
    pages = [page(api, "/dicomweb/studies", limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [uid for results, _ in pages for uid in results] == everything
    assert [len(results) for results, _ in pages] == [2, 2, 1]
    assert [warning is not None for _, warning in pages] == [True, True, False]
    assert pages[0][1].startswith("299 ")


@pytest.mark.parametrize(
    ("params", "count", "warned"),
    [
        ({"limit": "5"}, 5, False),
        ({"limit": "4"}, 4, True),
        ({"limit": "1000"}, 5, False),
        ({"offset": "4"}, 1, False),
        ({"offset": "5"}, 0, False),
        ({"offset": "999999"}, 0, False),
        ({"limit": "1", "offset": "3"}, 1, True),
    ],
)
def test_it_warns_only_when_more_results_exist(api, stored, params, count, warned):
    results, warning = page(api, "/dicomweb/studies", **params)
    assert len(results) == count
    assert (warning is not None) == warned


def test_it_pages_matches_made_against_stored_headers(api, stored):
    """KVP is matched in Python after the database: the offset must be applied there."""
    path = "/dicomweb/instances"
    everything = [ds.SOPInstanceUID for ds in search(api, path, {"KVP": "120"})]
    assert len(everything) == 3
    pages = [api.get(path, {"KVP": "120", "limit": 1, "offset": n}) for n in range(3)]
    assert [json.loads(r.content)[0]["00080018"]["Value"][0] for r in pages] == everything
    assert ["Warning" in r.headers for r in pages] == [True, True, False]


@pytest.mark.parametrize(("default", "warned"), [(2, True), (5, False), (6, False)])
def test_it_applies_the_default_limit(api, stored, settings, default, warned):
    settings.LIGHTBOX_QIDO_DEFAULT_LIMIT = default
    results, warning = page(api, "/dicomweb/studies")
    assert len(results) == min(default, 5)
    assert (warning is not None) == warned


@pytest.mark.parametrize(("maximum", "warned"), [(3, True), (5, False)])
def test_it_serves_a_larger_limit_as_the_maximum(api, stored, settings, maximum, warned):
    settings.LIGHTBOX_QIDO_DEFAULT_LIMIT = 1
    settings.LIGHTBOX_QIDO_MAX_LIMIT = maximum
    results, warning = page(api, "/dicomweb/studies", limit=100)
    assert len(results) == maximum
    assert (warning is not None) == warned
