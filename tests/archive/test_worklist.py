"""The worklist's search API (/api/studies): fields, sorting, paging, "new until opened",
access, and bad input — over real files ingested through the pipeline."""

import datetime

import pytest
from django.utils import timezone

from backend.archive import worklist
from backend.archive.models import Study, StudyOpened

from ..conftest import grant_every_study
from .helpers import receive_file, variant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def archive(tmp_path, tasks):
    """Four studies of two patients, with names, dates and modalities to search."""
    studies = [
        dict(
            PatientName="Buc^Jérôme",
            PatientID="P-100",
            AccessionNumber="ACC1",
            StudyDescription="CT Thorax low dose",
            StudyDate="20240301",
            StudyTime="101500",
            PatientBirthDate="19500102",
            PatientSex="M",
        ),
        dict(
            PatientName="Buc^Jérôme",
            PatientID="P-100",
            AccessionNumber="ACC2",
            StudyDescription="CT Abdomen",
            StudyDate="20240305",
            StudyTime="090000",
            PatientBirthDate="19500102",
            PatientSex="M",
        ),
        dict(
            PatientName="Yamada^Tarou",
            PatientID="Q-7",
            AccessionNumber="xa-9",
            StudyDescription="Brain MRI",
            StudyDate="20230101",
            StudyTime="120000",
            PatientBirthDate="19800505",
            PatientSex="F",
            Modality="MR",
        ),
        dict(
            PatientName="Tarbuck^Anne",
            PatientID="P-1000",
            AccessionNumber="ACC30",
            StudyDescription="Chest",
            StudyDate="",
            PatientSex="F",
        ),
    ]
    for attributes in studies:
        path = variant(
            tmp_path,
            StudyInstanceUID="new-uid",
            SeriesInstanceUID="new-uid",
            SOPInstanceUID="new-uid",
            **attributes,
        )
        assert receive_file(path, tasks).state == "stored"
    return {s.accession_number: s for s in Study.objects.all()}


@pytest.fixture
def reader(client, django_user_model):
    user = grant_every_study(django_user_model.objects.create_user("reader", password="x"))
    client.force_login(user)
    return user


def accessions(client, **params) -> list[str]:
    response = client.get("/api/studies", params)
    assert response.status_code == 200, response.content
    return [s["accession_number"] for s in response.json()["studies"]]


def test_name_words_begin_words_of_the_name_in_any_order_case_and_accents_ignored(
    archive, client, reader
):
    assert sorted(accessions(client, name="buc")) == ["ACC1", "ACC2"]
    assert sorted(accessions(client, name="jerome BU")) == ["ACC1", "ACC2"]
    assert accessions(client, name="tar") == ["xa-9", "ACC30"]  # Tarou, Tarbuck: both begin
    assert accessions(client, name="uck") == []  # inside a word is not a prefix
    assert accessions(client, name="yamada*") == ["xa-9"]  # a typed wildcard is a prefix


def test_ids_and_accession_match_from_the_start_as_typed_or_in_capitals(archive, client, reader):
    assert sorted(accessions(client, patient_id="P-100")) == ["ACC1", "ACC2", "ACC30"]
    assert accessions(client, patient_id="q-7") == ["xa-9"]
    assert accessions(client, accession="acc3") == ["ACC30"]
    assert accessions(client, accession="xa") == ["xa-9"]
    assert accessions(client, accession="CC1") == []


def test_description_modality_and_date_range(archive, client, reader):
    assert accessions(client, description="thor low") == ["ACC1"]
    assert accessions(client, description="brain") == ["xa-9"]
    assert accessions(client, modality="mr") == ["xa-9"]
    assert sorted(accessions(client, modality="CT")) == ["ACC1", "ACC2", "ACC30"]
    assert accessions(client, date_from="2024-03-02") == ["ACC2"]
    assert accessions(client, date_from="2024-03-01", date_to="2024-03-01") == ["ACC1"]
    assert accessions(client, date_to="2023-12-31") == ["xa-9"]
    assert accessions(client, name="buc", date_from="2024-03-02", modality="CT") == ["ACC2"]


def test_rows_carry_what_the_worklist_shows(archive, client, reader):
    (row,) = client.get("/api/studies", {"accession": "ACC1"}).json()["studies"]
    assert row["patient_name"] == "Buc^Jérôme"
    assert row["patient_id"] == "P-100"
    assert row["patient_birth_date"] == "1950-01-02"
    assert row["patient_sex"] == "M"
    assert (row["study_date"], row["study_time"]) == ("2024-03-01", "10:15:00")
    assert row["modalities_in_study"] == "CT"
    assert row["study_description"] == "CT Thorax low dose"
    assert (row["number_of_series"], row["number_of_instances"]) == (1, 1)
    assert row["study_instance_uid"] == archive["ACC1"].study_instance_uid


def test_sorting_every_column_both_ways_a_missing_value_as_the_lowest(archive, client, reader):
    assert accessions(client) == ["ACC2", "ACC1", "xa-9", "ACC30"]  # newest study date first
    assert accessions(client, sort="study_date") == ["ACC30", "xa-9", "ACC1", "ACC2"]
    names = [
        s["patient_name"]
        for s in client.get("/api/studies", {"sort": "patient_name"}).json()["studies"]
    ]
    assert names == ["Buc^Jérôme", "Buc^Jérôme", "Tarbuck^Anne", "Yamada^Tarou"]
    assert accessions(client, sort="-accession")[0] == "xa-9"
    for column in worklist.SORTS:
        for sort in (column, f"-{column}"):
            assert len(accessions(client, sort=sort)) == 4


def test_pages_are_cut_on_the_server_and_never_overlap(archive, client, reader):
    seen = []
    for offset in range(0, 4, 3):
        answer = client.get("/api/studies", {"limit": 3, "offset": offset}).json()
        assert answer["total"] == 4
        seen += [s["accession_number"] for s in answer["studies"]]
    assert sorted(seen) == ["ACC1", "ACC2", "ACC30", "xa-9"]


def test_counting_stops_at_the_limit_and_says_so(archive, client, reader, monkeypatch):
    monkeypatch.setattr(worklist, "COUNT_LIMIT", 2)
    answer = client.get("/api/studies", {"limit": 1}).json()
    assert (answer["total"], answer["total_exact"]) == (2, False)
    answer = client.get("/api/studies", {"limit": 1, "name": "yamada"}).json()
    assert (answer["total"], answer["total_exact"]) == (1, True)
    answer = client.get("/api/studies", {"limit": 1, "offset": 3}).json()
    assert [s["accession_number"] for s in answer["studies"]] == ["ACC30"]  # paging goes on


def test_a_study_is_new_until_the_user_opens_it_and_again_when_it_grows(
    archive, client, reader, tmp_path, tasks
):
    def new() -> dict[str, bool]:
        return {
            s["accession_number"]: s["new"] for s in client.get("/api/studies").json()["studies"]
        }

    assert all(new().values())  # all arrived within LIGHTBOX_WORKLIST_NEW_HOURS
    study = archive["ACC1"]
    worklist.mark_opened(reader, study)  # the viewer's socket does this once it is open
    assert StudyOpened.objects.filter(user=reader, study=study).exists()
    assert new()["ACC1"] is False and new()["ACC2"] is True

    more = variant(
        tmp_path,
        StudyInstanceUID=study.study_instance_uid,
        SeriesInstanceUID="new-uid",
        SOPInstanceUID="new-uid",
        AccessionNumber="ACC1",
    )
    receive_file(more, tasks)
    assert new()["ACC1"] is True  # it grew after it was opened


def test_a_study_nobody_opened_stops_being_new_after_the_configured_hours(
    archive, client, reader, settings
):
    Study.objects.update(updated_at=timezone.now() - datetime.timedelta(hours=30))
    settings.LIGHTBOX_WORKLIST_NEW_HOURS = 24
    assert not any(s["new"] for s in client.get("/api/studies").json()["studies"])


def test_it_shows_only_the_studies_the_user_may_see(archive, client, django_user_model):
    stranger = django_user_model.objects.create_user("stranger", password="x")
    client.force_login(stranger)
    answer = client.get("/api/studies", {"name": "buc"}).json()
    assert (answer["studies"], answer["total"]) == ([], 0)


def test_an_anonymous_visitor_is_sent_to_sign_in(client):
    assert client.get("/api/studies").status_code == 302


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"sort": "patient_name; DROP TABLE"}, "cannot sort"),
        ({"date_from": "2024-13-01"}, "not a date"),
        ({"date_from": "yesterday"}, "not a date"),
        ({"date_from": "2024-03-05", "date_to": "2024-03-01"}, "ends before it begins"),
        ({"limit": "0"}, "limit must be between"),
        ({"limit": "abc"}, "whole number"),
        ({"offset": "-1"}, "offset must be between"),
        ({"offset": "99999999999"}, "offset must be between"),
        ({"name": "x" * 65}, "longer than"),
    ],
)
def test_bad_searches_get_a_clear_400(client, reader, params, words):
    response = client.get("/api/studies", params)
    assert response.status_code == 400
    assert words in response.json()["error"]


HOSTILE = ["<script>alert(1)</script>", "' OR 1=1 --", "%", "_", "\\", "名前", "\x00abc", "😀"]


def test_hostile_text_is_only_text(archive, client, reader):
    for value in HOSTILE:
        for field in ("name", "patient_id", "accession", "description", "modality"):
            response = client.get("/api/studies", {field: value})
            assert response.status_code == 200, (field, value)
            assert response.json()["total"] == 0, (field, value)
    assert client.get("/api/studies", {"name": "^^^"}).json()["total"] == 4  # no words: all
