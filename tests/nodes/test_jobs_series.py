"""A study's series on a remote node, and retrieving just one of them, through the JSON API
as the nodes page drives it: a SERIES-level C-FIND (Study Root, hierarchical: PS3.4
C.4.1.2.2.1) and a SERIES-level C-GET from dcmqrscp. The C-MOVE of one series, which needs
the real receiver, is in test_jobs_move.py."""

import json

import pydicom
import pytest
from pydicom.uid import generate_uid

from backend.archive.models import Instance
from backend.nodes.models import RemoteJob

from ..conftest import pydicom_file
from .test_jobs import needs_dcmqrscp, node, qrscp, run_jobs  # noqa: F401 - fixtures
from .test_jobs_api import admin  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db(transaction=True), needs_dcmqrscp]


def study_of_two_series(tmp_path) -> dict[str, list[str]]:
    """One new study: series 1 of two instances, series 2 of one. Returns each
    SeriesInstanceUID's SOPInstanceUIDs; the files are in tmp_path/remote."""
    (tmp_path / "remote").mkdir()
    study = generate_uid()
    series: dict[str, list[str]] = {}
    for number, count in ((1, 2), (2, 1)):
        series_instance_uid = generate_uid()
        for instance_number in range(1, count + 1):
            ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_instance_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SeriesNumber, ds.InstanceNumber = number, instance_number
            ds.save_as(tmp_path / "remote" / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
            series.setdefault(series_instance_uid, []).append(ds.SOPInstanceUID)
    return series


@pytest.fixture
def remote_series(qrscp, tmp_path):  # noqa: F811
    series = study_of_two_series(tmp_path)
    qrscp.store(*sorted((tmp_path / "remote").iterdir()))
    study = pydicom.dcmread(next((tmp_path / "remote").iterdir())).StudyInstanceUID
    return study, series


def post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def finished_job(client, response, tasks) -> dict:
    assert response.status_code == 202, response.content
    run_jobs(tasks)
    return client.get(f"/api/jobs/{response.json()['id']}").json()


def test_it_lists_the_series_of_a_study_on_the_node(client, admin, node, remote_series, tasks):  # noqa: F811
    study, series = remote_series
    keys = {
        "StudyInstanceUID": study,
        "SeriesInstanceUID": "",
        "SeriesNumber": "",
        "Modality": "",
    }

    job = finished_job(
        client, post(client, "/api/nodes/ARCHIVE/find", {"level": "SERIES", "keys": keys}), tasks
    )

    assert job["state"] == "succeeded", job
    matches = job["result"]["matches"]
    assert {m["SeriesInstanceUID"] for m in matches} == set(series)
    assert {(m["SeriesNumber"], m["Modality"]) for m in matches} == {("1", "CT"), ("2", "CT")}


def test_it_retrieves_one_series_by_c_get(client, admin, node, remote_series, tasks):  # noqa: F811
    study, series = remote_series
    first, second = series
    body = {"method": "get", "study_instance_uid": study, "series_instance_uid": first}

    job = finished_job(client, post(client, "/api/nodes/ARCHIVE/retrieve", body), tasks)

    assert job["state"] == "succeeded", job
    assert job["parameters"] == body
    assert job["progress"] == {"completed": 2, "failed": 0, "remaining": 0}
    stored = Instance.objects.values_list("series__series_instance_uid", "sop_instance_uid")
    assert sorted(stored) == sorted((first, uid) for uid in series[first])
    assert second not in {s for s, _ in stored}


def test_it_refuses_a_series_query_without_a_single_study(client, admin, node):  # noqa: F811
    for keys in ({"SeriesInstanceUID": ""}, {"StudyInstanceUID": "1.2.*"}):
        response = post(client, "/api/nodes/ARCHIVE/find", {"level": "SERIES", "keys": keys})
        assert response.status_code == 400
        assert "StudyInstanceUID must be a valid UID" in response.json()["error"]
    assert not RemoteJob.objects.exists()
