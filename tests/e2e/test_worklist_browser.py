"""The worklist in a real browser (Debian's headless Chromium driven by Playwright) against
an embedded installation: sign in, see the studies, see a new study arrive live."""

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from ..conftest import pydicom_file
from ..integration.helpers import wait_until
from ..integration.test_embedded import PASSWORD, embedded, show_logs  # noqa: F401 (fixtures)

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed"),
]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def launch_chromium(p):
    """Debian's headless Chromium, quiet (no background requests, no first-run work)."""
    return p.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )


@pytest.fixture
def page(embedded):  # noqa: F811
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert errors == [], f"JavaScript errors: {errors}"


def wait_js(page, expression: str, timeout: float = 30) -> None:
    """Poll `expression` until true. (page.wait_for_function needs eval, which the
    Content-Security-Policy of our pages forbids; page.evaluate goes through DevTools.)"""
    wait_until(lambda: page.evaluate(expression), timeout, lambda: f"never true: {expression}")


def sign_in(page, url: str) -> None:
    page.goto(f"{url}/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    wait_js(page, "document.querySelector('#live-status')?.textContent === 'live'")


def hostile_study(tmp_path: Path) -> Path:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.PatientName = "<img src=x onerror=alert(1)>^Bobby"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (generate_uid() for _ in "abc")
    path = tmp_path / "hostile.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_it_shows_a_study_that_arrives_while_the_worklist_is_open(embedded, page, tmp_path):  # noqa: F811
    sign_in(page, embedded.url)
    before = page.locator("#studies tbody tr").count()

    embedded.check("import", "--no-wait", str(hostile_study(tmp_path)))

    wait_js(page, f"document.querySelectorAll('#studies tbody tr').length > {before}", 15)
    first_cell = page.locator("#studies tbody tr").first.locator("td").first
    # DICOM strings are data: shown as text, never parsed as markup.
    assert first_cell.inner_text() == "<img src=x onerror=alert(1)> Bobby"
    assert page.locator("#studies img").count() == 0


def test_it_sends_a_visitor_without_a_session_to_the_login_form(embedded, page):  # noqa: F811
    page.goto(f"{embedded.url}/")
    assert page.url.startswith(f"{embedded.url}/login/")
    assert page.locator("input[name=username]").count() == 1
    assert page.locator("input[name=password]").count() == 1
