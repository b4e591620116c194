"""The viewer in headless Chromium against a live embedded installation: the 275-slice CT
(../shared/testdata/ct-lidc-0314, whose file names are not in slice order) shown with the
right pixel values, scrolled in anatomical order, windowed by dragging, measured in mm;
hostile names shown as text; a study the user may not see refused in plain words."""

import sys

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from ..conftest import TESTDATA, needs_testdata, pydicom_file
from ..integration.helpers import WORKER_COMMAND, wait_until
from ..integration.test_embedded import PASSWORD, Embedded, _answers
from .test_worklist_browser import CHROMIUM, playwright

LIDC = TESTDATA / "ct-lidc-0314"
pytestmark = [pytest.mark.integration, needs_testdata(LIDC)]
STRANGER_PASSWORD = "a stranger's long password"
PIXEL_AT = """([x, y]) => {
  const source = document.querySelector('.viewport canvas');
  const copy = document.createElement('canvas');
  copy.width = source.width; copy.height = source.height;
  const context = copy.getContext('2d');
  context.drawImage(source, 0, 0);
  const at = (v) => Math.round(v * devicePixelRatio);
  return Array.from(context.getImageData(at(x), at(y), 1, 1).data);
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = Embedded(tmp_path_factory.mktemp("viewer"))
    site.check("migrate", "--noinput")
    site.check(
        "createsuperuser",
        "--noinput",
        "--username=admin",
        "--email=a@example.org",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    site.check(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"User.objects.create_user('stranger', password={STRANGER_PASSWORD!r})",
    )
    worker = site.start("worker", [*WORKER_COMMAND, "--loglevel=INFO"])
    web = site.start(
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
            "--ws-per-message-deflate",
            "false",
        ],
    )
    try:
        worker.wait_for_output(" ready.")
        wait_until(lambda: _answers(site.url), 30, lambda: "web server did not answer")
        hostile = site.logs / "hostile.dcm"
        ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
        ds.PatientName = "<script>alert(1)</script>^Bobby"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (
            generate_uid() for _ in "abc"
        )
        ds.save_as(hostile, enforce_file_format=True)
        site.hostile_study = ds.StudyInstanceUID
        result = site.manage("import", str(LIDC), str(hostile), timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        site.ct_study = pydicom.dcmread(
            next(LIDC.glob("*.dcm")), stop_before_pixels=True
        ).StudyInstanceUID
        yield site
    finally:
        web.stop()
        worker.stop()


@pytest.fixture
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--use-gl=swiftshader",
                "--enable-unsafe-swiftshader",
            ],
        )
        yield browser
        browser.close()


def open_viewer(browser, site, study: str, user="admin", password=PASSWORD, init_script=None):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    if init_script:
        page.add_init_script(init_script)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    page.goto(f"{site.url}/login/?next=/viewer/{study}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/viewer/{study}")
    page.errors = errors
    return page


def shown(page) -> dict:
    return page.eval_on_selector(".viewport", "e => ({...e.dataset})")


def screen_point(page, column: float, row: float, size=(512, 512)) -> tuple[float, float]:
    """Where image pixel (column, row) is drawn, for a fitted image of equal spacing."""
    box = page.eval_on_selector(".viewport", "e => [e.clientWidth, e.clientHeight]")
    scale = min(box[0] / size[0], box[1] / size[1])
    return (
        box[0] / 2 + (column + 0.5 - size[0] / 2) * scale,
        box[1] / 2 + (row + 0.5 - size[1] / 2) * scale,
    )


def expected_grey(path, column: int, row: int, center=None, width=None) -> int:
    ds = pydicom.dcmread(path)
    value = float(ds.pixel_array[row, column]) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    center = float(first(ds.WindowCenter) if center is None else center)  # the viewer's default
    width = float(first(ds.WindowWidth) if width is None else width)
    y = (value - (center - 0.5)) / (width - 1) + 0.5
    return round(min(max(y, 0.0), 1.0) * 255)


def first(value):
    return value[0] if isinstance(value, pydicom.multival.MultiValue) else value


def file_of(sop: str):
    for path in LIDC.glob("*.dcm"):
        if pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID == sop:
            return path
    raise AssertionError(f"{sop} not in the test data")


def wait_js(page, expression: str, timeout: float = 60) -> None:
    """Poll `expression` until true. (page.wait_for_function needs eval, which the
    Content-Security-Policy of our pages forbids; page.evaluate goes through DevTools.)"""
    wait_until(lambda: page.evaluate(expression), timeout, lambda: f"never true: {expression}")


def wait_for_series(page) -> None:
    wait_js(page, "performance.getEntriesByName('lightbox:series-complete').length > 0")


def test_it_draws_the_stored_values_through_the_files_window(site, browser):
    page = open_viewer(browser, site, site.ct_study)
    wait_for_series(page)
    assert page.evaluate("performance.getEntriesByName('lightbox:first-image').length") == 1
    path = file_of(shown(page)["sop"])
    for column, row in [(256, 300), (100, 256), (300, 150), (200, 200)]:
        rgba = page.evaluate(PIXEL_AT, list(screen_point(page, column, row)))
        # Screen rounding may land on a neighbouring image pixel.
        nearby = [
            expected_grey(path, column + dc, row + dr) for dc in (-1, 0, 1) for dr in (-1, 0, 1)
        ]
        assert min(abs(rgba[0] - grey) for grey in nearby) <= 2, (column, row, rgba, nearby)
    assert page.errors == []


def test_it_scrolls_in_anatomical_order(site, browser):
    page = open_viewer(browser, site, site.ct_study)
    wait_for_series(page)
    page.keyboard.press("Home")
    positions = []
    for _ in range(12):
        sop = shown(page)["sop"]
        positions.append(
            float(pydicom.dcmread(file_of(sop), stop_before_pixels=True).ImagePositionPatient[2])
        )
        page.keyboard.press("ArrowDown")
        wait_js(page, f"document.querySelector('.viewport').dataset.sop !== {sop!r}")
    steps = np.diff(positions)
    assert (steps > 0).all() or (steps < 0).all(), positions
    assert np.allclose(np.abs(steps), np.abs(steps[0]), atol=0.01)


def test_it_changes_the_window_when_dragged(site, browser):
    page = open_viewer(browser, site, site.ct_study)
    wait_for_series(page)
    point = screen_point(page, 256, 300)
    before = page.evaluate(PIXEL_AT, list(point))
    box = page.eval_on_selector(
        ".viewport", "e => { const r = e.getBoundingClientRect(); return [r.x, r.y]; }"
    )
    page.mouse.move(box[0] + 400, box[1] + 400)
    page.mouse.down()
    page.mouse.move(box[0] + 250, box[1] + 300, steps=5)
    page.mouse.up()
    after = page.evaluate(PIXEL_AT, list(point))
    assert after[0] != before[0]
    assert "W 2000 L -450" not in page.inner_text(".corner.br")


def test_it_measures_a_length_in_millimetres(site, browser):
    page = open_viewer(browser, site, site.ct_study)
    wait_for_series(page)
    spacing = pydicom.dcmread(file_of(shown(page)["sop"]), stop_before_pixels=True).PixelSpacing
    page.keyboard.press("l")
    box = page.eval_on_selector(
        ".viewport", "e => { const r = e.getBoundingClientRect(); return [r.x, r.y]; }"
    )
    start, end = screen_point(page, 150, 256), screen_point(page, 350, 256)
    page.mouse.move(box[0] + start[0], box[1] + start[1])
    page.mouse.down()
    page.mouse.move(box[0] + end[0], box[1] + end[1], steps=4)
    with page.expect_response(lambda r: r.url.endswith("/annotations") and r.status == 201):
        page.mouse.up()
    label = page.text_content("text.measure") or ""
    assert abs(float(label.split()[0]) - 200 * float(spacing[1])) < 1.0, label
    page.reload()
    wait_for_series(page)
    page.wait_for_selector("text.measure", state="attached")
    assert page.text_content("text.measure") == label  # kept on the server, shown again
    page.keyboard.press("Delete")
    page.wait_for_selector("text.measure", state="detached")


def test_it_shows_a_hostile_name_as_text(site, browser):
    page = open_viewer(browser, site, site.hostile_study)
    wait_for_series(page)
    assert "<script>alert(1)</script> Bobby" in page.inner_text(".corner.tl")
    assert page.errors == []


def test_it_tells_a_user_who_may_not_see_the_study(site, browser):
    page = open_viewer(browser, site, site.ct_study, user="stranger", password=STRANGER_PASSWORD)
    page.wait_for_selector("#error:not([hidden])")
    assert "not allowed" in page.inner_text("#error")
    assert page.evaluate("performance.getEntriesByName('lightbox:first-image').length") == 0


def test_it_browses_and_searches_the_tags(site, browser):
    page = open_viewer(browser, site, site.ct_study)
    wait_for_series(page)
    assert not page.is_visible("#tags") and not page.is_visible("#help")  # until asked for
    page.keyboard.press("t")
    page.wait_for_selector("#tag-rows tr >> text=PatientName")
    assert page.is_visible("#tags")
    page.fill("#tag-search", "slicethick")
    rows = page.locator("#tag-rows tr")
    assert rows.count() == 1
    assert "SliceThickness" in rows.first.inner_text()
    page.click("#tags-close")
    assert not page.is_visible("#tags")


# Every WebSocket the page opens, and the frames (binary messages) each one received; the
# first is closed, as a dropped connection would be, once it has brought 100 frames.
DROP_AFTER_100_FRAMES = """(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.frames = 0;
      window.__sockets.push(this);
      this.addEventListener("message", ({ data }) => {
        if (typeof data !== "string") this.frames += 1;
        if (this === window.__sockets[0] && this.frames === 100) this.close();
      });
    }
  };
})()"""


def test_it_reconnects_and_resumes_when_the_connection_drops(site, browser):
    page = open_viewer(browser, site, site.ct_study, init_script=DROP_AFTER_100_FRAMES)
    wait_js(page, "window.__sockets.length === 2 && window.__sockets[1].readyState === 1")
    wait_for_series(page)

    frames = page.evaluate("window.__sockets.map((s) => s.frames)")
    assert frames[0] == 100
    assert 175 <= frames[1] <= 175 + 8  # only what was missing (8: sent before the page said)
    assert page.inner_text("#status") == ""  # "reconnecting…" is gone
    page.keyboard.press("End")
    wait_js(page, "document.querySelector('.viewport').dataset.index === '274'")
    assert page.errors == []


def test_it_scrolls_and_zooms_by_touch(site, browser):
    page = open_viewer(browser, site, site.ct_study)
    wait_for_series(page)
    cdp = page.context.new_cdp_session(page)
    box = page.eval_on_selector(
        ".viewport", "e => { const r = e.getBoundingClientRect(); return [r.x, r.y]; }"
    )
    x, y = box[0] + 300, box[1] + 400

    def touch(kind, points):
        cdp.send(
            "Input.dispatchTouchEvent",
            {
                "type": kind,
                "touchPoints": [{"x": px, "y": py, "id": i} for i, (px, py) in enumerate(points)],
            },
        )

    before = int(shown(page)["index"])
    touch("touchStart", [(x, y)])
    for step in range(1, 6):
        touch("touchMove", [(x, y - step * 24)])
    touch("touchEnd", [])
    assert int(shown(page)["index"]) == before + 10  # a 120 px swipe up: 10 slices on
    zoom_before = page.inner_text(".corner.br").split("Zoom ")[1]
    touch("touchStart", [(x - 50, y), (x + 50, y)])
    for step in range(1, 6):
        touch("touchMove", [(x - 50 - step * 20, y), (x + 50 + step * 20, y)])
    touch("touchEnd", [])
    assert page.inner_text(".corner.br").split("Zoom ")[1] != zoom_before
