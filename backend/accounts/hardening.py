"""Browser hardening: the Content-Security-Policy and the other security headers on every
response, and the Django admin site kept to administrators.

The policy allows no inline script or style and no plugin, frames nothing and is framed by
nothing: DICOM-derived strings that ever reached the page as markup could run nothing.
Django's admin (5.2) needs no exception: its scripts are files and their settings data-*
attributes, and it sets styles through the CSSOM, which style-src does not govern.

Django's SecurityMiddleware sends nosniff, Referrer-Policy, Cross-Origin-Opener-Policy and,
behind TLS, HSTS; XFrameOptionsMiddleware sends X-Frame-Options (settings.py).
"""

import logging
import re

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self' ws: wss:",
        "font-src 'self'",
        "worker-src 'self' blob:",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    """Adds the Content-Security-Policy and Permissions-Policy to responses that have none
    of their own (a view that needs another policy sets it itself)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response


class MaskDicomValues(logging.Filter):
    """Masks the quoted values in what pydicom and pynetdicom log (directly or through
    warnings): "Invalid value for VR PN: 'DOE^JANE'" becomes "...: '…'". They quote the
    element values they complain about, and those can be a patient's name or birth date.
    Attached to the log handler (settings.LOGGING), so it sees every process's records."""

    SOURCES = ("pydicom", "pynetdicom", "py.warnings")
    QUOTED = re.compile(r"b?'(?:[^'\\]|\\.)*'" "|" r'b?"(?:[^"\\]|\\.)*"')

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(self.SOURCES):
            record.msg = self.QUOTED.sub("'…'", record.getMessage())
            record.args = ()
        return True


class LightboxAdminSite(AdminSite):
    """Django's admin for administrators only (accounts.Role.ADMIN, or a superuser), and
    staff among them: it lists every study, node and audit row, whatever the access rules.
    A staff user of another role is shown the admin's own login page, as for no permission."""

    site_header = "Lightbox administration"
    site_title = "Lightbox"

    def has_permission(self, request) -> bool:
        from backend.archive.access import is_admin

        return super().has_permission(request) and is_admin(request.user)


class LightboxAdminConfig(AdminConfig):
    """Replaces django.contrib.admin in INSTALLED_APPS so that admin.site is the site above."""

    default_site = "backend.accounts.hardening.LightboxAdminSite"
