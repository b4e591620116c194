"""A 2,000-slice series in a tab whose frame cache is capped low (?cache_mb=16, 128 frames
of 256 × 256 × 16 bits): scrolled end to end, the cache never holds more than its cap, keeps
the frames nearest the reader, and fetches again what it dropped when the reader goes back.
(The cap stands in for a 4 GB machine: a quarter of navigator.deviceMemory.)"""

import pytest

from .test_viewer_browser import PASSWORD, browser, wait_js  # noqa: F401 (fixture)
from .test_worklist_browser import CHROMIUM, playwright  # noqa: F401 (skips without them)
from .viewer_site import ct_series, viewer_site

pytestmark = pytest.mark.integration
SLICES, SIZE, CAP_MB = 2000, 256, 16
CAP = CAP_MB * 1024 * 1024
HELD = CAP // (SIZE * SIZE * 2)  # frames that fit: 128


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    study = ct_series(root / "series", SLICES, SIZE)
    with viewer_site(root, root / "series") as site:
        site.study = study
        yield site


def open_capped(browser, site):  # noqa: F811
    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(f"{site.url}/login/?next=/viewer/{site.study}%3Fcache_mb%3D{CAP_MB}")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/viewer/{site.study}?cache_mb={CAP_MB}")
    return page


def cache(page) -> dict:
    return page.eval_on_selector("#viewports", "e => ({...e.dataset})")


def go(page, key: str, index: int, held: range, presses: int = 1) -> None:
    """Press `key`; wait until image `index` is drawn and the cache holds just `held`, the
    frames nearest it (the server sends those; each arrival drops the farthest held)."""
    for _ in range(presses):
        page.keyboard.press(key)
    wait_js(page, f"document.querySelector('.viewport').dataset.index === '{index}'", 30)
    ranges = f"{held.start}-{held.stop - 1}"
    wait_js(page, f"document.querySelector('#viewports').dataset.cacheHeld === '{ranges}'", 30)


def test_it_keeps_a_2000_slice_series_under_its_cache_cap(site, browser):  # noqa: F811
    page = open_capped(browser, site)
    wait_js(page, "performance.getEntriesByName('lightbox:first-image').length > 0")
    assert page.eval_on_selector(".viewport", "e => e.dataset.index") == str(SLICES // 2)
    assert cache(page)["cacheCap"] == str(CAP)

    first, last = range(HELD), range(SLICES - HELD, SLICES)
    go(page, "Home", 0, held=first)
    # End to end, 10 slices a key: the first slices are dropped, farthest from the reader.
    go(page, "PageDown", SLICES - 1, held=last, presses=SLICES // 10)
    go(page, "Home", 0, held=first)  # so they are fetched again, and shown

    state = cache(page)
    assert int(state["cachePeak"]) <= CAP, state
    assert int(state["cacheBytes"]) == HELD * SIZE * SIZE * 2
    assert page.errors == []
    assert page.evaluate("performance.getEntriesByName('lightbox:series-complete').length") == 0
