"""The viewer page. Access to the study is checked on its WebSocket (backend/live/viewer.py),
which tells the page in plain words when the study cannot be shown."""

import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods

from . import annotations, tags


@login_required
@require_GET
def viewer(request, study_instance_uid: str):
    return FileResponse(
        open(settings.BASE_DIR / "frontend" / "viewer.html", "rb"),
        content_type="text/html; charset=utf-8",
    )


def _refused(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@require_http_methods(["GET", "POST"])
def study_annotations(request, study_instance_uid: str):
    """GET the user's annotations on a study, POST a new one (JSON)."""
    if not request.user.is_authenticated:
        return _refused("sign in", 401)
    study = annotations.visible_study(request.user, study_instance_uid)
    if study is None:
        return _refused("no such study", 404)
    if request.method == "GET":
        return JsonResponse({"annotations": annotations.for_study(request.user, study)})
    try:
        data = json.loads(request.body or b"null")
        created = annotations.create(request.user, study, data)
    except (ValueError, annotations.AnnotationError) as exc:
        return _refused(
            str(exc) if isinstance(exc, annotations.AnnotationError) else "send JSON", 400
        )
    return JsonResponse(annotations.as_json(created), status=201)


@require_http_methods(["DELETE"])
def annotation(request, annotation_id: int):
    if not request.user.is_authenticated:
        return _refused("sign in", 401)
    if not annotations.delete(request.user, annotation_id):
        return _refused("no such annotation", 404)
    return HttpResponse(status=204)


@require_GET
def instance_tags(request, study_instance_uid: str, sop_instance_uid: str):
    """The tag browser's rows for one instance of a study the user may see."""
    if not request.user.is_authenticated:
        return _refused("sign in", 401)
    instance = tags.instance_for(request.user, study_instance_uid, sop_instance_uid)
    if instance is None:
        return _refused("no such instance", 404)
    return JsonResponse({"tags": tags.rows(instance)})
