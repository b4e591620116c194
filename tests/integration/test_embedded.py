"""The embedded default, with no service installed: SQLite and kombu's filesystem broker under
LIGHTBOX_DATA_DIR, a real worker, manage.py import and the web server as separate processes.

Runs everywhere: the processes get an environment without DATABASE_URL and REDIS_URL.
"""

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path

import pytest

from ..conftest import REPO, pydicom_file
from .helpers import PROCESS_LOGS, WORKER_COMMAND, Process, free_port, wait_until

FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"]
STUDY_UIDS = {  # one study per file: each sample is a different patient
    "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
    "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457",
    "1.3.6.1.4.1.5962.1.2.8.20040826185059.5457",
}
PASSWORD = "correct-horse-battery-staple"
pytestmark = pytest.mark.integration


class Embedded:
    """One embedded installation: its data dir, environment and web address."""

    def __init__(self, root: Path):
        self.data_dir = root / "data"
        self.logs = root
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("LIGHTBOX_")
        }
        self.env.update(LIGHTBOX_DATA_DIR=str(self.data_dir), PYTHONUNBUFFERED="1")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def check(self, *args: str, **env: str) -> str:
        result = self.manage(*args, **env)
        assert result.returncode == 0, f"manage.py {' '.join(args)}: {result.stderr}"
        return result.stdout

    def start(self, name: str, args: list[str]) -> Process:
        return Process(name, args, self.env, self.logs / f"{name}.log")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """Migrated, with an admin account, a worker and the web server running."""
    site = Embedded(tmp_path_factory.mktemp("embedded"))
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
    try:
        worker.wait_for_output(" ready.")
        wait_until(lambda: _answers(site.url), 30, lambda: f"web server: {web.output()}")
        yield site
    finally:
        web.stop()
        worker.stop()


@pytest.fixture(autouse=True)
def show_logs(request, embedded):
    """Show the worker's and web server's logs with any failure in this module."""
    logs = request.node.stash.setdefault(PROCESS_LOGS, [])
    logs.extend(embedded.logs / name for name in ("worker.log", "web.log"))


@pytest.fixture(scope="module")
def first_import(embedded) -> subprocess.CompletedProcess:
    return embedded.manage("import", *[str(pydicom_file(name)) for name in FILES])


def _answers(url: str) -> bool:
    try:
        return get(browser(), f"{url}/healthz")[0] == 200
    except OSError:  # not listening yet
        return False


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def browser(follow_redirects: bool = True) -> urllib.request.OpenerDirector:
    handlers = [urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())]
    if not follow_redirects:
        handlers.append(NoRedirect())
    return urllib.request.build_opener(*handlers)


def get(opener, url: str) -> tuple[int, Message, str]:
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def log_in(url: str, username: str, password: str) -> urllib.request.OpenerDirector:
    opener = browser()
    _, _, page = get(opener, f"{url}/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = {"csrfmiddlewaretoken": token, "username": username, "password": password}
    opener.open(f"{url}/login/", urllib.parse.urlencode(form).encode(), timeout=10).close()
    return opener


def test_it_imports_files_with_no_service_installed(first_import):
    assert first_import.returncode == 0, first_import.stderr
    assert "stored: 3, replaced: 0, already present: 0, rejected: 0" in first_import.stdout


def test_it_reports_files_imported_again_as_already_present(embedded, first_import):
    result = embedded.manage("import", *[str(pydicom_file(name)) for name in FILES])
    assert result.returncode == 0, result.stderr
    assert "stored: 0, replaced: 0, already present: 3, rejected: 0" in result.stdout


def test_it_rejects_a_file_that_is_not_dicom_with_its_reason(embedded, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")

    result = embedded.manage("import", str(notes))

    assert result.returncode == 1, result.stdout + result.stderr
    assert "rejected: 1" in result.stdout
    reason = re.search(rf"rejected {re.escape(str(notes))}: (.+)", result.stdout)
    assert reason and reason.group(1).strip(), result.stdout


def test_it_answers_healthz_without_a_login(embedded):
    status, _, body = get(browser(), f"{embedded.url}/healthz")
    assert (status, body) == (200, "ok\n")


def test_it_sends_visitors_to_the_login_form(embedded):
    status, headers, _ = get(browser(follow_redirects=False), f"{embedded.url}/")
    assert status == 302
    assert urllib.parse.urlsplit(headers["Location"]).path == "/login/"

    status, _, page = get(browser(), f"{embedded.url}/login/")
    assert status == 200
    assert re.search(r'<input[^>]+name="username"', page)
    assert re.search(r'<input[^>]+name="password"[^>]+type="password"', page)


def test_it_lists_the_imported_studies_after_login(embedded, first_import):
    opener = log_in(embedded.url, "admin", PASSWORD)

    status, _, body = get(opener, f"{embedded.url}/api/studies")

    assert status == 200, body
    studies = json.loads(body)["studies"]
    assert {s["study_instance_uid"] for s in studies} == STUDY_UIDS
    assert all((s["number_of_series"], s["number_of_instances"]) == (1, 1) for s in studies)
    assert {s["modalities_in_study"] for s in studies} == {"CT", "MR", "NM"}


def test_it_refuses_the_study_list_without_a_login(embedded):
    status, headers, _ = get(browser(follow_redirects=False), f"{embedded.url}/api/studies")
    assert status == 302
    assert urllib.parse.urlsplit(headers["Location"]).path == "/login/"
