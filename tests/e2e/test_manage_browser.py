"""The /manage pages in a real browser (Debian's headless Chromium driven by Playwright)
against an embedded installation: an administrator creates a user and gets an invitation
link, the user chooses a password through it, the administrator puts them in a group with a
rule, shares a study with them, and finds all of it in the audit log.

Set LIGHTBOX_SCREENSHOT_DIR to keep a screenshot of each page."""

import csv
import io
import os
from datetime import date, timedelta
from pathlib import Path

import pytest

from ..conftest import pydicom_file
from ..integration.test_embedded import PASSWORD, embedded, show_logs  # noqa: F401 (fixtures)

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed"),
]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = playwright.expect if playwright else None

HOSTILE = "<img src=x onerror=alert(1)>"
CAROL_PASSWORD = "quiet-harbour-lantern-58"
CT_UID = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


@pytest.fixture
def browser(embedded):  # noqa: F811
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def problems() -> list[str]:
    """JavaScript errors and console errors (a CSP refusal is one) of every page."""
    return []


def new_page(browser, problems: list[str]):
    """A page in a browser context of its own: its own cookies, so its own user."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("dialog", lambda dialog: dialog.accept())
    return page


def screenshot(page, name: str) -> None:
    folder = os.environ.get("LIGHTBOX_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / f"manage-{name}.png"), full_page=True)


def sign_in_as_admin(page, url: str) -> None:
    page.goto(f"{url}/login/?next=/manage/users")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/manage/users")


def create_user(page) -> str:
    """Create carol on the users page; returns her invitation link."""
    form = page.locator("#create-user")
    form.locator("input[name=username]").fill("carol")
    form.locator("input[name=first_name]").fill(HOSTILE)
    form.locator("input[name=last_name]").fill("Zoë")
    form.locator("select[name=role]").select_option("radiologist")
    form.locator("button[type=submit]").click()
    link = page.locator("[data-testid=invitation] input")
    expect(link).to_have_value(playwright_re(r"^http://.+/manage/invite/[\w-]{43}$"))
    expect(page.locator("#users tbody tr[data-username=carol]")).to_contain_text("invited")
    # Names are text, never markup.
    expect(page.locator("#users tbody tr[data-username=carol] td").nth(1)).to_have_text(
        f"{HOSTILE} Zoë"
    )
    assert page.locator("#users img").count() == 0
    screenshot(page, "users")
    return link.input_value()


def playwright_re(pattern: str):
    import re

    return re.compile(pattern)


def accept_invitation(page, link: str, url: str) -> None:
    page.goto(link)
    expect(page.locator("#welcome")).to_contain_text("Your username is carol")
    screenshot(page, "invite")
    page.fill("input[name=password]", CAROL_PASSWORD)
    page.fill("input[name=confirm]", CAROL_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    expect(page.locator("#live-status")).to_have_text("live")


def look_at_carol(page) -> None:
    """Her row and panel on the users page: signed in once, in no group."""
    page.reload()
    row = page.locator("#users tbody tr[data-username=carol]")
    expect(row.locator("td").nth(7)).to_have_text("1")  # one active session
    row.locator("button", has_text="Edit").click()
    expect(page.locator("#panel-title")).to_have_text("carol")
    expect(page.locator("#sessions tbody tr")).to_have_count(1)
    screenshot(page, "user-panel")


def make_group(page, url: str) -> None:
    page.goto(f"{url}/manage/groups")
    page.fill("#create-group input[name=name]", "Chest CT")
    page.click("#create-group button[type=submit]")
    card = page.locator("article[data-group='Chest CT']")
    card.locator("select[name=attribute]").select_option("modality")
    card.locator("input[name=pattern]").fill("C?")
    card.locator("button", has_text="Add rule").click()
    expect(card.locator("header")).to_contain_text("1 study selected by its rules")
    card.locator("select[name=user]").select_option(label="carol")
    card.locator("button", has_text="Add member").click()
    expect(card.locator(".chip")).to_have_text("carol×")
    screenshot(page, "groups")


def share_study(page, url: str) -> None:
    page.goto(f"{url}/manage/shares")
    page.fill("#find-study input[name=q]", "ct1")
    page.click("#find-study button[type=submit]")
    page.locator("#study-results button", has_text="Choose").first.click()
    form = page.locator("#create-share")
    expect(form.locator("input[name=study_instance_uid]")).to_have_value(CT_UID)
    form.locator("select[name=with]").select_option(label="carol")
    form.locator("input[name=expires_on]").fill((date.today() + timedelta(days=7)).isoformat())
    form.locator("button[type=submit]").click()
    until = (date.today() + timedelta(days=7)).strftime("%-m/%-d/%Y")
    expect(page.locator("#shares tbody tr")).to_contain_text([f"through {until}"])
    screenshot(page, "shares")


def find_in_audit(page, url: str) -> None:
    page.goto(f"{url}/manage/audit")
    page.fill("#audit-filter input[name=event_type]", "admin.*")
    page.click("#audit-filter button[type=submit]")
    events = page.locator("#events tbody tr td:nth-child(2)")
    expect(events.first).to_have_text("admin.share_created")
    shown = set(events.all_inner_texts())
    assert {
        "admin.user_created",
        "admin.invitation_created",
        "admin.group_changed",
        "admin.rule_changed",
        "admin.share_created",
    } <= shown
    assert "event_type=admin.*" in page.url.replace("%2A", "*")  # a bookmarkable search
    screenshot(page, "audit-admin")
    export_csv(page)
    page.fill("#audit-filter input[name=event_type]", "account.invitation_accepted")
    page.click("#audit-filter button[type=submit]")
    expect(page.locator("#events tbody tr")).to_have_count(1)
    expect(page.locator("#events tbody tr td").nth(3)).to_have_text("carol")
    screenshot(page, "audit")


def export_csv(page) -> None:
    """The export of the search shown, streamed by the real server (uvicorn)."""
    with page.expect_download() as download:
        page.click("#export")
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0][:3] == ["id", "time", "event_type"]
    types = {row[2] for row in rows[1:]}
    assert "admin.share_created" in types and all(t.startswith("admin.") for t in types)


def test_it_invites_a_user_groups_them_shares_a_study_and_audits_it(
    embedded,  # noqa: F811
    browser,
    problems,
):
    embedded.check("import", str(pydicom_file("CT_small.dcm")), str(pydicom_file("MR_small.dcm")))
    admin = new_page(browser, problems)
    sign_in_as_admin(admin, embedded.url)
    link = create_user(admin)

    carol = new_page(browser, problems)
    accept_invitation(carol, link, embedded.url)
    expect(carol.locator("#studies tbody tr")).to_have_count(0)  # in no group yet

    look_at_carol(admin)
    make_group(admin, embedded.url)
    share_study(admin, embedded.url)
    carol.reload()
    expect(carol.locator("#studies tbody tr")).to_have_count(1)  # the CT, by rule and share

    find_in_audit(admin, embedded.url)
    assert problems == []
    carol.goto(f"{embedded.url}/manage/users")
    assert "administrators only" in carol.content()
