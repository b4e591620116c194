"""Remote jobs (backend/nodes/jobs.py) run inline against a real remote archive, dcmtk's
dcmqrscp on a port of its own (config and storage in tmp_path, filled with storescu):
C-ECHO, C-FIND, C-GET into Lightbox, C-STORE of a stored study, re-runs that do not
duplicate."""

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
from django.utils import timezone
from pydicom.uid import generate_uid

from backend.accounts.models import AuditEvent
from backend.archive import ingest, queue
from backend.archive.models import Instance
from backend.nodes import jobs
from backend.nodes.models import RemoteJob, RemoteNode

from ..conftest import pydicom_file
from ..integration.helpers import free_port, wait_until

REMOTE_AE = "ARCHIVE"
needs_dcmqrscp = pytest.mark.skipif(
    not shutil.which("dcmqrscp"), reason="dcmtk (dcmqrscp, storescu, findscu) is not installed"
)

CONFIG = """\
NetworkTCPPort = {port}
MaxPDUSize = 16384
MaxAssociations = 16
HostTable BEGIN
lightbox = ({lightbox_ae}, 127.0.0.1, {lightbox_port})
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
{ae} {storage} RW (200, 1024mb) ANY
AETable END
"""


class Qrscp:
    """dcmqrscp serving AE title ARCHIVE; Lightbox (LIGHTBOX) is its only C-MOVE destination."""

    def __init__(self, root: Path, lightbox_port: int):
        self.port = free_port()
        self.storage = root / "qrscp"
        self.storage.mkdir()
        config = root / "dcmqrscp.cfg"
        config.write_text(
            CONFIG.format(
                port=self.port,
                lightbox_ae="LIGHTBOX",
                lightbox_port=lightbox_port,
                ae=REMOTE_AE,
                storage=self.storage,
            )
        )
        self.log = open(root / "dcmqrscp.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["dcmqrscp", "-c", str(config), str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._answers, 10, lambda: "dcmqrscp never answered C-ECHO")

    def _answers(self) -> bool:
        result = subprocess.run(
            ["echoscu", "-aec", REMOTE_AE, "127.0.0.1", str(self.port)],
            capture_output=True,
            timeout=10,
        )
        return result.returncode == 0

    def store(self, *paths: Path) -> None:
        result = subprocess.run(
            ["storescu", "-aec", REMOTE_AE, "127.0.0.1", str(self.port), *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr

    def study_uids(self) -> set[str]:
        """StudyInstanceUIDs the archive holds, asked with dcmtk's findscu."""
        result = subprocess.run(
            [
                "findscu", "-S", "-aec", REMOTE_AE, "-k", "QueryRetrieveLevel=STUDY",
                "-k", "StudyInstanceUID", "127.0.0.1", str(self.port),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )  # fmt: skip
        return set(re.findall(r"\(0020,000d\) UI \[([0-9.]+)", result.stderr + result.stdout))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        self.log.close()


def new_study(tmp_path: Path, count: int = 2, name: str = "CT_small.dcm") -> list[Path]:
    """`count` new instances of one new study and series (pydicom's sample, new UIDs)."""
    study, series = generate_uid(), generate_uid()
    paths = []
    for number in range(1, count + 1):
        ds = pydicom.dcmread(pydicom_file(name))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = number
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def run_jobs(tasks) -> list[str]:
    """Run the queued remote jobs (as the worker would), then the ingest work they caused."""
    states = []
    while remote := [args for name, args in tasks.sent if name == queue.REMOTE_JOB]:
        tasks.sent = [(name, args) for name, args in tasks.sent if name != queue.REMOTE_JOB]
        states += [jobs.run(*args) for args in remote]
    tasks.run()
    return states


pytestmark = [pytest.mark.django_db(transaction=True), needs_dcmqrscp]


@pytest.fixture
def qrscp(tmp_path):
    archive = Qrscp(tmp_path, lightbox_port=free_port())
    yield archive
    archive.stop()


@pytest.fixture
def node(qrscp):
    return RemoteNode.objects.create(ae_title=REMOTE_AE, host="127.0.0.1", port=qrscp.port)


@pytest.fixture
def remote_study(qrscp, tmp_path):
    """A study of two instances held by the remote archive only."""
    (tmp_path / "remote").mkdir()
    paths = new_study(tmp_path / "remote")
    qrscp.store(*paths)
    return pydicom.dcmread(paths[0]).StudyInstanceUID, paths


def stored_in_lightbox(tmp_path, tasks, count=2) -> str:
    (tmp_path / "local").mkdir()
    paths = new_study(tmp_path / "local", count)
    for path in paths:
        ingest.receive_path(path, source="cli")
    tasks.run()
    return pydicom.dcmread(paths[0]).StudyInstanceUID


def test_it_echoes_a_live_node(node, tasks):
    job = jobs.start_echo(node)

    assert run_jobs(tasks) == ["succeeded"]
    job.refresh_from_db()
    assert job.result["status"] == 0 and job.attempts == 1 and job.finished_at
    assert AuditEvent.objects.filter(event_type="dicom.scu.echo", outcome="success").exists()


def test_it_fails_cleanly_for_a_dead_port(tasks):
    node = RemoteNode.objects.create(ae_title="GONE", host="127.0.0.1", port=free_port())
    job = jobs.start_echo(node)

    assert run_jobs(tasks) == ["failed"]
    job.refresh_from_db()
    assert "association with GONE@127.0.0.1" in job.error
    assert AuditEvent.objects.filter(event_type="dicom.scu.echo", outcome="failure").exists()


def test_it_finds_the_studies_the_node_holds(node, remote_study, tasks):
    study_instance_uid, _ = remote_study
    job = jobs.start_find(node, {"StudyInstanceUID": "", "PatientName": ""}, "STUDY")

    assert run_jobs(tasks) == ["succeeded"]
    job.refresh_from_db()
    assert [m["StudyInstanceUID"] for m in job.result["matches"]] == [study_instance_uid]
    assert job.result["truncated"] is False and job.completed == 1


def test_it_retrieves_a_study_by_c_get(node, remote_study, tasks):
    study_instance_uid, paths = remote_study
    job = jobs.start_retrieve(node, study_instance_uid, method="get")

    assert run_jobs(tasks) == ["succeeded"]
    job.refresh_from_db()
    assert (job.completed, job.failed, job.remaining) == (2, 0, 0)
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in paths}
    stored = Instance.objects.filter(series__study__study_instance_uid=study_instance_uid)
    assert set(stored.values_list("sop_instance_uid", flat=True)) == uids


def test_it_retrieves_again_without_duplicating(node, remote_study, tasks):
    study_instance_uid, _ = remote_study
    jobs.start_retrieve(node, study_instance_uid, method="get")
    jobs.start_retrieve(node, study_instance_uid, method="get")

    assert run_jobs(tasks) == ["succeeded", "succeeded"]
    stored = Instance.objects.filter(series__study__study_instance_uid=study_instance_uid)
    assert stored.count() == 2


def test_it_sends_a_stored_study(node, qrscp, tasks, tmp_path):
    study_instance_uid = stored_in_lightbox(tmp_path, tasks)
    job = jobs.start_send(node, study_instance_uid)

    assert run_jobs(tasks) == ["succeeded"]
    job.refresh_from_db()
    assert len(job.result["sent"]) == 2 and job.result["not_sent"] == []
    assert (job.completed, job.failed, job.remaining) == (2, 0, 0)
    assert study_instance_uid in qrscp.study_uids()


def test_it_skips_what_was_sent_when_a_stale_job_runs_again(node, qrscp, tasks, tmp_path):
    study_instance_uid = stored_in_lightbox(tmp_path, tasks, count=3)
    job = jobs.start_send(node, study_instance_uid)
    tasks.sent.clear()
    first = Instance.objects.order_by("instance_number").first()
    # A worker sent one instance, then died: the row still says running, long ago.
    RemoteJob.objects.filter(pk=job.pk).update(
        state="running", attempts=1, result={"sent": [first.sop_instance_uid]}
    )
    RemoteJob.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(hours=1))

    assert jobs.run(job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.attempts == 2 and len(job.result["sent"]) == 3
    assert job.result["sent"][0] == first.sop_instance_uid
    assert len(set(job.result["sent"])) == 3
    # Only the two missing instances went over the network this time.
    assert len(list(qrscp.storage.glob("*.dcm"))) == 2


def test_it_leaves_a_fresh_running_job_to_its_worker(node, tasks):
    job = jobs.start_echo(node)
    tasks.sent.clear()
    RemoteJob.objects.filter(pk=job.pk).update(state="running", attempts=1)

    assert jobs.run(job.pk) == "running"
    job.refresh_from_db()
    assert job.attempts == 1
    # Looked at again once it would be stale, in case its worker died.
    assert [name for name, _ in tasks.sent] == ["lightbox.remote_job"]


def test_it_does_not_run_a_finished_or_cancelled_job(node, tasks):
    job = jobs.start_echo(node)
    assert jobs.cancel(job)

    assert run_jobs(tasks) == ["cancelled"]
    job.refresh_from_db()
    assert job.attempts == 0 and job.state == "cancelled"


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (lambda n: jobs.start_find(n, {"StudyInstanceUID": ""}, "PATIENT"), "level"),
        (lambda n: jobs.start_find(n, {"NotAKeyword": ""}, "STUDY"), "keyword"),
        # Hierarchical queries name the level above with a single UID (PS3.4 C.4.1.2.2.1).
        (lambda n: jobs.start_find(n, {"SeriesInstanceUID": ""}, "SERIES"), "StudyInstanceUID"),
        (
            lambda n: jobs.start_find(
                n, {"StudyInstanceUID": "1.2.3", "SOPInstanceUID": ""}, "IMAGE"
            ),
            "SeriesInstanceUID",
        ),
        (lambda n: jobs.start_retrieve(n, "1.2.*"), "valid UID"),
        (lambda n: jobs.start_retrieve(n, "1.2.3", method="fetch"), "method"),
        (lambda n: jobs.start_send(n, "1.2.3"), "no instances"),
    ],
)
def test_it_refuses_bad_parameters(start, message):
    node = RemoteNode.objects.create(ae_title="PACS", host="127.0.0.1", port=104)
    with pytest.raises(jobs.JobError, match=message):
        start(node)
    assert not RemoteJob.objects.exists()


def test_it_requeues_a_job_whose_message_was_lost(tasks):
    from backend.archive import queue
    from backend.nodes.jobs import requeue_lost
    from backend.nodes.models import RemoteJob, RemoteNode

    node = RemoteNode.objects.create(ae_title="LOST", host="127.0.0.1", port=1)
    job = RemoteJob.objects.create(kind="echo", node=node, parameters={})
    RemoteJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=1))
    RemoteJob.objects.create(kind="echo", node=node, parameters={})  # just queued: left alone

    assert requeue_lost() == 1
    assert tasks.sent == [(queue.REMOTE_JOB, (job.pk,))]
