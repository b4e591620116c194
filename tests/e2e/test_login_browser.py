"""Signing in, two-factor and the "my account" page in a real browser (Debian's headless
Chromium driven by Playwright) against an embedded installation.

Set LIGHTBOX_SCREENSHOT_DIR to keep a screenshot of each page."""

import base64
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from backend.accounts import twofactor

from ..integration.test_embedded import PASSWORD, embedded, show_logs  # noqa: F401 (fixtures)
from .test_worklist_browser import CHROMIUM, launch_chromium

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed"),
]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture
def page(embedded):  # noqa: F811
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert errors == [], f"JavaScript errors: {errors}"


def wait_for_worklist(page) -> None:
    # A locator, not wait_for_function: the Content-Security-Policy forbids eval.
    playwright.expect(page.locator("#live-status")).to_have_text("live")


def screenshot(page, name: str) -> None:
    folder = os.environ.get("LIGHTBOX_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def fill_login(page, url: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def basic_status(url: str, password: str = PASSWORD) -> int:
    value = base64.b64encode(f"admin:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {value}"}
    request = urllib.request.Request(f"{url}/dicomweb/studies", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_it_says_so_when_the_password_is_wrong(embedded, page):  # noqa: F811
    page.goto(f"{embedded.url}/")
    screenshot(page, "login")
    fill_login(page, embedded.url, "not the password")
    assert page.locator("p.error").inner_text().startswith("Wrong username or password")
    assert page.url.startswith(f"{embedded.url}/login/")
    screenshot(page, "login-failed")


def test_it_makes_an_api_token_that_is_shown_once(embedded, page):  # noqa: F811
    fill_login(page, embedded.url)
    wait_for_worklist(page)
    page.goto(f"{embedded.url}/account/")
    page.fill("input[name=name]", "browser test")
    page.click("#tokens button[type=submit]")
    token = page.locator("#token-text").inner_text()
    screenshot(page, "token")
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{embedded.url}/dicomweb/studies"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200


# Last: it turns two-factor on for the admin.
def test_it_signs_in_sets_up_two_factor_and_asks_for_the_code(embedded, page):  # noqa: F811
    fill_login(page, embedded.url)
    wait_for_worklist(page)

    page.goto(f"{embedded.url}/account/")
    assert page.locator("#sessions tbody tr").count() >= 1
    screenshot(page, "account")
    page.click("#two-factor a.button")
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    assert page.locator(".qr svg").count() == 1
    screenshot(page, "two-factor-setup")
    page.fill("input[name=code]", twofactor.code_at(secret, time.time()))
    page.click("form.inline button[type=submit]")
    assert "Two-factor sign-in is on" in page.locator(".messages").inner_text()
    assert basic_status(embedded.url) == 401  # a password alone no longer signs in

    page.click("header button[type=submit]")  # sign out
    fill_login(page, embedded.url)
    assert page.url == f"{embedded.url}/login/code/"
    screenshot(page, "login-code")
    # The code of the next step: the current one was used up by the set-up.
    page.fill("input[name=code]", twofactor.code_at(secret, time.time() + 30))
    page.click("button[type=submit]")
    wait_for_worklist(page)
