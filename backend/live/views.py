"""The viewer page. Access to the study is checked on its WebSocket (backend/live/viewer.py),
which tells the page in plain words when the study cannot be shown."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse
from django.views.decorators.http import require_GET


@login_required
@require_GET
def viewer(request, study_instance_uid: str):
    return FileResponse(
        open(settings.BASE_DIR / "frontend" / "viewer.html", "rb"),
        content_type="text/html; charset=utf-8",
    )
