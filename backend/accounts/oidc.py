"""OpenID Connect single sign-on (Keycloak, Entra ID, ...): the authorization code flow
(OIDC Core 1.0 §3.1) with PKCE (RFC 7636, S256), the provider found by discovery (OIDC
Discovery 1.0 §4), the ID token checked as §3.1.3.7 says: signature with the provider's
JWKS, iss, aud (and azp), exp and iat, and the nonce we sent.

Off unless LIGHTBOX_OIDC_ISSUER and LIGHTBOX_OIDC_CLIENT_ID are set. A person is known by
(issuer, subject), kept in ExternalIdentity; see deploy/.env.example for the options.
"""

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from .models import ExternalIdentity, Profile, Role

HTTP_TIMEOUT = 10
DISCOVERY_SECONDS = 3600  # the provider's configuration is fetched again after this
FLOW_SECONDS = 600  # a sign-in must come back from the provider within this
LEEWAY_SECONDS = 60  # clock skew allowed on exp and iat
# Asymmetric signatures only: never "none", nor HMAC keyed with the client secret.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
ROLE_ORDER = (Role.ADMIN, Role.RADIOLOGIST, Role.REFERRING, Role.UPLOADER)  # highest first
FLOW_KEY = "lightbox_oidc_flow"


class OidcError(Exception):
    """A sign-in that cannot be accepted; the message goes to the audit log."""


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    token_auth_methods: tuple[str, ...]


_providers: dict[str, tuple[Provider, float]] = {}
_jwks_clients: dict[str, jwt.PyJWKClient] = {}


def enabled() -> bool:
    return bool(settings.LIGHTBOX_OIDC_ISSUER and settings.LIGHTBOX_OIDC_CLIENT_ID)


def provider() -> Provider:
    """The configured provider, from its discovery document (cached for an hour)."""
    issuer = settings.LIGHTBOX_OIDC_ISSUER
    cached = _providers.get(issuer)
    if cached and cached[1] > time.monotonic():
        return cached[0]
    found = _discover(issuer)
    _providers[issuer] = (found, time.monotonic() + DISCOVERY_SECONDS)
    return found


def _discover(issuer: str) -> Provider:
    document = _fetch_json(f"{issuer}/.well-known/openid-configuration")
    if document.get("issuer") != issuer:  # Discovery §4.3: must be identical
        raise OidcError(f"the provider calls itself {document.get('issuer')!r}, not {issuer!r}")
    offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    algorithms = tuple(a for a in offered if a in ALGORITHMS)
    if not algorithms:
        raise OidcError(f"no acceptable ID token signature algorithm in {offered!r}")
    try:
        return Provider(
            issuer=issuer,
            authorization_endpoint=_checked_url(document["authorization_endpoint"]),
            token_endpoint=_checked_url(document["token_endpoint"]),
            jwks_uri=_checked_url(document["jwks_uri"]),
            algorithms=algorithms,
            token_auth_methods=tuple(methods),
        )
    except KeyError as exc:
        raise OidcError(f"the discovery document lacks {exc}") from None


def start(request, next_url: str) -> str:
    """Begin a sign-in: remember state, nonce and PKCE verifier in the session, and return
    the provider's authorization URL to send the browser to."""
    found = provider()
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # RFC 7636 §4.1: 43 to 128 characters
    request.session[FLOW_KEY] = {
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "next": next_url,
        "at": time.time(),
    }
    query = {
        "response_type": "code",
        "client_id": settings.LIGHTBOX_OIDC_CLIENT_ID,
        "redirect_uri": redirect_uri(request),
        "scope": settings.LIGHTBOX_OIDC_SCOPES,
        "state": state,
        "nonce": nonce,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in found.authorization_endpoint else "?"
    return found.authorization_endpoint + separator + urllib.parse.urlencode(query)


def redirect_uri(request) -> str:
    return request.build_absolute_uri(reverse("oidc-callback"))


def finish(request) -> tuple[Any, str]:
    """Complete a sign-in from the provider's redirect: (user, next URL). The flow state is
    used once. Raises OidcError."""
    flow = request.session.pop(FLOW_KEY, None)
    if not flow or time.time() - flow["at"] > FLOW_SECONDS:
        raise OidcError("no sign-in was started here, or it took too long")
    if not hmac.compare_digest(request.GET.get("state", ""), flow["state"]):
        raise OidcError("the state does not match")
    if "error" in request.GET:
        raise OidcError(f"the provider answered {request.GET['error'][:100]!r}")
    code = request.GET.get("code", "")
    if not code:
        raise OidcError("the provider sent no code")
    tokens = _exchange(provider(), code, flow["verifier"], redirect_uri(request))
    claims = validate_id_token(provider(), tokens.get("id_token", ""), flow["nonce"])
    return user_for(claims), flow["next"]


def _exchange(found: Provider, code: str, verifier: str, redirect: str) -> dict:
    """The token request (OIDC Core §3.1.3.1), authenticated as the provider prefers."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect,
        "code_verifier": verifier,
        "client_id": settings.LIGHTBOX_OIDC_CLIENT_ID,
    }
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    secret = settings.LIGHTBOX_OIDC_CLIENT_SECRET
    if secret and "client_secret_basic" in found.token_auth_methods:
        pair = f"{_quote(settings.LIGHTBOX_OIDC_CLIENT_ID)}:{_quote(secret)}"  # RFC 6749 §2.3.1
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    elif secret:
        form["client_secret"] = secret
    return _fetch_json(found.token_endpoint, urllib.parse.urlencode(form).encode(), headers)


def validate_id_token(found: Provider, token: str, nonce: str) -> dict:
    """The ID token's claims, once its signature, issuer, audience, times and nonce check."""
    client_id = settings.LIGHTBOX_OIDC_CLIENT_ID
    try:
        key = _jwks_client(found.jwks_uri).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=list(found.algorithms),
            audience=client_id,
            issuer=found.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
    except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
        raise OidcError(f"the ID token is not acceptable: {exc}") from None
    if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
        raise OidcError("the ID token's nonce does not match")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:  # OIDC Core §3.1.3.7 (4, 5)
        raise OidcError("the ID token was issued to another party (azp)")
    return claims


def user_for(claims: dict):
    """The user these verified claims sign in: linked before, or linked or made now. With
    LIGHTBOX_OIDC_ROLE_CLAIM set, their role comes from the claims at every sign-in."""
    role = role_from(claims)
    with transaction.atomic():
        identity = (
            ExternalIdentity.objects.select_for_update()
            .select_related("user")
            .filter(issuer=claims["iss"], subject=str(claims["sub"]))
            .first()
        )
        user = identity.user if identity else _first_sign_in(claims)
        if not user.is_active:
            raise OidcError(f"the user {user.username!r} is deactivated")
        ExternalIdentity.objects.filter(user=user, issuer=claims["iss"]).update(
            last_login_at=timezone.now()
        )
        if role is not None:
            Profile.objects.update_or_create(user=user, defaults={"role": role})
    return user


def _first_sign_in(claims: dict):
    username = str(
        claims.get(settings.LIGHTBOX_OIDC_USERNAME_CLAIM) or claims.get("email") or claims["sub"]
    )[:150]
    model = get_user_model()
    user = model.objects.filter(username=username).first()
    if user is not None and not settings.LIGHTBOX_OIDC_LINK_EXISTING:
        raise OidcError(f"a local user is already named {username!r}; an admin must link it")
    if user is None and not settings.LIGHTBOX_OIDC_CREATE_USERS:
        raise OidcError(f"no Lightbox user for {username!r}")
    if user is None:
        user = model.objects.create_user(
            username,
            email=str(claims.get("email", ""))[:254],
            first_name=str(claims.get("given_name", ""))[:150],
            last_name=str(claims.get("family_name", ""))[:150],
        )  # no password: this user signs in at the provider
    ExternalIdentity.objects.create(user=user, issuer=claims["iss"], subject=str(claims["sub"]))
    return user


def role_from(claims: dict) -> str | None:
    """The highest Lightbox role the role claim grants; None when no role claim is
    configured. Raises OidcError when it is configured and grants none."""
    path = settings.LIGHTBOX_OIDC_ROLE_CLAIM
    if not path:
        return None
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    granted = {value} if isinstance(value, str) else set(value or [])
    mapping = dict(pair.split("=", 1) for pair in settings.LIGHTBOX_OIDC_ROLE_MAP if "=" in pair)
    roles = {mapping.get(str(v), str(v)) for v in granted}
    for role in ROLE_ORDER:
        if role in roles:
            return role
    raise OidcError(f"the {path!r} claim grants no Lightbox role")


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()  # RFC 7636 §4.2, S256
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _jwks_client(uri: str) -> jwt.PyJWKClient:
    # One per key set URI: it caches the keys, and fetches them again for an unknown kid
    # (the provider rolled its keys).
    if uri not in _jwks_clients:
        _jwks_clients[uri] = jwt.PyJWKClient(uri, cache_keys=True, timeout=HTTP_TIMEOUT)
    return _jwks_clients[uri]


def _checked_url(url: str) -> str:
    """https only (http for a provider on this machine, as in tests): urllib would open
    file: and other schemes too."""
    parts = urllib.parse.urlsplit(str(url))
    if parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname)):
        return str(url)
    raise OidcError(f"refusing the provider URL {url!r}: https is required")


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _fetch_json(url: str, data: bytes | None = None, headers: dict | None = None) -> dict:
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked just below
        _checked_url(url), data=data, headers={"Accept": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            body = json.loads(response.read(1 << 20))
    except urllib.error.HTTPError as exc:
        raise OidcError(f"{url} answered {exc.code}: {exc.read(500)!r}") from None
    except (OSError, ValueError) as exc:
        raise OidcError(f"cannot read {url}: {exc}") from None
    if not isinstance(body, dict):
        raise OidcError(f"{url} did not answer a JSON object")
    return body
