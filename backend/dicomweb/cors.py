"""CORS for /dicomweb and /wado, off unless LIGHTBOX_CORS_ALLOWED_ORIGINS names origins.

External viewers (OHIF and others served from their own origin) send their requests with
an Authorization header, so credentials (cookies) are never allowed cross-origin: a page
elsewhere cannot ride on a logged-in user's session.
"""

from django.conf import settings
from django.http import HttpResponse

PATHS = ("/dicomweb/", "/dicomweb", "/wado")
ALLOWED_HEADERS = "Authorization, Accept, Content-Type, Accept-Encoding"
EXPOSED_HEADERS = "Warning, Content-Location, Content-Type, Content-Length"
METHODS = "GET, POST, OPTIONS"


class CorsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        origin = request.headers.get("Origin")
        allowed = (
            origin is not None
            and request.path.startswith(PATHS)
            and origin in settings.LIGHTBOX_CORS_ALLOWED_ORIGINS
        )
        if (
            allowed
            and request.method == "OPTIONS"
            and "Access-Control-Request-Method" in (request.headers)
        ):
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = METHODS
            response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response["Access-Control-Max-Age"] = "600"
        else:
            response = self.get_response(request)
        if allowed:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            response["Vary"] = ", ".join(filter(None, [response.get("Vary", ""), "Origin"]))
        return response
