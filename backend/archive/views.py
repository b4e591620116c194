"""HTTP views of the archive: thin — parse, authorize, call, answer."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import FileResponse, Http404, HttpResponse, JsonResponse, UnreadablePostError
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from backend.accounts import audit

from . import upload as uploads
from . import worklist
from .access import visible_series
from .storage import StorageError, get_storage


@require_GET
def healthz(request):
    """Liveness: the process answers and the database is reachable. No auth, no data."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok\n", content_type="text/plain")


@login_required
@require_GET
@ensure_csrf_cookie  # uploads are POSTs from the page
def worklist_page(request):
    return FileResponse(
        open(settings.BASE_DIR / "frontend" / "index.html", "rb"),
        content_type="text/html; charset=utf-8",
    )


@login_required
@require_GET
def study_list(request):
    """One page of the worklist: the studies the user may see that match the search
    (backend/archive/worklist.py for the fields), with the number that match in all, or
    worklist.COUNT_LIMIT and total_exact false when there are more."""
    try:
        search = worklist.parse(request.GET)
    except worklist.SearchError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    found = worklist.page(request.user, search)
    return JsonResponse(
        {
            "studies": found.rows,
            "total": found.total,
            "total_exact": found.exact,
            "limit": search.limit,
            "offset": search.offset,
            "sort": search.sort,
        }
    )


@require_POST
def upload(request):
    """One dropped or picked file (the body, its name in ?name=), or a .zip of them. Answers
    each file's result; indexing follows in a worker (upload_status)."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "sign in to upload"}, status=401)
    name = (request.GET.get("name") or "upload").replace("\x00", "")[:500]
    try:
        results = uploads.upload(request, name, request.user)
    except uploads.UploadError as exc:
        results = [uploads.FileResult(name, "skipped", str(exc))]
    except (OSError, UnreadablePostError) as exc:
        return JsonResponse({"error": f"the upload was cut off: {exc}"}, status=400)
    received = [r for r in results if r.status == "received"]
    audit.record(
        "web.upload",
        audit.SUCCESS if received or not results else audit.FAILURE,
        user=request.user,
        peer_address=request.META.get("REMOTE_ADDR", ""),
        study_instance_uid=_only({r.study_instance_uid for r in received}),
        detail={
            "name": name,
            "received": len(received),
            "not_stored": len(results) - len(received),
            "studies": sorted({r.study_instance_uid for r in received})[:50],
        },
    )
    return JsonResponse({"files": [r.as_json() for r in results]})


def _only(values: set[str]) -> str:
    return next(iter(values)) if len(values) == 1 else ""


@require_GET
def upload_status(request):
    """How indexing ended for the user's uploaded files: ?id=<id>&id=<id>…"""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "sign in"}, status=401)
    return JsonResponse({"files": uploads.status(request.user, request.GET.getlist("id"))})


@login_required
@require_GET
def series_thumbnail(request, series_id: int):
    """A series' thumbnail; 404 for a series the user may not see, as for none at all."""
    series = (
        visible_series(request.user).select_related("study__patient").filter(pk=series_id).first()
    )
    if series is None or not series.thumbnail_key:
        raise Http404("no thumbnail")
    try:
        data = get_storage().read(series.thumbnail_key)
    except StorageError:
        raise Http404("no thumbnail") from None
    _audit_retrieve(request, series.study, "thumbnail")
    return HttpResponse(data, content_type="image/jpeg")


def _audit_retrieve(request, study, resource: str) -> None:
    """PHI shown from one study (PS3.15 §A.5.3.2 DICOM Instances Accessed): recorded once
    per user, study and resource per audit.REPEAT_SECONDS, as DICOMweb retrieves are."""
    audit.record_once(
        (request.user.pk, study.pk, resource),
        "web.retrieve",
        user=request.user,
        peer_address=request.META.get("REMOTE_ADDR", ""),
        study_instance_uid=study.study_instance_uid,
        patient_id=study.patient.patient_id,
        detail={"resource": resource, "path": request.path[:500]},
    )
