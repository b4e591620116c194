"""DICOMweb views (PS3.18): parse, authorize, call the service, answer. Root /dicomweb."""

import json

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse

from backend.archive.access import visible_studies
from backend.archive.derive import THUMBNAIL_SIZE
from backend.archive.models import Series

from . import auditing, qido, resources, stow, wado
from .auth import endpoint
from .errors import DicomWebError, error_response
from .media import (
    MediaTypeError,
    multipart_content_type,
    multipart_stream,
    new_boundary,
    parse_content_type,
    parse_media_ranges,
)

DICOM_JSON = "application/dicom+json"
JSON_TYPES = (DICOM_JSON, "application/json", "*/*", "application/*")


def base_url(request) -> str:
    return request.build_absolute_uri("/dicomweb")


def accept(request):
    try:
        return parse_media_ranges(request.headers.get("Accept", ""))
    except MediaTypeError as exc:
        raise DicomWebError(400, f"Accept: {exc}") from None


def _json_accepted(request) -> None:
    ranges = accept(request)
    if ranges and not any(r.type in JSON_TYPES and r.q > 0 for r in ranges):
        raise DicomWebError(406, f"this resource is sent as {DICOM_JSON}")


def _json_response(body: bytes | str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, content_type=DICOM_JSON, status=status)


# QIDO-RS (PS3.18 §10.6)


def _search(request, level: str, path_keys: dict[str, str], *, relational: bool):
    _json_accepted(request)
    for keyword, uid in path_keys.items():
        resources.check_uid(uid, keyword)
    if "StudyInstanceUID" in path_keys:
        resources.study(request.user, path_keys["StudyInstanceUID"])  # 404 if not visible
    if "SeriesInstanceUID" in path_keys:
        resources.series(
            request.user, path_keys["StudyInstanceUID"], path_keys["SeriesInstanceUID"]
        )
    search = qido.parse(level, request.GET, path_keys, relational=relational)
    results, more = qido.run(search, visible_studies(request.user))
    url = base_url(request)
    body = json.dumps([qido.with_retrieve_url(r, level, url) for r in results], ensure_ascii=False)
    auditing.queried(
        request,
        level,
        results=len(results),
        study_instance_uid=path_keys.get("StudyInstanceUID", ""),
    )
    response = _json_response(body)
    if more:
        response["Warning"] = (
            '299 lightbox "There are more results than returned: ask again with a higher '
            f'offset (limit {search.limit}, offset {search.offset})"'
        )
    return response


@endpoint()
def search_series(request):
    return _search(request, "SERIES", {}, relational=True)


@endpoint()
def search_instances(request):
    return _search(request, "IMAGE", {}, relational=True)


@endpoint()
def study_series(request, study):
    return _search(request, "SERIES", {"StudyInstanceUID": study}, relational=False)


@endpoint()
def study_instances(request, study):
    return _search(request, "IMAGE", {"StudyInstanceUID": study}, relational=True)


@endpoint()
def series_instances(request, study, series):
    keys = {"StudyInstanceUID": study, "SeriesInstanceUID": series}
    return _search(request, "IMAGE", keys, relational=False)


# Studies: QIDO-RS search (GET) and STOW-RS store (POST) share the path.


@endpoint(methods=("GET", "HEAD", "POST"))
def studies(request):
    if request.method == "POST":
        return _store(request, None)
    return _search(request, "STUDY", {}, relational=False)


@endpoint(methods=("GET", "HEAD", "POST"))
def study(request, study):
    if request.method == "POST":
        return _store(request, study)
    return _retrieve(request, resources.instances(request.user, study), study)


# STOW-RS (PS3.18 §10.5)


def _store(request, study_uid: str | None):
    if study_uid is not None:
        resources.check_uid(study_uid, "StudyInstanceUID")
    boundary = _stow_boundary(request)
    length = request.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > settings.LIGHTBOX_STOW_MAX_BYTES:
        raise DicomWebError(
            413, f"the body is larger than {settings.LIGHTBOX_STOW_MAX_BYTES} bytes"
        )
    outcome = stow.store(request, boundary, study_uid=study_uid, user=request.user)
    auditing.stored(request, outcome)
    if not outcome.stored and not outcome.failed:
        raise DicomWebError(400, "the body holds no parts")
    ds = stow.response_dataset(outcome, base_url(request), study_uid)
    response = _json_response(json.dumps(ds.to_json_dict()), status=outcome.status)
    if outcome.reasons:
        text = "; ".join(outcome.reasons)[:1000].replace('"', "'")
        response["Warning"] = f'299 lightbox "{text}"'
    return response


def _stow_boundary(request) -> str:
    try:
        media = parse_content_type(request.headers.get("Content-Type", ""))
    except MediaTypeError as exc:
        raise DicomWebError(415, f"Content-Type: {exc}") from None
    part_type = media.params.get("type", "")
    if media.type != "multipart/related" or part_type.lower() != "application/dicom":
        raise DicomWebError(
            415,
            'send multipart/related; type="application/dicom" (JSON and XML metadata '
            "with bulk data are not accepted)",
        )
    if not media.params.get("boundary"):
        raise DicomWebError(400, "the multipart Content-Type has no boundary")
    return media.params["boundary"]


# WADO-RS instances (PS3.18 §10.4.1.1.1)


def _retrieve(request, instances, study_uid: str):
    planned = wado.plan_instances(instances, wado.accepted_syntaxes(accept(request)))
    auditing.retrieved(request, instances[0].series.study, "instances")
    boundary = new_boundary()
    body = multipart_stream(boundary, wado.instance_parts(planned, base_url(request)))
    return StreamingHttpResponse(
        body, content_type=multipart_content_type(boundary, "application/dicom")
    )


@endpoint()
def series(request, study, series):
    return _retrieve(request, resources.instances(request.user, study, series), study)


@endpoint()
def instance(request, study, series, instance):
    return _retrieve(request, resources.instances(request.user, study, series, instance), study)


# Metadata (PS3.18 §10.4.1.1.2)


@endpoint()
def study_metadata(request, study):
    _json_accepted(request)
    found = resources.study(request.user, study)
    auditing.retrieved(request, found, "metadata")
    series_list = Series.objects.filter(study=found).order_by("series_number", "pk")
    return _json_response(wado.study_metadata(series_list))


@endpoint()
def series_metadata(request, study, series):
    _json_accepted(request)
    found = resources.series(request.user, study, series)
    auditing.retrieved(request, found.study, "metadata")
    gzip_ok = "gzip" in request.headers.get("Accept-Encoding", "")
    body, compressed = wado.series_metadata(found, gzip_ok)
    response = _json_response(body)
    if compressed:
        response["Content-Encoding"] = "gzip"
    response["Vary"] = "Accept-Encoding"
    return response


@endpoint()
def instance_metadata(request, study, series, instance):
    _json_accepted(request)
    found = resources.instance(request.user, study, series, instance, header=True)
    auditing.retrieved(request, found.series.study, "metadata")
    return _json_response(wado.json_array([found.dicom_json]))


# Frames and bulk data (PS3.18 §10.4.1.1.3, §10.4.1.1.5)


@endpoint()
def frames(request, study, series, instance, frames):
    found = resources.instance(request.user, study, series, instance)
    numbers = wado.parse_frame_list(frames, found.number_of_frames)
    plan = wado.plan_frames(accept(request), found)
    payloads = wado.frame_payloads(found, numbers, plan)
    auditing.retrieved(request, found.series.study, "frames")
    boundary = new_boundary()
    part_type = plan.content_type.split(";")[0]
    return StreamingHttpResponse(
        wado.frames_body(boundary, plan.content_type, payloads),
        content_type=multipart_content_type(boundary, part_type),
    )


@endpoint()
def bulkdata(request, study, series, instance, tag):
    found = resources.instance(request.user, study, series, instance)
    ranges = accept(request)
    if ranges and not any(_takes_octet_stream(r) for r in ranges):
        raise DicomWebError(
            406, 'bulk data is sent as multipart/related; type="application/octet-stream"'
        )
    payload, content_type = wado.bulkdata(found, tag)
    auditing.retrieved(request, found.series.study, "bulkdata")
    boundary = new_boundary()
    return StreamingHttpResponse(
        wado.frames_body(boundary, content_type, [payload]),
        content_type=multipart_content_type(boundary, "application/octet-stream"),
    )


def _takes_octet_stream(media) -> bool:
    if media.q == 0:
        return False
    if media.type == "*/*":
        return True
    part_type = media.params.get("type", "application/octet-stream")
    return media.type == "multipart/related" and part_type in (
        "application/octet-stream",
        "application/*",
        "*/*",
    )


# Rendered and thumbnails (PS3.18 §10.4.1.1.4, §10.4.1.1.6)


def _image(request, instance, number: int, *, thumbnail: bool = False) -> HttpResponse:
    media_type = wado.rendered_type(accept(request))
    presentation = wado.parse_presentation(request.GET, media_type)
    max_size = THUMBNAIL_SIZE if thumbnail and not presentation.viewport else None
    body = wado.rendered(instance, number, presentation, max_size=max_size)
    auditing.retrieved(request, instance.series.study, "thumbnail" if thumbnail else "rendered")
    return HttpResponse(body, content_type=media_type)


def _rendered_instances(request, instances) -> StreamingHttpResponse:
    """Study and series rendered: one image per instance (its first frame), multipart."""
    media_type = wado.rendered_type(accept(request))
    presentation = wado.parse_presentation(request.GET, media_type)
    viewable = [i for i in instances if i.viewable]
    if not viewable:
        raise DicomWebError(404, "nothing here can be shown as an image")
    auditing.retrieved(request, viewable[0].series.study, "rendered")
    boundary = new_boundary()
    return StreamingHttpResponse(
        multipart_stream(boundary, wado.rendered_parts(viewable, presentation, media_type)),
        content_type=multipart_content_type(boundary, media_type),
    )


@endpoint()
def study_rendered(request, study):
    return _rendered_instances(request, resources.instances(request.user, study))


@endpoint()
def series_rendered(request, study, series):
    return _rendered_instances(request, resources.instances(request.user, study, series))


@endpoint()
def instance_rendered(request, study, series, instance):
    return _image(request, resources.instance(request.user, study, series, instance), 1)


@endpoint()
def frame_rendered(request, study, series, instance, frames):
    found = resources.instance(request.user, study, series, instance)
    numbers = wado.parse_frame_list(frames, found.number_of_frames)
    if len(numbers) != 1:
        raise DicomWebError(400, "a rendered frame takes one frame number")
    return _image(request, found, numbers[0])


@endpoint()
def study_thumbnail(request, study):
    found = resources.study(request.user, study)
    first = (
        Series.objects.filter(study=found)
        .exclude(thumbnail_key="")
        .order_by("series_number", "pk")
        .first()
    )
    return _series_thumbnail(request, found, first)


@endpoint()
def series_thumbnail(request, study, series):
    found = resources.series(request.user, study, series)
    return _series_thumbnail(request, found.study, found)


def _series_thumbnail(request, study, series) -> HttpResponse:
    if series is None or not series.thumbnail_key:
        raise DicomWebError(404, "no thumbnail yet")
    media_type = wado.rendered_type(accept(request))
    if media_type == "image/jpeg" and not request.GET:
        auditing.retrieved(request, study, "thumbnail")
        return HttpResponse(wado.stored_thumbnail(series), content_type=media_type)
    middle = wado.middle_instance(series)
    return _image(request, middle, (middle.number_of_frames + 1) // 2, thumbnail=True)


@endpoint()
def instance_thumbnail(request, study, series, instance):
    found = resources.instance(request.user, study, series, instance)
    return _image(request, found, 1, thumbnail=True)


@endpoint()
def frame_thumbnail(request, study, series, instance, frames):
    found = resources.instance(request.user, study, series, instance)
    numbers = wado.parse_frame_list(frames, found.number_of_frames)
    if len(numbers) != 1:
        raise DicomWebError(400, "a thumbnail takes one frame number")
    return _image(request, found, numbers[0], thumbnail=True)


def not_found(request, path=""):
    return error_response(404, "no such DICOMweb resource")


# WADO-URI (PS3.18 §9)

WADO_URI_TYPES = ("application/dicom", "image/jpeg", "image/png")


@endpoint()
def wado_uri(request):
    params = request.GET
    if params.get("requestType") != "WADO":
        raise DicomWebError(400, "requestType=WADO is required")
    uids = [params.get(name, "") for name in ("studyUID", "seriesUID", "objectUID")]
    if not all(uids):
        raise DicomWebError(400, "studyUID, seriesUID and objectUID are required")
    found = resources.instance(request.user, *uids)
    content_type = _wado_uri_type(params.get("contentType", "image/jpeg"))
    if content_type == "application/dicom":
        # PS3.18 §9.1.2.1: without transferSyntax, Explicit VR Little Endian.
        syntax = params.get("transferSyntax", "1.2.840.10008.1.2.1")
        planned = wado.plan_instances([found], {syntax})
        auditing.retrieved(request, found.series.study, "instances")
        body = wado.encoded_or_stored(planned[0])
        response = HttpResponse(body, content_type="application/dicom")
        response["Content-Disposition"] = f'attachment; filename="{found.sop_instance_uid}.dcm"'
        return response
    presentation = wado.uri_presentation(params, content_type)
    number = wado.parse_frame_list(params.get("frameNumber", "1"), found.number_of_frames)[0]
    body = wado.rendered(found, number, presentation)
    auditing.retrieved(request, found.series.study, "rendered")
    return HttpResponse(body, content_type=content_type)


def _wado_uri_type(value: str) -> str:
    """contentType may list several types, best first (PS3.18 §9.1.2.1.5)."""
    for item in value.split(","):
        media = item.split(";")[0].strip().lower()
        if media in WADO_URI_TYPES:
            return media
        if media in ("image/*", "*/*"):
            return "image/jpeg"
    raise DicomWebError(406, f"contentType must be one of {', '.join(WADO_URI_TYPES)}")
