"""OpenID Connect single sign-on against a small fake provider run by the test: discovery,
JWKS and a token endpoint that checks PKCE and client authentication, and signs ID tokens
with RS256. No external network."""

import base64
import functools
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import User

from backend.accounts import oidc
from backend.accounts.models import AuditEvent, ExternalIdentity, Profile

pytestmark = pytest.mark.django_db
CLIENT_ID = "lightbox"
CLIENT_SECRET = "s3cret:with/odd+chars"


@functools.cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeProvider:
    """An OpenID provider on 127.0.0.1: `authorize()` stands in for the user's visit to
    its login page, the rest is served over HTTP as a real provider would."""

    def __init__(self):
        self.key = rsa_key("provider")
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        self.claims: dict = {}  # added to (or, with None values, removed from) ID tokens
        self.sign_with = self.key
        self.algorithm = "RS256"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}/realms/test"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/auth",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/certs",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def jwks(self) -> dict:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]}

    def authorize(self, url: str, sub: str = "sub-alice", **claims) -> dict:
        """The user signed in at the provider: the query it redirects back with."""
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"query": query, "claims": {"sub": sub, **claims}}
        return {"code": code, "state": query["state"]}

    def id_token(self, grant: dict) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["query"]["nonce"],
            "preferred_username": "alice",
            "email": "alice@example.org",
            **grant["claims"],
            **self.claims,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.sign_with, self.algorithm, headers={"kid": "k1"})

    def token(self, form: dict, authorization: str) -> tuple[int, dict]:
        self.token_requests.append(form | {"authorization": authorization})
        grant = self.codes.pop(form.get("code", ""), None)
        expected = (
            "Basic "
            + base64.b64encode(
                f"{urllib.parse.quote(CLIENT_ID, safe='')}:"
                f"{urllib.parse.quote(CLIENT_SECRET, safe='')}".encode()
            ).decode()
        )
        if grant is None or authorization != expected:
            return 400, {"error": "invalid_grant"}
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        ).rstrip(b"=")
        if challenge.decode() != grant["query"]["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        if form.get("redirect_uri") != grant["query"]["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri"}
        return 200, {"access_token": "at", "token_type": "Bearer", "id_token": self.id_token(grant)}

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                if path.endswith("/.well-known/openid-configuration"):
                    self._answer(200, provider.discovery())
                elif path.endswith("/certs"):
                    self._answer(200, provider.jwks())
                else:
                    self._answer(404, {})

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                form = dict(urllib.parse.parse_qsl(body))
                self._answer(*provider.token(form, self.headers.get("Authorization", "")))

            def _answer(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def provider(settings):
    fake = FakeProvider()
    settings.LIGHTBOX_OIDC_ISSUER = fake.issuer
    settings.LIGHTBOX_OIDC_CLIENT_ID = CLIENT_ID
    settings.LIGHTBOX_OIDC_CLIENT_SECRET = CLIENT_SECRET
    settings.LIGHTBOX_OIDC_NAME = "Hospital SSO"
    settings.LIGHTBOX_OIDC_ROLE_CLAIM = ""
    settings.LIGHTBOX_OIDC_ROLE_MAP = []
    settings.LIGHTBOX_OIDC_CREATE_USERS = True
    settings.LIGHTBOX_OIDC_LINK_EXISTING = False
    settings.LIGHTBOX_REQUIRE_2FA_ROLES = ["admin", "radiologist"]
    oidc._providers.clear()
    oidc._jwks_clients.clear()
    yield fake
    fake.close()
    oidc._providers.clear()
    oidc._jwks_clients.clear()


def sso(client, provider, next_url="/nodes/", **claims):
    """Start at Lightbox, 'sign in' at the provider, come back: the callback's answer."""
    start = client.get(f"/login/sso/?next={urllib.parse.quote(next_url)}")
    assert start.status_code == 302, start.content
    back = provider.authorize(start["Location"], **claims)
    return client.get("/login/sso/callback/", back)


def signed_in(client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).username if user_id else None


def failure_reason() -> str:
    return AuditEvent.objects.filter(event_type="auth.login_failed").get().detail["reason"]


def test_it_shows_the_button_only_when_configured(client, provider, settings):
    assert "Sign in with Hospital SSO" in client.get("/login/").content.decode()
    settings.LIGHTBOX_OIDC_ISSUER = ""
    assert "Sign in with" not in client.get("/login/").content.decode()
    assert client.get("/login/sso/").status_code == 404
    assert client.get("/login/sso/callback/").status_code == 404


def test_it_sends_the_browser_to_the_provider_with_pkce_state_and_nonce(client, provider):
    response = client.get("/login/sso/")
    url = urllib.parse.urlsplit(response["Location"])
    query = dict(urllib.parse.parse_qsl(url.query))
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{provider.issuer}/auth"
    assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == "http://testserver/login/sso/callback/"
    assert query["scope"] == "openid profile email"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43 and len(query["nonce"]) >= 43


def test_it_signs_in_a_new_user(client, provider):
    response = sso(client, provider, given_name="Alice", family_name="Liddell")

    assert (response.status_code, response["Location"]) == (302, "/nodes/")
    assert signed_in(client) == "alice"
    user = User.objects.get(username="alice")
    assert (user.email, user.first_name, user.has_usable_password()) == (
        "alice@example.org",
        "Alice",
        False,
    )
    identity = ExternalIdentity.objects.get()
    assert (identity.user, identity.issuer, identity.subject) == (
        user,
        provider.issuer,
        "sub-alice",
    )
    [login] = AuditEvent.objects.filter(event_type="auth.login")
    assert (login.user, login.detail) == (user, {"method": "oidc"})
    # PKCE verifier and client authentication reached the token endpoint
    [request] = provider.token_requests
    assert request["code_verifier"] and request["authorization"].startswith("Basic ")
    # the identity provider's MFA stands in for Lightbox's two-factor step
    assert client.get("/api/studies").status_code == 200


def test_it_finds_the_same_user_by_subject_even_if_the_name_changed(client, provider):
    sso(client, provider)
    client.logout()
    sso(client, provider, preferred_username="alice.liddell")
    assert signed_in(client) == "alice"
    assert User.objects.count() == 1


def test_it_does_not_take_over_a_local_user_with_the_same_name(client, provider):
    User.objects.create_user("alice", password="violet-harbour-lantern-42")
    response = sso(client, provider)
    assert response.status_code == 400
    assert signed_in(client) is None
    assert "already named" in failure_reason()


def test_it_links_a_local_user_when_told_to(client, provider, settings):
    settings.LIGHTBOX_OIDC_LINK_EXISTING = True
    local = User.objects.create_user("alice", password="violet-harbour-lantern-42")
    sso(client, provider)
    assert signed_in(client) == "alice"
    assert ExternalIdentity.objects.get().user == local


def test_it_refuses_unknown_people_when_users_are_not_created(client, provider, settings):
    settings.LIGHTBOX_OIDC_CREATE_USERS = False
    sso(client, provider)
    assert signed_in(client) is None
    assert not User.objects.exists()


def test_it_refuses_a_deactivated_user(client, provider):
    sso(client, provider)
    client.logout()
    User.objects.update(is_active=False)
    sso(client, provider)
    assert signed_in(client) is None


def test_it_takes_the_role_from_a_claim(client, provider, settings):
    settings.LIGHTBOX_OIDC_ROLE_CLAIM = "realm_access.roles"
    settings.LIGHTBOX_OIDC_ROLE_MAP = ["pacs-admins=admin", "pacs-readers=radiologist"]
    sso(client, provider, realm_access={"roles": ["offline_access", "pacs-readers"]})
    assert Profile.objects.get(user__username="alice").role == "radiologist"
    client.logout()
    sso(client, provider, realm_access={"roles": ["pacs-readers", "pacs-admins"]})
    assert Profile.objects.get(user__username="alice").role == "admin"


def test_it_refuses_a_user_without_a_lightbox_role(client, provider, settings):
    settings.LIGHTBOX_OIDC_ROLE_CLAIM = "roles"
    sso(client, provider, roles=["nurse"])
    assert signed_in(client) is None
    assert "grants no Lightbox role" in failure_reason()
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"nonce": "another"}, "nonce"),
        ({"aud": "another-client"}, "Audience"),
        ({"iss": "http://127.0.0.1:1/elsewhere"}, "issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"exp": None}, "exp"),
        ({"aud": [CLIENT_ID, "other"], "azp": "other"}, "azp"),
    ],
)
def test_it_refuses_an_id_token_that_does_not_check(client, provider, claims, reason):
    provider.claims = claims
    response = sso(client, provider)
    assert response.status_code == 400
    assert signed_in(client) is None
    assert reason in failure_reason()


def test_it_refuses_an_id_token_signed_with_another_key(client, provider):
    provider.sign_with = rsa_key("another")
    sso(client, provider)
    assert signed_in(client) is None
    assert "Signature verification failed" in failure_reason()


def test_it_refuses_an_unsigned_or_hmac_id_token(client, provider):
    provider.sign_with, provider.algorithm = CLIENT_SECRET * 2, "HS256"
    sso(client, provider)
    assert signed_in(client) is None


def test_it_refuses_a_callback_with_another_state(client, provider):
    start = client.get("/login/sso/")
    back = provider.authorize(start["Location"])
    back["state"] = "forged"
    assert client.get("/login/sso/callback/", back).status_code == 400
    assert signed_in(client) is None
    assert not provider.token_requests  # the code was never used


def test_it_uses_a_callback_once(client, provider):
    start = client.get("/login/sso/")
    back = provider.authorize(start["Location"])
    client.get("/login/sso/callback/", back)
    client.logout()
    assert client.get("/login/sso/callback/", back).status_code == 400
    assert signed_in(client) is None


def test_it_refuses_a_callback_that_was_never_started(client, provider):
    assert client.get("/login/sso/callback/", {"code": "x", "state": "y"}).status_code == 400


def test_it_reports_an_error_from_the_provider(client, provider):
    start = client.get("/login/sso/")
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start["Location"]).query))["state"]
    response = client.get("/login/sso/callback/", {"error": "access_denied", "state": state})
    assert response.status_code == 400
    assert "access_denied" in failure_reason()


def test_it_refuses_a_provider_that_names_another_issuer(client, provider, settings):
    settings.LIGHTBOX_OIDC_ISSUER = provider.issuer + "-other"
    response = client.get("/login/sso/")
    assert response.status_code == 503
    assert "not reachable" in response.content.decode()


def test_it_keeps_next_local(client, provider):
    response = sso(client, provider, next_url="https://evil.example.org/")
    assert response["Location"] == "/"


def test_it_refuses_provider_urls_that_are_not_https():
    with pytest.raises(oidc.OidcError, match="https"):
        oidc._checked_url("http://sso.example.org/token")
    with pytest.raises(oidc.OidcError):
        oidc._checked_url("file:///etc/passwd")
    assert oidc._checked_url("https://sso.example.org/token")
    assert oidc._checked_url("http://[::1]:8080/token")
