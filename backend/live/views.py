"""The viewer page. Access to the study is checked on its WebSocket (backend/live/viewer.py),
which tells the page in plain words when the study cannot be shown."""

import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods

from backend.accounts import audit
from backend.archive.access import is_admin, role_of

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
    study = instance.series.study
    audit.record_once(
        (request.user.pk, study.pk, "tags"),
        "web.retrieve",
        user=request.user,
        peer_address=request.META.get("REMOTE_ADDR", ""),
        study_instance_uid=study.study_instance_uid,
        patient_id=study.patient.patient_id,
        detail={"resource": "tags", "sop_instance_uid": sop_instance_uid},
    )
    return JsonResponse({"tags": tags.rows(instance)})


@require_GET
def me(request):
    """Who is signed in and what the pages may offer them."""
    if not request.user.is_authenticated:
        return _refused("sign in", 401)
    return JsonResponse(
        {
            "username": request.user.get_username(),
            "role": role_of(request.user),
            "is_admin": is_admin(request.user),
        }
    )
