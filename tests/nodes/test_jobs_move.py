"""A retrieve by C-MOVE: dcmqrscp sends the study to the real Lightbox receiver process
(`python -m worker.dimse`, with a Celery worker indexing), which it knows from its config."""

import pydicom
import pytest

from backend.nodes import jobs
from backend.nodes.models import RemoteNode

from ..dimse.conftest import embedded_site  # noqa: F401 - a fixture
from .test_jobs import REMOTE_AE, Qrscp, needs_dcmqrscp, new_study, run_jobs

pytestmark = [pytest.mark.django_db(transaction=True), needs_dcmqrscp]


def test_it_retrieves_a_study_by_c_move(embedded_site, tmp_path, tasks):  # noqa: F811
    embedded_site.start_receiver()
    embedded_site.start_worker()
    qrscp = Qrscp(tmp_path, lightbox_port=embedded_site.port)
    try:
        (tmp_path / "remote").mkdir()
        paths = new_study(tmp_path / "remote", count=3)
        qrscp.store(*paths)
        node = RemoteNode.objects.create(ae_title=REMOTE_AE, host="127.0.0.1", port=qrscp.port)
        job = jobs.start_retrieve(node, pydicom.dcmread(paths[0]).StudyInstanceUID)

        assert run_jobs(tasks) == ["succeeded"]
        job.refresh_from_db()
        assert (job.completed, job.failed, job.remaining) == (3, 0, 0)
        rows = embedded_site.wait_rows("select sop_instance_uid from archive_instance", 3)
        assert {uid for (uid,) in rows} == {pydicom.dcmread(p).SOPInstanceUID for p in paths}
    finally:
        qrscp.stop()


def test_it_retrieves_one_series_by_c_move(embedded_site, tmp_path, tasks):  # noqa: F811
    embedded_site.start_receiver()
    embedded_site.start_worker()
    qrscp = Qrscp(tmp_path, lightbox_port=embedded_site.port)
    try:
        (tmp_path / "remote").mkdir()
        wanted = new_study(tmp_path / "remote", count=2)
        study_instance_uid = pydicom.dcmread(wanted[0]).StudyInstanceUID
        other = new_study(tmp_path / "remote", count=1)
        # The other series belongs to the same study.
        ds = pydicom.dcmread(other[0])
        ds.StudyInstanceUID = study_instance_uid
        ds.save_as(other[0], enforce_file_format=True)
        qrscp.store(*wanted, *other)
        node = RemoteNode.objects.create(ae_title=REMOTE_AE, host="127.0.0.1", port=qrscp.port)
        series_instance_uid = pydicom.dcmread(wanted[0]).SeriesInstanceUID
        job = jobs.start_retrieve(node, study_instance_uid, series_instance_uid, method="move")

        assert run_jobs(tasks) == ["succeeded"]
        job.refresh_from_db()
        assert (job.completed, job.failed, job.remaining) == (2, 0, 0)
        rows = embedded_site.wait_rows("select sop_instance_uid from archive_instance", 2)
        assert {uid for (uid,) in rows} == {pydicom.dcmread(p).SOPInstanceUID for p in wanted}
    finally:
        qrscp.stop()
