"""The DICOM nodes page in a real browser: test a node, query it, retrieve a study from it,
list a study's series on it and retrieve one series by C-GET. Real web, worker and receiver
processes, so the whole SCU and SCP path runs: jobs in the worker, C-ECHO, C-FIND, C-MOVE
and C-GET over the network."""

import sqlite3

import pydicom
import pytest

from ..conftest import pydicom_file
from ..integration.helpers import wait_until
from ..nodes.test_jobs import Qrscp, needs_dcmqrscp
from ..nodes.test_jobs_series import study_of_two_series
from .test_worklist_browser import launch_chromium, playwright, sign_in, wait_js
from .test_worklist_dicom import site  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
HOSTILE_NAME = "<img src=x onerror=alert(1)>^Bobby"


def test_it_tests_queries_and_retrieves_from_a_node(site):  # noqa: F811
    # The remote node is Lightbox's own receiver, registered as a node.
    port = site.env["LIGHTBOX_DICOM_PORT"]
    site.check("dicomnode", "add", "LIGHTBOX", "127.0.0.1", port, "--name", "itself")
    site.check("import", str(pydicom_file("CT_small.dcm")))
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        sign_in(page, site.url)
        page.goto(f"{site.url}/nodes/")
        page.wait_for_selector("#node option", state="attached")

        page.click("#echo")
        wait_js(page, "document.querySelector('#echo-result').textContent === 'connected'", 20)
        page.fill("input[name=PatientID]", "1CT1")
        page.click("#query button[type=submit]")
        wait_js(page, "document.querySelector('#query-state').textContent === '1 studies'", 20)
        assert "CompressedSamples CT1" in page.inner_text("#matches tbody")
        page.locator("#matches tbody tr button", has_text="Retrieve study").first.click()
        retrieve = page.locator("#jobs tbody tr", has_text="C-MOVE study")
        retrieve.filter(has_text="succeeded").wait_for(timeout=20000)
        browser.close()
    assert errors == []


def remote_study(tmp_path, qrscp: Qrscp) -> dict[str, list[str]]:
    """A study of two series held by dcmqrscp only, its patient's name written in markup."""
    series = study_of_two_series(tmp_path)
    paths = sorted((tmp_path / "remote").iterdir())
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.PatientName = HOSTILE_NAME
        ds.save_as(path, enforce_file_format=True)
    qrscp.store(*paths)
    return series


def stored_instances(site) -> set[tuple[str, str]]:  # noqa: F811
    path = site.data_dir / "lightbox.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute(
            "select s.series_instance_uid, i.sop_instance_uid from archive_instance i"
            " join archive_series s on s.id = i.series_id"
        ).fetchall()
    return set(rows)


@needs_dcmqrscp
def test_it_lists_the_series_and_retrieves_one_by_c_get(site, tmp_path):  # noqa: F811
    qrscp = Qrscp(tmp_path, lightbox_port=int(site.env["LIGHTBOX_DICOM_PORT"]))
    try:
        series = remote_study(tmp_path, qrscp)
        site.check("dicomnode", "add", "ARCHIVE", "127.0.0.1", str(qrscp.port))
        first = next(iter(series))  # series number 1, of two instances
        with playwright.sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            sign_in(page, site.url)
            page.goto(f"{site.url}/nodes/")
            page.wait_for_selector("#node option[value=ARCHIVE]", state="attached")
            page.select_option("#node", "ARCHIVE")
            page.select_option("#method", "get")

            page.fill("input[name=PatientID]", "1CT1")
            page.click("#query button[type=submit]")
            wait_js(page, "document.querySelector('#query-state').textContent === '1 studies'", 20)
            page.locator("#matches tbody tr").get_by_role(
                "button", name="Series", exact=True
            ).click()
            wait_js(page, "document.querySelector('#series-state').textContent === '2 series'", 20)
            # DICOM strings are data: shown as text, never parsed as markup.
            shown = HOSTILE_NAME.replace("^", " ")
            assert page.inner_text("#matches tbody td >> nth=0") == shown
            assert page.inner_text("#series-study").startswith(shown)
            assert page.locator("main img").count() == 0
            rows = page.locator("#series tbody tr")
            assert [rows.nth(i).locator("td").first.inner_text() for i in range(2)] == ["1", "2"]

            rows.first.locator("button", has_text="Retrieve series").click()
            job = page.locator("#jobs tbody tr", has_text=f"C-GET series {first}")
            job.filter(has_text="succeeded").wait_for(timeout=30000)
            assert job.locator("td").nth(5).inner_text() == "2"  # Done
            browser.close()
        assert errors == []
        expected = {(first, uid) for uid in series[first]}
        wait_until(lambda: stored_instances(site) == expected, 30, lambda: "not indexed")
    finally:
        qrscp.stop()
