"""The worklist in a real browser (Debian's headless Chromium driven by Playwright) against
an embedded installation: sign in, search, sort and page, move with the keyboard, see a new
study arrive live and stay new until opened, upload by file picker and by drop."""

import base64
import datetime
import io
import zipfile
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


def study_file(folder: Path, name: str = "", **attributes) -> tuple[Path, str]:
    """A copy of pydicom's CT_small as a new study; returns its path and StudyInstanceUID."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (generate_uid() for _ in "abc")
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{ds.SOPInstanceUID}.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path, ds.StudyInstanceUID


def row_of(uid: str) -> str:
    return f"#studies tbody tr[data-uid='{uid}']"


def status_text(page) -> str:
    return page.inner_text("#search-status")


def wait_status(page, text: str, timeout: float = 15) -> None:
    wait_until(lambda: status_text(page) == text, timeout, lambda: f"status: {status_text(page)!r}")


def test_it_shows_a_study_that_arrives_while_the_worklist_is_open(embedded, page, tmp_path):  # noqa: F811
    sign_in(page, embedded.url)
    path, uid = study_file(tmp_path, PatientName="<script>alert(1)</script>^Bobby")

    embedded.check("import", "--no-wait", str(path))

    wait_js(page, f'document.querySelector("{row_of(uid)}") !== null', 15)
    row = page.locator(row_of(uid))
    # DICOM strings are data: shown as text, never parsed as markup.
    assert row.locator("td").first.inner_text() == "<script>alert(1)</script>, Bobby"
    assert page.locator("#studies script").count() == 0
    assert "new" in row.get_attribute("class")  # arrived since this user last opened it


def test_search_sort_and_page_through_the_studies(embedded, page, tmp_path):  # noqa: F811
    today = datetime.date.today().strftime("%Y%m%d")
    for n in range(55):
        study_file(
            tmp_path / "many",
            PatientName=f"Pager^Test{n:02d}",
            PatientID=f"PG-{n:02d}",
            StudyDate="20150101",
            AccessionNumber=f"PGACC{n:02d}",
        )
    _, accented = study_file(
        tmp_path / "many",
        PatientName="Ångström^Émile",
        PatientID="ACC-E",
        StudyDate=today,
        Modality="MR",
        StudyDescription="Knee left",
    )
    embedded.check("import", str(tmp_path / "many"))
    sign_in(page, embedded.url)
    assert page.evaluate("document.activeElement.name") == "name"  # focused on load

    page.keyboard.type("pager")
    wait_status(page, "1–50 of 55")
    page.click("#next")
    wait_status(page, "51–55 of 55")
    page.click("#previous")
    wait_status(page, "1–50 of 55")

    def first_ids() -> list[str]:
        return page.locator("#studies tbody tr td:nth-child(2)").all_inner_texts()[:2]

    page.click("th[data-sort=patient_id] button")
    wait_until(lambda: first_ids() == ["PG-00", "PG-01"], 10, lambda: str(first_ids()))
    assert page.get_attribute("th[data-sort=patient_id]", "aria-sort") == "ascending"
    page.click("th[data-sort=patient_id] button")
    wait_until(lambda: first_ids() == ["PG-54", "PG-53"], 10, lambda: str(first_ids()))

    page.fill("input[name=name]", "emile ANG")  # any order, case and accents ignored
    wait_status(page, "1–1 of 1")
    assert page.locator(row_of(accented)).count() == 1
    page.click("button[type=reset]")
    wait_until(lambda: page.input_value("input[name=name]") == "", 5, lambda: "never true")

    page.select_option("select[name=when]", "today")
    wait_status(page, "1–1 of 1")  # only the study dated today
    assert page.locator(row_of(accented)).count() == 1
    assert page.locator("#studies tbody tr", has_text="Pager").count() == 0
    page.select_option("select[name=modality]", "MR")
    page.fill("input[name=description]", "knee")
    wait_status(page, "1–1 of 1")
    page.select_option("select[name=modality]", "CT")
    wait_status(page, "no studies")
    assert page.inner_text("#empty") == "No study matches this search."

    page.select_option("select[name=modality]", "")
    page.fill("input[name=description]", "")
    page.select_option("select[name=when]", "custom")
    page.fill("input[name=date_from]", "2015-01-01")
    page.fill("input[name=date_to]", "2015-01-01")
    page.fill("input[name=accession]", "pgacc1")  # as typed or in capitals
    wait_status(page, "1–10 of 10")
    # The search is kept in the address: a reload shows the same.
    page.reload()
    wait_status(page, "1–10 of 10")
    assert page.input_value("input[name=date_from]") == "2015-01-01"


def test_keyboard_moves_through_rows_and_enter_opens_the_study_which_stops_being_new(
    embedded,  # noqa: F811
    page,
    tmp_path,
):
    path, uid = study_file(tmp_path, PatientName="Keys^Kim", PatientID="KEYS-1")
    _, other = study_file(tmp_path, PatientName="Keys^Lou", PatientID="KEYS-2")
    embedded.check("import", str(tmp_path))
    sign_in(page, embedded.url)
    page.keyboard.type("keys")
    wait_status(page, "1–2 of 2")
    assert "new" in page.get_attribute(row_of(uid), "class")

    page.keyboard.press("ArrowDown")
    first = page.evaluate("document.activeElement.dataset.uid")
    page.keyboard.press("ArrowDown")
    second = page.evaluate("document.activeElement.dataset.uid")
    assert {first, second} == {uid, other}
    assert page.get_attribute(row_of(second), "aria-selected") == "true"
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")  # from the first row back to the search box
    assert page.evaluate("document.activeElement.name") == "name"
    page.keyboard.press("ArrowDown")
    if first != uid:
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/viewer/{uid}")

    page.go_back()
    wait_status(page, "1–2 of 2")
    opened = page.locator(row_of(uid))
    wait_until(lambda: "new" not in (opened.get_attribute("class") or ""), 10, lambda: "new")
    assert "new" in page.get_attribute(row_of(other), "class")


def test_upload_files_by_picker_and_a_zip_by_drop_with_a_result_per_file(
    embedded,  # noqa: F811
    page,
    tmp_path,
):
    sign_in(page, embedded.url)
    picked, picked_uid = study_file(tmp_path / "pick", PatientName="Upload^Picked")
    notes = tmp_path / "pick" / "notes.txt"
    notes.write_text("not an image")
    page.set_input_files("#file-input", [str(picked), str(notes)])
    wait_until(
        lambda: page.inner_text("#upload-summary").endswith("— done"),
        30,
        lambda: page.inner_text("#upload-summary"),
    )
    lines = page.locator("#upload-files li").all_inner_texts()
    assert any(line.startswith(picked.name) and "stored" in line for line in lines), lines
    assert any(line.startswith("notes.txt") and "not a DICOM file" in line for line in lines)
    assert page.evaluate("document.querySelector('#upload-progress').value") == page.evaluate(
        "document.querySelector('#upload-progress').max"
    )
    page.fill("input[name=name]", "upload picked")
    wait_until(lambda: page.locator(row_of(picked_uid)).count() == 1, 15, lambda: "never true")

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(3):
            path, zipped_uid = study_file(tmp_path / "zip", f"{n}.dcm", PatientName="Upload^Zipped")
            archive.write(path, f"folder/{n}.dcm")
    page.evaluate(
        """([data, name]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "application/zip" }));
            for (const type of ["dragenter", "dragover", "drop"]) {
              const options = { dataTransfer: transfer, bubbles: true, cancelable: true };
              document.body.dispatchEvent(new DragEvent(type, options));
            }
        }""",
        [base64.b64encode(buffer.getvalue()).decode(), "scans.zip"],
    )
    wait_until(
        lambda: page.inner_text("#upload-summary").startswith("3 stored"),
        30,
        lambda: page.inner_text("#upload-summary"),
    )
    lines = page.locator("#upload-files li").all_inner_texts()
    assert sorted(line.split("\n")[0] for line in lines) == [
        f"scans.zip/folder/{n}.dcm" for n in range(3)
    ]
    assert page.is_hidden("#drop-zone")
    page.fill("input[name=name]", "upload zipped")
    wait_status(page, "1–3 of 3")


def test_it_sends_a_visitor_without_a_session_to_the_login_form(embedded, page):  # noqa: F811
    page.goto(f"{embedded.url}/")
    assert page.url.startswith(f"{embedded.url}/login/")
    assert page.locator("input[name=username]").count() == 1
    assert page.locator("input[name=password]").count() == 1
