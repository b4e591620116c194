"""OHIF Viewer 3, the real built app, against a live Lightbox in headless Chromium: with the
app-config.js of docs/dicomweb.md, taken as written there, OHIF lists the studies and
displays their images, and no request fails.

OHIF is not downloaded here. Point LIGHTBOX_OHIF_DIST at its built site, the dist/ folder in
the tarball of `npm pack @ohif/app@3.13.2`, or at that tarball or the folder holding it;
without it these tests skip.
"""

import contextlib
import functools
import http.server
import os
import re
import sys
import tarfile
import threading
import urllib.parse
from pathlib import Path

import pydicom
import pytest

from ..conftest import REPO, TESTDATA, needs_testdata, pydicom_file
from ..integration.helpers import WORKER_COMMAND, wait_until
from ..integration.test_embedded import PASSWORD, Embedded, _answers
from .test_worklist_browser import CHROMIUM, playwright

pytestmark = pytest.mark.integration

DOCS = REPO / "docs" / "dicomweb.md"
LIDC = TESTDATA / "ct-lidc-0314"
FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"]
LIDC_SLICES = 15
# Fewer grey levels than this on the viewport's canvas means nothing is drawn on it yet.
DRAWN = 50
WAIT_MS = 30_000  # OHIF shows these studies within 2 s here
CANVAS_LEVELS = """() => {
  const canvas = document.querySelector('canvas.cornerstone-canvas');
  if (!canvas || !canvas.width) return 0;
  const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  const levels = new Set();
  for (let i = 0; i < data.length; i += 4) {
    levels.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  return levels.size;
}"""
SHOWN_SERIES = """() => window.services.displaySetService.getActiveDisplaySets().map(d => ({
  SeriesInstanceUID: d.SeriesInstanceUID,
  frames: d.numImageFrames,
  reconstructable: d.isReconstructable,
  messages: (d.messages?.messages || []).map(m => m.id),
}))"""


def header(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


@functools.cache
def lidc_slices() -> list[Path]:
    """Neighbouring slices from the middle of the LIDC CT (file names are not in slice
    order: sort by the z of ImagePositionPatient)."""
    paths = sorted(LIDC.glob("*.dcm"), key=lambda p: float(header(p).ImagePositionPatient[2]))
    middle = len(paths) // 2
    return paths[middle : middle + LIDC_SLICES]


# --- OHIF's static site ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ohif_dist(tmp_path_factory) -> Path:
    """OHIF's built site, from LIGHTBOX_OHIF_DIST: the dist/ folder, or the npm tarball
    (ohif-app-*.tgz) or the folder it is in."""
    given = os.environ.get("LIGHTBOX_OHIF_DIST")
    if not given:
        pytest.skip("set LIGHTBOX_OHIF_DIST to OHIF's dist/ (or tarball of npm pack @ohif/app)")
    path = Path(given)
    tarballs = sorted(path.glob("ohif-app-*.tgz")) if path.is_dir() else [path]
    if tarballs and tarballs[-1].is_file():
        unpacked = tmp_path_factory.mktemp("ohif")
        with tarfile.open(tarballs[-1]) as tarball:
            tarball.extractall(unpacked, filter="data")
        path = unpacked
    for dist in (path, path / "dist", path / "package" / "dist"):
        if (dist / "index.html").is_file():
            return dist
    pytest.skip(f"LIGHTBOX_OHIF_DIST={given} holds no OHIF index.html")


class OhifFiles(http.server.SimpleHTTPRequestHandler):
    """OHIF's files, our app-config.js, and index.html for any other path: /viewer and the
    study list are routes of OHIF's single page."""

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/app-config.js":
            body = self.server.app_config.encode()  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not Path(self.translate_path(path)).is_file():
            self.path = "/index.html"
        super().do_GET()

    def log_message(self, format, *args) -> None:
        pass


class OhifSite(http.server.ThreadingHTTPServer):
    def __init__(self, dist: Path):
        super().__init__(("127.0.0.1", 0), functools.partial(OhifFiles, directory=str(dist)))
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.app_config = ""


@pytest.fixture(scope="module")
def ohif_site(ohif_dist):
    site = OhifSite(ohif_dist)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    yield site
    site.shutdown()
    site.server_close()


def docs_app_config(lightbox_url: str, token: str) -> str:
    """The app-config.js of docs/dicomweb.md, pointed at this Lightbox with this token."""
    section = DOCS.read_text().split("## OHIF Viewer (v3)", 1)[1]
    config = re.search(r"```js\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]
    placeholders = ("https://lightbox.example.org", "lbx_…")
    assert all(p in config for p in placeholders), f"placeholders changed in {DOCS}"
    return config.replace(placeholders[0], lightbox_url).replace(placeholders[1], token)


# --- Lightbox --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lightbox(tmp_path_factory, ohif_site):
    """A live Lightbox that lets OHIF's origin call it, with the sample images and a
    read-only token, as docs/dicomweb.md advises for OHIF."""
    site = Embedded(tmp_path_factory.mktemp("lightbox"))
    site.env["LIGHTBOX_CORS_ALLOWED_ORIGINS"] = ohif_site.url
    site.check("migrate", "--noinput")
    site.check(
        "createsuperuser",
        "--noinput",
        "--username=alice",
        "--email=alice@example.org",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    token = site.check("apitoken", "create", "alice", "--name", "OHIF", "--scope", "read")
    site.token = token.strip()
    worker = site.start("worker", [*WORKER_COMMAND, "--loglevel=INFO"])
    web = site.start(
        "web",
        [sys.executable, "-m", "uvicorn", "backend.asgi:application"]
        + ["--host", "127.0.0.1", "--port", str(site.port), "--lifespan", "off"],
    )
    try:
        worker.wait_for_output(" ready.")
        wait_until(lambda: _answers(site.url), 30, lambda: f"web server: {web.output()}")
        files = [pydicom_file(name) for name in FILES]
        files += lidc_slices() if LIDC.exists() else []
        site.check("import", *map(str, files))  # returns once the worker has indexed them
        yield site
    finally:
        web.stop()
        worker.stop()


@pytest.fixture(scope="module")
def ohif(ohif_site, lightbox) -> str:
    """OHIF's address, configured as docs/dicomweb.md says."""
    ohif_site.app_config = docs_app_config(lightbox.url, lightbox.token)
    return ohif_site.url


# --- The browser -----------------------------------------------------------------------


@pytest.fixture
def problems() -> list[str]:
    """What went wrong in the page: console errors, uncaught exceptions, failed requests."""
    return []


@pytest.fixture
def page(problems):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda exc: problems.append(f"exception: {exc}"))
        page.on("response", lambda r: r.status >= 400 and problems.append(failure(r)))
        page.on("requestfailed", lambda r: problems.append(f"{r.failure}: {r.method} {r.url}"))
        yield page
        browser.close()


def failure(response) -> str:
    request = response.request
    return (
        f"{response.status} {request.method} {request.url}\n"
        f"  request headers: {request.headers}\n  response: {response.text()[:500]}"
    )


@contextlib.contextmanager
def awaiting(what: str, page, problems: list[str], screenshot: Path):
    """Wait for `what` in the block; on timeout, fail with what went wrong in the page.
    The screenshot is taken either way."""
    try:
        yield
    except playwright.TimeoutError:
        pytest.fail(f"{what} did not happen; in the page:\n" + "\n".join(problems), False)
    finally:
        page.screenshot(path=screenshot)


def open_viewer(page, problems, ohif: str, study_instance_uid: str, screenshot: Path):
    """Open the study in OHIF's viewer, wait until its image is drawn, and return the
    series the viewport shows."""
    page.goto(f"{ohif}/viewer?StudyInstanceUIDs={study_instance_uid}")
    with awaiting("drawing the image", page, problems, screenshot):
        page.wait_for_function(f"({CANVAS_LEVELS})() > {DRAWN}", timeout=WAIT_MS)
    return page.evaluate(SHOWN_SERIES)


# --- Tests -----------------------------------------------------------------------------


def test_it_lists_the_studies_in_ohifs_study_list(ohif, page, problems, tmp_path):
    page.goto(f"{ohif}/")
    with awaiting("listing the studies", page, problems, tmp_path / "study-list.png"):
        for patient in ("CT1", "MR1", "NM1"):  # OHIF writes CompressedSamples^CT1 so
            page.get_by_text(f"CompressedSamples, {patient}").wait_for(timeout=WAIT_MS)
    assert problems == []


# Uncompressed, and compressed frames sent as stored for OHIF to decode.
@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm"])
def test_it_displays_the_image_in_ohifs_viewer(ohif, page, problems, tmp_path, name):
    ds = header(pydicom_file(name))
    shown = open_viewer(page, problems, ohif, ds.StudyInstanceUID, tmp_path / "viewer.png")
    assert [(s["SeriesInstanceUID"], s["frames"]) for s in shown] == [(ds.SeriesInstanceUID, 1)]
    assert problems == []


@needs_testdata(LIDC)
def test_it_stacks_the_slices_of_a_ct_series_in_ohifs_viewer(ohif, page, problems, tmp_path):
    first = header(lidc_slices()[0])
    shown = open_viewer(page, problems, ohif, first.StudyInstanceUID, tmp_path / "viewer.png")
    # Reconstructable with no warning: positions, orientations and spacing all agree.
    assert shown == [
        {
            "SeriesInstanceUID": first.SeriesInstanceUID,
            "frames": LIDC_SLICES,
            "reconstructable": True,
            "messages": [],
        }
    ]
    assert problems == []
