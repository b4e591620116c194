"""Who is asking: the browser session, HTTP Basic with a user's credentials, or an API
token (Authorization: Bearer). Every DICOMweb and WADO-URI view goes through `endpoint`.

Checking a password costs a deliberate ~0.3 s of hashing, which no viewer loading
hundreds of frames over Basic can pay per request. A checked credential is remembered in
this process for BASIC_CACHE_SECONDS, keyed by a keyed hash of user and password, and
only while the user's stored password hash and active flag are unchanged; so a password
change or deactivation still takes effect at once.
"""

import base64
import binascii
import functools
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, UnreadablePostError
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from backend.accounts import signin
from backend.accounts.models import ApiToken
from backend.accounts.tokens import check_token

from .errors import DicomWebError, error_response

BASIC_CACHE_SECONDS = 300
BASIC_CACHE_SIZE = 1024
READ = str(ApiToken.Scope.READ.value)
WRITE = str(ApiToken.Scope.WRITE.value)
SAFE_METHODS = ("GET", "HEAD")
_basic_cache: OrderedDict[str, tuple[int, str, float]] = OrderedDict()


class Credentials(ValueError):
    """An Authorization header that is present but not acceptable."""


def authenticate_request(request: HttpRequest) -> tuple[Any, ApiToken | None]:
    """(user, token) for the request; (None, None) when it carries no usable identity.
    Raises Credentials when an Authorization header was sent and is wrong."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            token = check_token(value.strip())
            if token is None:
                raise Credentials("the API token is not valid or was revoked")
            return token.user, token
        if scheme.lower() == "basic":
            return _basic_user(request, value.strip()), None
        raise Credentials(f"unsupported authorization scheme {scheme[:20]!r}")
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active:
        return user, None
    return None, None


def _basic_user(request: HttpRequest, value: str):
    try:
        username, colon, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Credentials("cannot read the Basic credentials") from None
    if not colon:
        raise Credentials("cannot read the Basic credentials")
    key = hmac.new(
        settings.SECRET_KEY.encode(), f"{username}\0{password}".encode(), hashlib.sha256
    ).hexdigest()
    cached = _basic_cache.get(key)
    if cached and cached[2] > time.monotonic():
        user = get_user_model().objects.filter(pk=cached[0], is_active=True).first()
        if user is not None and user.password == cached[1]:
            return user
    # The sign-in throttle and lockout apply; users with two-factor need an API token.
    user, problem = signin.password_only(request, username, password, authenticate)
    if user is None or not user.is_active:
        raise Credentials(problem or "wrong username or password")
    _remember(key, user)
    return user


def _remember(key: str, user) -> None:
    _basic_cache[key] = (user.pk, user.password, time.monotonic() + BASIC_CACHE_SECONDS)
    _basic_cache.move_to_end(key)
    while len(_basic_cache) > BASIC_CACHE_SIZE:
        _basic_cache.popitem(last=False)


def _challenge(message: str) -> HttpResponse:
    response = error_response(401, message)
    response["WWW-Authenticate"] = 'Basic realm="Lightbox", charset="UTF-8"'
    return response


def endpoint(methods: tuple[str, ...] = SAFE_METHODS) -> Callable:
    """Check the method, authenticate, check the token's scope (read for GET and HEAD,
    write for POST), and keep CSRF protection for the session: a cookie-authenticated POST
    needs the CSRF token. Basic and Bearer requests need none: a cross-site form cannot
    send the multipart/related body STOW-RS takes. Every error answers in JSON."""

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if request.method not in methods:
                response = error_response(405, f"{request.method} is not allowed here")
                response["Allow"] = ", ".join(methods)
                return response
            scope = READ if request.method in SAFE_METHODS else WRITE
            try:
                user, token = authenticate_request(request)
            except Credentials as exc:
                return _challenge(str(exc))
            if user is None:
                return _challenge("log in, or send HTTP Basic credentials or a Bearer token")
            if token is not None and scope not in token.scopes:
                return error_response(403, f"this API token lacks the '{scope}' scope")
            if token is None and "Authorization" not in request.headers:
                rejected = _csrf_failure(request)
                if rejected is not None:
                    return rejected
            request.user = user
            request.api_token = token  # type: ignore[attr-defined]
            try:
                return view(request, *args, **kwargs)
            except DicomWebError as exc:
                return error_response(exc.status, exc.message)
            except (SuspiciousOperation, UnreadablePostError) as exc:
                # e.g. more query parameters than DATA_UPLOAD_MAX_NUMBER_FIELDS
                return error_response(400, f"the request cannot be read: {exc}")

        return wrapped

    return decorate


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    if request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
        return None
    check = CsrfViewMiddleware(lambda r: HttpResponse())
    check.process_request(request)
    if check.process_view(request, lambda r: HttpResponse(), (), {}) is not None:
        return error_response(403, "CSRF check failed: send the X-CSRFToken header")
    return None
