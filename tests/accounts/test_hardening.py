"""Browser hardening and production settings: the security headers on every response, no
inline code in any page, cookies, the admin site for administrators only, a clean
`check --deploy` with production settings, and no patient data in the logs."""

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from django.contrib.auth.models import User
from django.test import Client

from backend.accounts.hardening import CONTENT_SECURITY_POLICY, MaskDicomValues
from backend.accounts.models import Profile, Role

from ..archive.helpers import receive_file, variant
from ..conftest import REPO, grant_every_study, pydicom_file

pytestmark = pytest.mark.django_db

PAGES = ["/login/", "/healthz", "/api/studies", "/dicomweb/studies", "/nodes/", "/admin/"]


@pytest.fixture
def admin_client():
    user = User.objects.create_user("root", is_staff=True)
    Profile.objects.create(user=user, role=Role.ADMIN)
    client = Client()
    client.force_login(user)
    return client


# --- Headers ---------------------------------------------------------------------------


def directives(policy: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_it_forbids_inline_script_style_plugins_and_framing():
    policy = directives(CONTENT_SECURITY_POLICY)
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["img-src"] == "'self' data: blob:"
    assert policy["connect-src"] == "'self' ws: wss:"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'self'"
    assert policy["form-action"] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("url", PAGES)
@pytest.mark.parametrize("signed_in", [False, True])
def test_it_sends_the_security_headers_everywhere(admin_client, url, signed_in):
    response = (admin_client if signed_in else Client()).get(url)
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]


def test_it_sends_hsts_and_redirects_to_https_behind_tls(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True

    assert Client().get("/healthz").status_code == 301
    response = Client().get("/healthz", HTTP_X_FORWARDED_PROTO="https")
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_it_marks_the_session_cookie_httponly_and_samesite(client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    User.objects.create_user("alice", password="a long enough password 1")
    client.get("/login/")

    response = client.post("/login/", {"username": "alice", "password": "a long enough password 1"})

    assert response.status_code == 302
    session = response.cookies[settings.SESSION_COOKIE_NAME]
    assert session["httponly"] and session["samesite"] == "Lax"
    csrf = client.cookies[settings.CSRF_COOKIE_NAME]
    assert csrf["samesite"] == "Lax"


# --- Pages carry no inline code ----------------------------------------------------------

INLINE = [
    (re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "on* event handler attribute"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def page_files() -> list[Path]:
    return sorted(
        [*(REPO / "frontend").rglob("*.html"), *(REPO / "backend" / "templates").rglob("*.html")]
    )


def test_it_finds_the_pages():
    names = {path.name for path in page_files()}
    assert {"index.html", "nodes.html", "login.html"} <= names


@pytest.mark.parametrize("path", page_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_it_has_no_inline_code_in(path):
    text = path.read_text()
    found = [what for pattern, what in INLINE if pattern.search(text)]
    assert found == [], f"{path.relative_to(REPO)}: {found} (CSP blocks it)"


# --- The admin site is for administrators -------------------------------------------------


@pytest.mark.parametrize("role", [Role.RADIOLOGIST, Role.REFERRING, Role.UPLOADER, None])
def test_it_keeps_staff_of_other_roles_out_of_the_admin(client, role):
    user = User.objects.create_user("staff", is_staff=True)
    if role:
        Profile.objects.create(user=user, role=role)
    client.force_login(user)

    for url in ("/admin/", "/admin/archive/study/", "/admin/accounts/auditevent/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert "/login/" in response["Location"]


def test_it_lets_administrators_into_the_admin(admin_client):
    # Django's model permissions still apply inside: a superuser has them all.
    assert admin_client.get("/admin/").status_code == 200


def test_it_shows_the_node_access_group_in_the_admin_form(client):
    client.force_login(User.objects.create_superuser("root"))
    html = client.get("/admin/nodes/remotenode/add/").content.decode()
    assert 'name="access_group"' in html


# --- Production settings ---------------------------------------------------------------


def production_env(tmp_path: Path, **more: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LIGHTBOX_", "DJANGO_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        LIGHTBOX_DATA_DIR=str(tmp_path / "data"),
        LIGHTBOX_DEBUG="0",
        DJANGO_SECRET_KEY="k" * 20 + "a-long-random-secret-key-for-the-deploy-check-0123456789",
        LIGHTBOX_BEHIND_TLS_PROXY="1",
        LIGHTBOX_ALLOWED_HOSTS="pacs.example.org",
        **more,
    )
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_passes_check_deploy_with_production_settings(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_sets_secure_cookies_and_hsts_in_production(tmp_path):
    script = (
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, "
        "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
        "s.DEBUG, s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SAMESITE)"
    )
    result = manage(production_env(tmp_path), "shell", "-v", "0", "-c", script)
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.split() == ["True"] * 6 + ["False", "Lax", "Lax"], result.stderr


def test_it_warns_about_preload_only_when_asked_for(tmp_path):
    env = production_env(tmp_path, LIGHTBOX_HSTS_PRELOAD="1")
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


# --- No patient data in the logs ---------------------------------------------------------

PATIENT_NAME = "Logsentinel^Wilhelmina"
PATIENT_ID = "LOG-PID-4242"
BAD_BIRTH_DATE = "1923-05-17"  # not a DA (PS3.5 §6.2): pydicom complains, quoting it
BAD_SEX = "Female"  # not a CS either


@pytest.fixture
def log_output(caplog):
    """What the configured log handler (settings.LOGGING) writes, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    [handler] = [h for h in logging.getLogger().handlers if h.filters]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def hostile_file(tmp_path: Path) -> Path:
    with pydicom.config.disable_value_validation():
        return variant(
            tmp_path,
            PatientName=PATIENT_NAME,
            PatientID=PATIENT_ID,
            PatientBirthDate=BAD_BIRTH_DATE,
            PatientSex=BAD_SEX,
            StudyInstanceUID="new-uid",
            SeriesInstanceUID="new-uid",
            SOPInstanceUID="new-uid",
        )


@pytest.mark.django_db(transaction=True)
def test_it_writes_no_patient_data_to_the_logs(log_output, tasks, tmp_path, client):
    hostile = hostile_file(tmp_path)
    not_dicom = tmp_path / "not-dicom.dcm"
    not_dicom.write_bytes(b"Logsentinel^Wilhelmina" * 20)
    for path in (hostile, hostile, not_dicom):
        receive_file(path, tasks)
    client.force_login(grant_every_study(User.objects.create_user("reader")))
    client.get(f"/dicomweb/studies?PatientName={PATIENT_NAME}&PatientID={PATIENT_ID}")
    client.get(f"/dicomweb/studies?PatientBirthDate={BAD_BIRTH_DATE}&PatientID={PATIENT_ID}")
    client.get(f"/dicomweb/studies?PatientID={PATIENT_ID}&fuzzymatching=maybe")
    uid = pydicom.dcmread(hostile).StudyInstanceUID
    client.get(f"/dicomweb/studies/{uid}/series/1.2.3/metadata")

    text = log_output.getvalue()
    assert "quarantined" in text  # the file that is not DICOM, by its record id
    assert "Invalid value for VR" in text  # pydicom did complain
    for secret in (PATIENT_NAME, "Logsentinel", PATIENT_ID, BAD_BIRTH_DATE, BAD_SEX):
        assert secret not in text


def test_it_masks_the_values_pydicom_quotes():
    record = logging.LogRecord(
        "pydicom",
        logging.WARNING,
        __file__,
        1,
        "Invalid value for VR %s: %r.",
        ("PN", "O'Brien"),
        None,
    )
    assert MaskDicomValues().filter(record)
    assert record.getMessage() == "Invalid value for VR PN: '…'."


def test_it_keeps_pynetdicom_from_logging_identifiers():
    assert logging.getLogger("pynetdicom").getEffectiveLevel() >= logging.WARNING


# --- In a real browser: no page breaks the policy -----------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.integration
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed")
def test_it_breaks_no_page_with_the_policy_in_chromium(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from ..integration.test_embedded import PASSWORD

    site = _started_site(tmp_path)
    try:
        violations = _visit_every_page(playwright, site, PASSWORD)
    finally:
        site.stop()
    assert violations == []


class _Site:
    def __init__(self, embedded, web, worker):
        self.embedded, self.web, self.worker = embedded, web, worker
        self.url = embedded.url

    def stop(self) -> None:
        self.web.stop()
        self.worker.stop()


def _started_site(tmp_path: Path) -> _Site:
    from ..integration.helpers import WORKER_COMMAND, wait_until
    from ..integration.test_embedded import PASSWORD, Embedded, _answers

    site = Embedded(tmp_path)
    site.check("migrate", "--noinput")
    site.check(
        "createsuperuser",
        "--noinput",
        "--username=admin",
        "--email=admin@example.org",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    worker = site.start("worker", [*WORKER_COMMAND, "--loglevel=INFO"])
    web = site.start(
        "web",
        [sys.executable, "-m", "uvicorn", "backend.asgi:application"]
        + ["--host", "127.0.0.1", "--port", str(site.port), "--lifespan", "off"],
    )
    running = _Site(site, web, worker)
    try:
        worker.wait_for_output(" ready.")
        wait_until(lambda: _answers(site.url), 30, lambda: f"web server: {web.output()}")
        site.check("import", str(pydicom_file("CT_small.dcm")))
    except BaseException:
        running.stop()
        raise
    return running


def _visit_every_page(playwright, site: _Site, password: str) -> list[str]:
    uid = pydicom.dcmread(pydicom_file("CT_small.dcm")).StudyInstanceUID
    pages = ["/", "/nodes/", f"/viewer/{uid}", "/account/", "/manage/", "/manage/users"]
    pages += ["/manage/groups", "/manage/shares", "/manage/audit", "/admin/"]
    pages += ["/admin/nodes/remotenode/add/", "/admin/archive/study/", "/admin/auth/user/add/"]
    violations: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.on(
            "console",
            lambda m: (
                violations.append(f"{page.url}: {m.text}")
                if "Content Security Policy" in m.text
                else None
            ),
        )
        page.goto(f"{site.url}/login/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{site.url}/")
        for path in pages:
            page.goto(f"{site.url}{path}")
            page.wait_for_load_state("networkidle")
        browser.close()
    return violations
