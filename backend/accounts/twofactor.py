"""Two-factor sign-in with time-based one-time passwords (TOTP, RFC 6238): the codes of
authenticator apps. 30-second steps, 6 digits, HMAC-SHA-1 (what every app supports), one
step of clock drift either way, and each code accepted once (Profile.totp_last_step).

Also the middleware that sends users who must use two-factor, and have not set it up,
to the set-up page before anything else.
"""

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.http import HttpResponseRedirect, JsonResponse
from django.utils import timezone

from backend.archive.access import role_of

from .models import Profile

STEP_SECONDS = 30  # RFC 6238 §4.1, X
DIGITS = 6
DRIFT_STEPS = 1  # RFC 6238 §5.2: accept the previous and the next step too
SECRET_BYTES = 20  # 160 bits, RFC 4226 §4 R6
ISSUER = "Lightbox"
ENROL_PATH = "/account/two-factor/"
# Where a user who must still set up two-factor may go.
OPEN_PATHS = (ENROL_PATH, "/logout/", "/static/", "/healthz")
API_PATHS = ("/api/", "/dicomweb/", "/wado")
METHOD_KEY = "lightbox_auth_method"  # in the session: how its user signed in
SSO = "oidc"


# --- TOTP (RFC 4226 HOTP over RFC 6238 time steps); no Django below this line -----------


def new_secret() -> str:
    """A random shared secret, base32 without padding (as authenticator apps take it)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def hotp(key: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226 §5.3: HMAC-SHA-1 of the 8-byte counter, dynamically truncated."""
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def time_step(at: float) -> int:
    return int(at // STEP_SECONDS)


def code_at(secret: str, at: float) -> str:
    return hotp(_key(secret), time_step(at))


def matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step whose code `code` is (within the allowed drift), or None."""
    code = code.strip().replace(" ", "")
    if not secret or len(code) != DIGITS or not (code.isascii() and code.isdigit()):
        return None
    now, key = time_step(time.time() if at is None else at), _key(secret)
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(hotp(key, step), code):
            return step
    return None


def _key(secret: str) -> bytes:
    return base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))


def provisioning_uri(username: str, secret: str) -> str:
    """The otpauth:// URI authenticator apps read from the QR code (Key Uri Format)."""
    label = f"{quote(ISSUER)}:{quote(username, safe='')}"
    query = urlencode(
        {
            "secret": secret,
            "issuer": ISSUER,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP_SECONDS,
        }
    )
    return f"otpauth://totp/{label}?{query}"


def qr_svg(data: str) -> str:
    """`data` as a QR code in SVG (paths only, no script or style: fine under a strict CSP)."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    return image.to_string(encoding="unicode")


# --- Accounts --------------------------------------------------------------------------


def profile_of(user) -> Profile:
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def is_enabled(user) -> bool:
    return Profile.objects.filter(
        user=user, totp_confirmed_at__isnull=False, totp_secret__gt=""
    ).exists()


def is_required(user) -> bool:
    """Must this user sign in with a code? (Profile.require_two_factor, or their role is
    listed in LIGHTBOX_REQUIRE_2FA_ROLES.)"""
    if Profile.objects.filter(user=user, require_two_factor=True).exists():
        return True
    return role_of(user) in settings.LIGHTBOX_REQUIRE_2FA_ROLES


def applies_to(user) -> bool:
    """Is a password alone not enough for this user?"""
    return is_enabled(user) or is_required(user)


def pending_secret(user) -> str:
    """The secret being set up: made once, kept until confirmed or replaced."""
    profile = profile_of(user)
    if not profile.totp_secret or profile.totp_confirmed_at is not None:
        profile.totp_secret = new_secret()
        profile.totp_confirmed_at = None
        profile.save(update_fields=["totp_secret", "totp_confirmed_at"])
    return profile.totp_secret


def verify(user, code: str) -> bool:
    """Is `code` a current code of the user's confirmed secret, not used before? A code is
    used up by this call: the conditional update lets only one of two racing requests in."""
    profile = Profile.objects.filter(user=user, totp_confirmed_at__isnull=False).first()
    step = matching_step(profile.totp_secret, code) if profile else None
    if profile is None or step is None:
        return False
    used = Profile.objects.filter(pk=profile.pk, totp_last_step__lt=step)
    return used.update(totp_last_step=step) == 1


def confirm(user, code: str) -> bool:
    """Turn two-factor on if `code` is a current code of the pending secret."""
    profile = profile_of(user)
    if profile.totp_confirmed_at is not None:
        return False
    step = matching_step(profile.totp_secret, code)
    pending = Profile.objects.filter(pk=profile.pk, totp_confirmed_at__isnull=True)
    return step is not None and (
        pending.update(totp_confirmed_at=timezone.now(), totp_last_step=step) == 1
    )


def disable(user, code: str) -> bool:
    """Turn two-factor off, proven by a current code."""
    if not verify(user, code):
        return False
    Profile.objects.filter(user=user).update(totp_secret="", totp_confirmed_at=None)
    return True


class TwoFactorEnrolmentMiddleware:
    """A signed-in user who must use two-factor but has not set it up reaches only the
    set-up page (API paths answer 403). Single sign-on sessions are exempt: the identity
    provider's own MFA applies to them. Goes after SessionLifetimeMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if self._must_enrol(request):
            if request.path.startswith(API_PATHS):
                return JsonResponse({"error": "set up two-factor sign-in first"}, status=403)
            return HttpResponseRedirect(ENROL_PATH)
        return self.get_response(request)

    def _must_enrol(self, request) -> bool:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or request.path.startswith(OPEN_PATHS):
            return False
        if "Authorization" in request.headers or request.session.get(METHOD_KEY) == SSO:
            return False  # DICOMweb credentials are checked (and refused) on their own
        return is_required(user) and not is_enabled(user)
