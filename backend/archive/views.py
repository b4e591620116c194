"""HTTP views of the archive: thin — parse, authorize, call, answer."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from backend.accounts import audit

from .access import visible_series, visible_studies
from .storage import StorageError, get_storage

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@require_GET
def healthz(request):
    """Liveness: the process answers and the database is reachable. No auth, no data."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok\n", content_type="text/plain")


@login_required
@require_GET
def worklist(request):
    return FileResponse(
        open(settings.BASE_DIR / "frontend" / "index.html", "rb"),
        content_type="text/html; charset=utf-8",
    )


def _bounded_int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value), low), high) if value is not None else default
    except ValueError:
        return default


@login_required
@require_GET
def study_list(request):
    """The newest studies the user may see, paged (?limit=, ?offset=)."""
    limit = _bounded_int(request.GET.get("limit"), PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = _bounded_int(request.GET.get("offset"), 0, 0, 10_000_000)
    studies = visible_studies(request.user).select_related("patient").order_by("-updated_at")
    rows = [_study_row(s) for s in studies[offset : offset + limit]]
    return JsonResponse({"studies": rows, "limit": limit, "offset": offset})


def _study_row(study) -> dict:
    patient = study.patient
    return {
        "study_instance_uid": study.study_instance_uid,
        "patient_name": patient.patient_name,
        "patient_id": patient.patient_id,
        "patient_birth_date": patient.patient_birth_date,
        "patient_sex": patient.patient_sex,
        "study_date": study.study_date,
        "study_time": study.study_time,
        "modalities_in_study": study.modalities_in_study,
        "study_description": study.study_description,
        "accession_number": study.accession_number,
        "number_of_series": study.number_of_series,
        "number_of_instances": study.number_of_instances,
    }


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
