"""The pages' files answered before Django (backend/frontend_files.py) are answered exactly
as Django (WhiteNoise and the security middleware) answers them, and nothing else is."""

import asyncio
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from backend.frontend_files import PREFIX, FrontendFiles

FRONTEND = Path(settings.BASE_DIR) / "frontend"
FILES = sorted(str(p.relative_to(FRONTEND)) for p in FRONTEND.rglob("*") if p.is_file())
SAME = [
    "content-type",
    "content-length",
    "cache-control",
    "etag",
    "last-modified",
    "access-control-allow-origin",
    "content-security-policy",
    "permissions-policy",
    "x-content-type-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "strict-transport-security",
]


class Downstream:
    """The app behind the middleware: records that a request reached it."""

    def __init__(self):
        self.paths = []

    async def __call__(self, scope, receive, send):
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def call(app, path: str, method: str = "GET", headers=(), scheme: str = "http"):
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "scheme": scheme,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, body = sent
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body["body"]


def django_answer(path: str, **headers):
    response = Client().get(path, **headers)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, {k.lower(): v for k, v in response.headers.items()}, body


@pytest.mark.parametrize("name", FILES)
def test_each_file_is_answered_as_django_answers_it(name):
    status, headers, body = call(FrontendFiles(Downstream()), PREFIX + name)
    expected_status, expected, expected_body = django_answer(PREFIX + name)

    on_disk = (FRONTEND / name).read_bytes()
    assert (status, body) == (expected_status, expected_body) == (200, on_disk)
    assert {k: headers.get(k) for k in SAME} == {k: expected.get(k) for k in SAME}


def test_not_modified_is_answered_as_django_answers_it():
    name = PREFIX + "js/viewer/main.js"
    app = FrontendFiles(Downstream())
    etag = call(app, name)[1]["etag"]

    status, headers, body = call(app, name, headers=[("If-None-Match", etag)])
    expected_status, expected, _ = django_answer(name, HTTP_IF_NONE_MATCH=etag)

    assert (status, body) == (expected_status, b"") == (304, b"")
    assert {k: headers.get(k) for k in SAME} == {k: expected.get(k) for k in SAME}
    assert call(app, name, headers=[("If-None-Match", '"other"')])[0] == 200


def test_head_has_the_headers_and_no_body():
    status, headers, body = call(FrontendFiles(Downstream()), PREFIX + "css/viewer.css", "HEAD")

    assert status == 200 and body == b""
    assert headers["content-length"] == str((FRONTEND / "css/viewer.css").stat().st_size)


@pytest.mark.parametrize(
    "path",
    [
        PREFIX + "../backend/settings.py",
        PREFIX + "js/../../manage.py",
        PREFIX + "/etc/passwd",
        PREFIX + "js\\viewer\\main.js",
        PREFIX + "js/viewer/main.js\0",
        PREFIX + "js/viewer/missing.js",
        PREFIX + "js",
        PREFIX,
        "/static/admin/css/base.css",
        "/api/studies",
        "/static/app-other/js/viewer/main.js",
    ],
)
def test_anything_else_goes_on_to_django(path):
    downstream = Downstream()

    assert call(FrontendFiles(downstream), path)[0] == 418
    assert downstream.paths == [path]


def test_a_symbolic_link_out_of_the_folder_is_not_followed(tmp_path):
    root = tmp_path / "frontend"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (root / "leak.js").symlink_to(tmp_path / "secret.txt")
    (root / "ok.js").write_text("export {};")
    downstream = Downstream()
    app = FrontendFiles(downstream, root)

    assert call(app, PREFIX + "leak.js")[0] == 418
    assert call(app, PREFIX + "ok.js")[2] == b"export {};"


def test_other_methods_and_ranges_go_on_to_django():
    downstream = Downstream()
    app = FrontendFiles(downstream)

    assert call(app, PREFIX + "js/viewer/main.js", "POST")[0] == 418
    assert call(app, PREFIX + "js/viewer/main.js", headers=[("Range", "bytes=0-9")])[0] == 418
    since = [("If-Modified-Since", "Thu, 01 Jan 2099 00:00:00 GMT")]
    assert call(app, PREFIX + "js/viewer/main.js", headers=since)[0] == 418
    assert len(downstream.paths) == 3


def test_an_edited_file_is_served_at_once(tmp_path):
    (tmp_path / "a.js").write_text("one")
    app = FrontendFiles(Downstream(), tmp_path)
    assert call(app, PREFIX + "a.js")[2] == b"one"

    (tmp_path / "a.js").write_text("three")
    os.utime(tmp_path / "a.js", ns=(1, 2_000_000_000))

    status, headers, body = call(app, PREFIX + "a.js")
    assert body == b"three" and headers["content-length"] == "5"


def test_behind_tls_it_adds_hsts_and_leaves_plain_http_to_django(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    downstream = Downstream()
    app = FrontendFiles(downstream)
    name = PREFIX + "js/viewer/main.js"

    assert call(app, name)[0] == 418  # Django redirects it to HTTPS
    status, headers, _ = call(app, name, headers=[("X-Forwarded-Proto", "https")])
    expected = django_answer(name, HTTP_X_FORWARDED_PROTO="https")[1]

    assert status == 200
    assert headers["strict-transport-security"] == "max-age=3600; includeSubDomains"
    assert headers["strict-transport-security"] == expected["strict-transport-security"]
