"""A study sent by a modality over DICOM appears on an open worklist without a reload: real
receiver, worker and web processes, dcmtk's storescu, Debian's Chromium."""

import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from ..conftest import pydicom_file
from ..integration.helpers import free_port, wait_until
from ..integration.test_embedded import PASSWORD, WORKER_COMMAND, Embedded, _answers
from .test_worklist_browser import CHROMIUM, playwright, sign_in

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed"),
    pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk's storescu not installed"),
]


@pytest.fixture
def site(tmp_path):
    site = Embedded(tmp_path)
    site.env["LIGHTBOX_DICOM_PORT"] = str(free_port())
    site.check("migrate", "--noinput")
    site.check(
        "createsuperuser",
        "--noinput",
        "--username=admin",
        "--email=a@example.org",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    processes = [
        site.start("worker", [*WORKER_COMMAND, "--loglevel=INFO"]),
        site.start(
            "web",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "backend.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(site.port),
                "--lifespan",
                "off",
            ],
        ),
        site.start("dimse", [sys.executable, "-m", "worker.dimse"]),
    ]
    try:
        processes[0].wait_for_output(" ready.")
        wait_until(lambda: _answers(site.url), 30, lambda: "web server did not answer")
        yield site
    finally:
        for process in processes:
            process.stop()


def test_it_shows_a_study_stored_by_a_modality(site, tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.PatientName = "Modality^Sent"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (generate_uid() for _ in "abc")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        sign_in(page, site.url)

        sent = subprocess.run(
            [
                "storescu",
                "-aet",
                "CT01",
                "-aec",
                "LIGHTBOX",
                "127.0.0.1",
                site.env["LIGHTBOX_DICOM_PORT"],
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sent.returncode == 0, sent.stderr

        row = page.locator("#studies tbody tr", has_text="Modality, Sent")
        row.wait_for(timeout=15000)
        assert row.count() == 1
        browser.close()
