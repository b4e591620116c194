"""What a file asks of the viewer, in headless Chromium: a VOI LUT Sequence's table
(PS3.3 C.11.2.1.1) applied to the pixels, by WebGL2 and by the 2D-canvas fallback, when the
reader picks it in the W/L menu; and an image whose pixels could not be decoded shown as a
plain-words message over a black viewport while the rest of its series streams on."""

import numpy as np
import pydicom
import pytest
from playwright.sync_api import Browser
from pydicom.uid import generate_uid

from ..archive.test_viewing import broken_codestream, lut_item
from ..conftest import pydicom_file
from .test_viewer_browser import PIXEL_AT, open_viewer, screen_point, shown, wait_js
from .test_worklist_browser import CHROMIUM, playwright
from .viewer_site import viewer_site

pytestmark = pytest.mark.integration
LUT_FIRST, LUT_ENTRIES = -1000, 2200
SAWTOOTH = [(i * 37) % 4096 for i in range(LUT_ENTRIES)]  # nothing a window could do
SIZE = (128, 128)  # CT_small.dcm
_AT = [(64, 64), (40, 80), (90, 30), (100, 100), (20, 60)]  # image pixels checked


def ct_small(folder, study: str, series: str, z: float) -> pydicom.Dataset:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
    ds.ImagePositionPatient = [0, 0, z]
    return ds


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    (root / "in").mkdir()
    lut_study, broken_study, broken_series = generate_uid(), generate_uid(), generate_uid()
    ds = ct_small(root, lut_study, generate_uid(), 0)
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.VOILUTSequence = [lut_item(LUT_FIRST, SAWTOOTH, "SAWTOOTH", bits=12)]
    ds.save_as(root / "in" / "lut.dcm", enforce_file_format=True)
    lut_file = root / "in" / "lut.dcm"
    for z in range(5):  # the middle one, which the viewer opens on, cannot be decoded
        ds = ct_small(root, broken_study, broken_series, z)
        ds = broken_codestream(ds) if z == 2 else ds
        ds.save_as(root / "in" / f"slice{z}.dcm", enforce_file_format=True)
    with viewer_site(root, root / "in") as site:
        site.lut_study, site.lut_file, site.broken_study = lut_study, lut_file, broken_study
        yield site


@pytest.fixture
def browser(request):
    """Chromium with WebGL2 (SwiftShader), or with no 3D APIs ("2d"): the 2D-canvas fallback."""
    renderer = getattr(request, "param", "webgl2")
    flags = ["--use-gl=swiftshader", "--enable-unsafe-swiftshader"]
    if renderer == "2d":
        flags = ["--disable-3d-apis"]
    with playwright.sync_playwright() as p:
        browser: Browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", *flags],
        )
        browser.renderer = renderer
        yield browser
        browser.close()


def through_lut(stored: int) -> int:
    value = stored - 1024  # CT_small: slope 1, intercept -1024
    entry = SAWTOOTH[min(max(value - LUT_FIRST, 0), LUT_ENTRIES - 1)]
    return round(entry / 4095 * 255)


def through_window(stored: int, center=40, width=400) -> int:
    y = (stored - 1024 - (center - 0.5)) / (width - 1) + 0.5
    return round(min(max(y, 0.0), 1.0) * 255)


def greys_match(page, pixels: np.ndarray, expected) -> None:
    for column, row in _AT:
        rgba = page.evaluate(PIXEL_AT, list(screen_point(page, column, row, SIZE)))
        # Screen rounding may land on a neighbouring image pixel.
        nearby = [
            expected(int(pixels[row + dr, column + dc])) for dc in (-1, 0, 1) for dr in (-1, 0, 1)
        ]
        assert min(abs(rgba[0] - grey) for grey in nearby) <= 2, (column, row, rgba, nearby)


@pytest.mark.parametrize("browser", ["webgl2", "2d"], indirect=True)
def test_it_draws_through_the_files_voi_lut_when_chosen(site, browser):
    page = open_viewer(browser, site, site.lut_study)
    wait_js(page, "performance.getEntriesByName('lightbox:series-complete').length > 0")
    pixels = pydicom.dcmread(site.lut_file).pixel_array
    assert ("2D canvas" in page.inner_text(".corner.br")) == (browser.renderer == "2d")
    greys_match(page, pixels, through_window)  # the file's window comes first
    assert all(through_lut(int(pixels[r, c])) != through_window(int(pixels[r, c])) for c, r in _AT)

    labels = page.eval_on_selector_all("#file-presets option", "os => os.map(o => o.text)")
    assert labels == ["Window 1 (400/40)", "VOI LUT 1: SAWTOOTH"]
    page.select_option("#preset", "lut:0")

    assert "VOI LUT 1: SAWTOOTH" in page.inner_text(".corner.br")
    greys_match(page, pixels, through_lut)
    page.select_option("#preset", "window:0")
    greys_match(page, pixels, through_window)
    assert page.errors == []


def test_it_says_which_image_could_not_be_decoded(site, browser):
    page = open_viewer(browser, site, site.broken_study)
    message = page.locator(".viewport .message")
    page.wait_for_selector(".viewport[data-failed='true']")
    text = message.inner_text()
    assert text.startswith("Image 3 of 5 could not be decoded: cannot decode JPEG Baseline"), text
    center = [page.evaluate(PIXEL_AT, list(screen_point(page, c, r, SIZE))) for c, r in _PATCH]
    assert all(rgba == [0, 0, 0, 255] for rgba in center), center  # no image passes for it

    # The stream went on: every other image arrived and is shown.
    wait_js(page, "performance.getEntriesByName('lightbox:series-complete').length > 0")
    page.keyboard.press("ArrowDown")
    wait_js(page, "document.querySelector('.viewport').dataset.index === '3'")
    assert "failed" not in shown(page) and not message.is_visible()
    assert any(page.evaluate(PIXEL_AT, list(screen_point(page, c, r, SIZE)))[0] for c, r in _PATCH)

    page.keyboard.press("ArrowUp")  # back to it: the message, not the image before it
    page.wait_for_selector(".viewport[data-failed='true']")
    assert message.inner_text() == text
    center = [page.evaluate(PIXEL_AT, list(screen_point(page, c, r, SIZE))) for c, r in _PATCH]
    assert all(rgba == [0, 0, 0, 255] for rgba in center), center
    assert page.errors == []


_PATCH = [(64, 64), (50, 70), (80, 40), (30, 90)]
