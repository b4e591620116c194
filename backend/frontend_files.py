"""The pages' own files (frontend/ at /static/app/) answered before Django.

Opening the viewer asks for a dozen small modules and style sheets at once. Through
Django each one took a thread hop and the whole middleware stack (~1.5 ms of the one
process's time, under the GIL that the viewer's socket also needs); here it is a
dictionary look-up. The answer is the one WhiteNoise gives through Django (same
Content-Type, Cache-Control, ETag, Last-Modified, CORS header) with the security headers
Django's middleware adds to it (Content-Security-Policy, nosniff, Referrer-Policy, COOP,
Permissions-Policy, HSTS behind TLS): tests/test_frontend_files.py compares the two.

Files are read when first asked for and read again when their size or modification time
changes, so an edited file is served at once. Anything else, any other method, a file
that is not there, and a plain-HTTP request that must be redirected to HTTPS go on to
Django unchanged.
"""

import mimetypes
import os
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from django.conf import settings

from backend.accounts.hardening import CONTENT_SECURITY_POLICY, PERMISSIONS_POLICY

PREFIX = "/static/app/"
MAX_AGE = 60  # seconds, as WhiteNoise (not versioned file names: a short cache)
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}


@dataclass(frozen=True)
class _File:
    stamp: tuple[int, int]  # (size, mtime in ns): read again when either changes
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    not_modified_headers: tuple[tuple[bytes, bytes], ...]
    etag: bytes


class FrontendFiles:
    """ASGI middleware: GET and HEAD of /static/app/<file> from `root`, the rest to `app`."""

    def __init__(self, app, root: Path | None = None) -> None:
        self.app = app
        self.root = (root or Path(settings.BASE_DIR) / "frontend").resolve()
        self.files: dict[str, _File] = {}

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not scope["path"].startswith(PREFIX)
        ):
            return await self.app(scope, receive, send)
        secure = _secure(scope)
        if settings.SECURE_SSL_REDIRECT and not secure:
            return await self.app(scope, receive, send)  # Django redirects it
        if _header(scope, b"range") or (
            _header(scope, b"if-modified-since") and not _header(scope, b"if-none-match")
        ):
            return await self.app(scope, receive, send)  # rare: WhiteNoise answers those
        found = self._file(scope["path"][len(PREFIX) :])
        if found is None:
            return await self.app(scope, receive, send)
        extra = [(b"strict-transport-security", _hsts())] if secure and _hsts() else []
        if _header(scope, b"if-none-match") == found.etag:
            headers = [*found.not_modified_headers, *extra]
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            return await send({"type": "http.response.body", "body": b""})
        headers = [*found.headers, *extra]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = b"" if scope["method"] == "HEAD" else found.body
        await send({"type": "http.response.body", "body": body})

    def _file(self, name: str) -> _File | None:
        if not name or "\\" in name or "\0" in name or name.startswith("/"):
            return None
        path = self.root / name
        try:
            stat = path.stat()
        except (OSError, ValueError):
            return None
        stamp = (stat.st_size, stat.st_mtime_ns)
        cached = self.files.get(name)
        if cached is not None and cached.stamp == stamp:
            return cached
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            return None
        try:
            body = resolved.read_bytes()
        except OSError:
            return None
        loaded = _load(name, stamp, body, stat.st_mtime)
        self.files[name] = loaded
        return loaded


def _load(name: str, stamp: tuple[int, int], body: bytes, mtime: float) -> _File:
    suffix = os.path.splitext(name)[1].lower()
    content_type = TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type in ("application/javascript",):
        content_type += '; charset="utf-8"'
    etag = f'"{int(mtime):x}-{len(body):x}"'.encode()
    cache = ((b"cache-control", f"max-age={MAX_AGE}, public".encode()), (b"etag", etag))
    security = (  # what Django's middleware adds to WhiteNoise's answer (settings.MIDDLEWARE)
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"permissions-policy", PERMISSIONS_POLICY.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", settings.SECURE_REFERRER_POLICY.encode()),
        (b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()),
    )
    headers = (
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *cache,
        (b"access-control-allow-origin", b"*"),
        (b"last-modified", formatdate(mtime, usegmt=True).encode()),
        *security,
    )
    return _File(stamp, body, headers, cache + security, etag)


def _header(scope, name: bytes) -> bytes:
    return next((value for key, value in scope.get("headers", []) if key == name), b"")


def _secure(scope) -> bool:
    if scope.get("scheme") == "https":
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not proxy:
        return False
    header, value = proxy
    name = header.removeprefix("HTTP_").lower().replace("_", "-").encode()
    return _header(scope, name).split(b",")[0].strip() == value.encode()


def _hsts() -> bytes:
    if not settings.SECURE_HSTS_SECONDS:
        return b""
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value.encode()
