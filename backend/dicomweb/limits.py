"""Refuse an oversized upload before it fills the disk.

Django's ASGI handler reads a whole request body into a temporary file before any view
runs, so a view cannot stop a huge STOW-RS body in time. This ASGI wrapper answers 413 as
soon as the declared or received length passes LIGHTBOX_STOW_MAX_BYTES (worklist uploads:
LIGHTBOX_UPLOAD_MAX_BYTES).
"""

import json

from django.conf import settings

LIMITED_PREFIXES = {
    "/dicomweb/": "LIGHTBOX_STOW_MAX_BYTES",
    "/api/upload": "LIGHTBOX_UPLOAD_MAX_BYTES",
}


class BodyLimit:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        setting = _limit_for(scope)
        if setting is None:
            return await self.app(scope, receive, send)
        limit = getattr(settings, setting)
        if _declared_length(scope) > limit:
            return await _too_large(send, limit)
        state = {"received": 0, "exceeded": False, "started": False}

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["exceeded"] = True
                    return {"type": "http.disconnect"}  # Django stops reading and gives up
            return message

        async def watched_send(message):
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, watched_send)
        if state["exceeded"] and not state["started"]:
            await _too_large(send, limit)


def _limit_for(scope) -> str | None:
    if scope["type"] != "http":
        return None
    return next((s for p, s in LIMITED_PREFIXES.items() if scope["path"].startswith(p)), None)


def _declared_length(scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"error": f"the request body is larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
