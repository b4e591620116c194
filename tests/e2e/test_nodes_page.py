"""The DICOM nodes page in a real browser: test a node, query it, retrieve a study from it.
The node is Lightbox's own receiver, registered as a remote node, so the whole SCU and SCP
path runs: jobs in the worker, C-ECHO, C-FIND and C-MOVE over the network."""

import pytest

from ..conftest import pydicom_file
from .test_worklist_browser import CHROMIUM, playwright, sign_in, wait_js
from .test_worklist_dicom import site  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def test_it_tests_queries_and_retrieves_from_a_node(site, tmp_path):  # noqa: F811
    port = site.env["LIGHTBOX_DICOM_PORT"]
    site.check("dicomnode", "add", "LIGHTBOX", "127.0.0.1", port, "--name", "itself")
    site.check("import", str(pydicom_file("CT_small.dcm")))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
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
        page.locator("#matches tbody tr button").first.click()
        retrieve = page.locator("#jobs tbody tr", has_text="retrieve")
        retrieve.filter(has_text="succeeded").wait_for(timeout=20000)
        browser.close()
    assert errors == []
