"""JSON API of remote nodes and their jobs: thin — parse, authorize, call jobs, answer.

Administrators only (accounts.Role.ADMIN or a superuser): a node query reaches another
archive's patients and a send or retrieve moves any study. POSTs are CSRF-protected by
Django's middleware like every session-authenticated form.
"""

import json
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, JsonResponse
from django.middleware.csrf import get_token
from django.views.decorators.http import require_GET, require_POST

from backend.archive.access import is_admin

from . import jobs
from .models import RemoteJob, RemoteNode
from .services import list_nodes

JOB_PAGE = 50


def admin_required(view):
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not is_admin(request.user):
            return _error("administrators only", 403)
        try:
            return view(request, *args, **kwargs)
        except jobs.JobError as exc:
            return _error(str(exc), 400)
        except NotFound as exc:
            return _error(str(exc), 404)

    return wrapper


class NotFound(Exception):
    pass


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _node(ae_title: str) -> RemoteNode:
    node = RemoteNode.objects.filter(ae_title=ae_title.strip(" ")).first()
    if node is None:
        raise NotFound(f"no node with AE title {ae_title!r}")
    return node


def _body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise jobs.JobError("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise jobs.JobError("the body must be a JSON object")
    return body


def _created(job: RemoteJob) -> JsonResponse:
    return JsonResponse(job_row(job), status=202)


@admin_required
@require_GET
def nodes_page(request):
    """The page that drives the API below (query, retrieve, send, jobs)."""
    get_token(request)  # the page's script sends the CSRF cookie back as a header
    page = settings.BASE_DIR / "frontend" / "nodes.html"
    return FileResponse(open(page, "rb"), content_type="text/html; charset=utf-8")


@admin_required
@require_GET
def node_list(request):
    rows = [
        {
            "ae_title": n.ae_title,
            "host": n.host,
            "port": n.port,
            "name": n.name,
            "can_query": n.can_query,
            "can_retrieve": n.can_retrieve,
            "can_store_to": n.can_store_to,
            "access_group": n.access_group.name if n.access_group else None,
        }
        for n in list_nodes()
    ]
    return JsonResponse({"nodes": rows})


@admin_required
@require_POST
def echo(request, ae_title: str):
    return _created(jobs.start_echo(_node(ae_title), request.user))


@admin_required
@require_POST
def find(request, ae_title: str):
    node, body = _node(ae_title), _body(request)
    return _created(
        jobs.start_find(node, body.get("keys", {}), body.get("level", ""), request.user)
    )


@admin_required
@require_POST
def retrieve(request, ae_title: str):
    node, body = _node(ae_title), _body(request)
    job = jobs.start_retrieve(
        node,
        body.get("study_instance_uid", ""),
        body.get("series_instance_uid"),
        method=body.get("method", "move"),
        user=request.user,
    )
    return _created(job)


@admin_required
@require_POST
def send(request, ae_title: str):
    node, body = _node(ae_title), _body(request)
    job = jobs.start_send(
        node, body.get("study_instance_uid", ""), body.get("series_instance_uid"), request.user
    )
    return _created(job)


@admin_required
@require_GET
def job_detail(request, job_id: int):
    job = RemoteJob.objects.select_related("node").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"no job {job_id}")
    return JsonResponse(job_row(job))


@admin_required
@require_GET
def job_list(request):
    """The newest jobs, of one node with ?node=AE_TITLE."""
    rows = RemoteJob.objects.select_related("node")
    if ae_title := request.GET.get("node"):
        rows = rows.filter(node=_node(ae_title))
    return JsonResponse({"jobs": [job_row(job, brief=True) for job in rows[:JOB_PAGE]]})


def job_row(job: RemoteJob, brief: bool = False) -> dict:
    row = {
        "id": job.pk,
        "kind": job.kind,
        "node": job.node.ae_title,
        "state": job.state,
        "parameters": job.parameters,
        "progress": {"completed": job.completed, "failed": job.failed, "remaining": job.remaining},
        "error": job.error,
        "attempts": job.attempts,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
    if not brief:
        row["result"] = job.result
    return row
