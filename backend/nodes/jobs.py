"""Jobs that reach out to a remote node: C-ECHO, C-FIND, retrieve (C-MOVE or C-GET) and
send (C-STORE). Each is a RemoteJob row with a state; start_*() create it and queue its id
after commit, run(job_id) is what the worker calls.

A job may run again (a worker died, the broker redelivered): run() claims the row with a
conditional update, so only one worker runs it at a time; a retrieve simply asks again
(ingest makes an identical instance a no-op) and a send skips the instances the node
already confirmed (result["sent"]).
"""

import logging
import re
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pydicom
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from backend.accounts.audit import FAILURE, SUCCESS, record
from backend.archive import queue
from backend.archive.models import Instance
from backend.archive.retrieve import dataset_for

from . import scu
from .models import RemoteJob, RemoteNode
from .services import studies_for_node

log = logging.getLogger("lightbox.nodes")

# A running job whose row has not changed for this long is taken as abandoned by its
# worker and may be claimed again. Progress updates the row, so only a stalled job ages.
STALE_AFTER = timedelta(minutes=15)
# Study Root (PS3.4 C.6.2): no PATIENT level.
FIND_LEVELS = ("STUDY", "SERIES", "IMAGE")
# Hierarchical query (PS3.4 C.4.1.2.2.1, the baseline: relational queries are not
# negotiated): below STUDY level, the unique key of each level above, with a single value.
LEVELS_ABOVE = {
    "STUDY": (),
    "SERIES": ("StudyInstanceUID",),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID"),
}
RETRIEVE_METHODS = ("move", "get")
UID_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
Kind = RemoteJob.Kind
State = RemoteJob.State


class JobError(ValueError):
    """A job cannot be started as asked; the message says why."""


class Cancelled(Exception):
    """The job was cancelled while it ran."""


# --- starting ---------------------------------------------------------------------------


def start_echo(node: RemoteNode, user=None) -> RemoteJob:
    """Queue a C-ECHO to `node` (Test connection)."""
    return _start(node, Kind.ECHO, {}, user)


def start_find(node: RemoteNode, keys: dict[str, str], level: str, user=None) -> RemoteJob:
    """Queue a Study Root C-FIND. keys: DICOM keyword → matching value ("" to return it);
    at SERIES level the study's StudyInstanceUID, at IMAGE level its SeriesInstanceUID too."""
    level = str(level).upper()
    if level not in FIND_LEVELS:
        raise JobError(f"level must be one of {', '.join(FIND_LEVELS)} (Study Root, PS3.4 C.6.2)")
    if not isinstance(keys, dict) or not keys:
        raise JobError("keys must be an object of DICOM keywords and values")
    for keyword, value in keys.items():
        if pydicom.datadict.tag_for_keyword(keyword) is None or keyword == "QueryRetrieveLevel":
            raise JobError(f"{keyword!r} is not a DICOM keyword usable as a query key")
        if not isinstance(value, str) or len(value) > 1024:
            raise JobError(f"the value of {keyword} must be text")
    for keyword in LEVELS_ABOVE[level]:
        _uid(keys.get(keyword), keyword)
    return _start(node, Kind.FIND, {"level": level, "keys": keys}, user)


def start_retrieve(
    node: RemoteNode,
    study_instance_uid: str,
    series_instance_uid: str | None = None,
    method: str = "move",
    user=None,
) -> RemoteJob:
    """Queue a retrieve of a study (or one of its series) from `node` into Lightbox."""
    if method not in RETRIEVE_METHODS:
        raise JobError("method must be 'move' (C-MOVE) or 'get' (C-GET)")
    parameters = {**_uids(study_instance_uid, series_instance_uid), "method": method}
    return _start(node, Kind.RETRIEVE, parameters, user)


def start_send(
    node: RemoteNode, study_instance_uid: str, series_instance_uid: str | None = None, user=None
) -> RemoteJob:
    """Queue sending a stored study (or one of its series) to `node` by C-STORE."""
    if not node.can_store_to:
        raise JobError(f"{node.ae_title} is not a node Lightbox may send images to")
    parameters = _uids(study_instance_uid, series_instance_uid)
    if not _instances(parameters).exists():
        raise JobError("Lightbox holds no instances of that study or series")
    if not studies_for_node(node).filter(study_instance_uid=study_instance_uid).exists():
        # A node limited to an access group receives that group's studies only, whoever
        # sends (as a C-MOVE to it, worker/dimse/handlers.py).
        raise JobError(f"{node.ae_title} may receive only studies of its access group")
    return _start(node, Kind.SEND, parameters, user)


def cancel(job: RemoteJob) -> bool:
    """Cancel a job that has not finished; a running one stops at its next progress."""
    done = RemoteJob.objects.filter(pk=job.pk, state__in=[State.QUEUED, State.RUNNING])
    return bool(done.update(state=State.CANCELLED, finished_at=timezone.now()))


def _uids(study_instance_uid: str, series_instance_uid: str | None) -> dict[str, str]:
    parameters = {"study_instance_uid": _uid(study_instance_uid, "StudyInstanceUID")}
    if series_instance_uid:
        parameters["series_instance_uid"] = _uid(series_instance_uid, "SeriesInstanceUID")
    return parameters


def _uid(value: object, keyword: str) -> str:
    # PS3.5 §9.1: digits and dots, at most 64 characters; wildcards are not UIDs.
    if not isinstance(value, str) or len(value) > 64 or not UID_PATTERN.fullmatch(value):
        raise JobError(f"{keyword} must be a valid UID (PS3.5 §9.1)")
    return value


def _start(node: RemoteNode, kind: str, parameters: dict[str, Any], user) -> RemoteJob:
    with transaction.atomic():
        job = RemoteJob.objects.create(
            node=node, kind=kind, parameters=parameters, created_by=_user(user)
        )
        transaction.on_commit(partial(queue.send, queue.REMOTE_JOB, job.pk))
    return job


def _user(user):
    return user if user is not None and user.is_authenticated else None


# --- running ----------------------------------------------------------------------------


def requeue_lost(stale: timedelta = STALE_AFTER) -> int:
    """Send again the jobs whose message was lost: queued, or running without progress for
    longer than `stale`. run() claims conditionally, so a job sent twice runs once."""
    now = timezone.now()
    lost = RemoteJob.objects.filter(
        Q(state=State.QUEUED, created_at__lt=now - timedelta(minutes=1))
        | Q(state=State.RUNNING, updated_at__lt=now - stale)
    )
    ids = list(lost.values_list("pk", flat=True)[:1000])
    for job_id in ids:
        queue.send(queue.REMOTE_JOB, job_id)
    return len(ids)


def run(job_id: int) -> str:
    """Run one job (the worker's task). Returns the job's state afterwards."""
    job = claim(job_id)
    if job is None:
        return _not_claimed(job_id)
    try:
        result = RUNNERS[job.kind](job)
    except Cancelled:
        return State.CANCELLED
    except scu.ScuError as exc:
        _finish(job, State.FAILED, error=str(exc))
    except Exception as exc:
        log.exception("remote job %s failed", job_id)
        _finish(job, State.FAILED, error=repr(exc))
    else:
        state, error = result.pop("state", State.SUCCEEDED), result.pop("error", "")
        _finish(job, state, result=result, error=error)
    job.refresh_from_db()
    return job.state


def claim(job_id: int) -> RemoteJob | None:
    """queued → running, or running but stale → running again; None when another worker
    holds it or it is finished."""
    now = timezone.now()
    claimable = Q(state=State.QUEUED) | Q(state=State.RUNNING, updated_at__lt=now - STALE_AFTER)
    claimed = RemoteJob.objects.filter(claimable, pk=job_id).update(
        state=State.RUNNING, attempts=F("attempts") + 1, started_at=now, updated_at=now
    )
    return RemoteJob.objects.select_related("node").get(pk=job_id) if claimed else None


def _not_claimed(job_id: int) -> str:
    job = RemoteJob.objects.filter(pk=job_id).first()
    if job is None:
        return "missing"
    if job.state == State.RUNNING:
        # Held by a worker, or by one that died: look again once it would be stale.
        queue.send(queue.REMOTE_JOB, job_id, countdown=STALE_AFTER.total_seconds() + 1)
    return job.state


def _progress(job: RemoteJob, completed: int, failed: int, remaining: int | None, **result):
    """Record progress (and heartbeat); raises Cancelled when the job was cancelled."""
    if result:
        job.result = {**job.result, **result}
    changes: dict[str, Any] = {"completed": completed, "failed": failed, "remaining": remaining}
    if result:
        changes["result"] = job.result
    updated = RemoteJob.objects.filter(pk=job.pk, state=State.RUNNING).update(
        **changes, updated_at=timezone.now()
    )
    if not updated:
        raise Cancelled


def _finish(job: RemoteJob, state: str, result: dict | None = None, error: str = "") -> None:
    changes: dict[str, Any] = {"state": state, "error": error, "finished_at": timezone.now()}
    if result is not None:
        changes["result"] = job.result = {**job.result, **result}
    if not RemoteJob.objects.filter(pk=job.pk, state=State.RUNNING).update(**changes):
        return  # cancelled meanwhile: the cancellation stands
    record(
        f"dicom.scu.{job.kind}",
        SUCCESS if state == State.SUCCEEDED else FAILURE,
        user=job.created_by,
        calling_ae=settings.AE_TITLE,
        called_ae=job.node.ae_title,
        peer_address=f"{job.node.host}:{job.node.port}",
        study_instance_uid=job.parameters.get("study_instance_uid", ""),
        detail={"job": job.pk, "state": state, "parameters": job.parameters, "error": error},
    )


def _echo(job: RemoteJob) -> dict[str, Any]:
    status = scu.echo(job.node)
    if status != scu.SUCCESS:
        return {"status": status, "state": State.FAILED, "error": f"C-ECHO status 0x{status:04X}"}
    return {"status": status}


def _find(job: RemoteJob) -> dict[str, Any]:
    level, keys = job.parameters["level"], job.parameters["keys"]
    matches, truncated = scu.find(job.node, keys, level)
    _progress(job, len(matches), 0, 0)
    return {"matches": matches, "truncated": truncated}


def _retrieve(job: RemoteJob) -> dict[str, Any]:
    keys = {"StudyInstanceUID": job.parameters["study_instance_uid"]}
    if series := job.parameters.get("series_instance_uid"):
        keys["SeriesInstanceUID"] = series
    level = "SERIES" if series else "STUDY"
    on_progress = partial(_progress, job)
    if job.parameters["method"] == "get":
        outcome = scu.get(job.node, keys, level, on_progress)
    else:
        outcome = scu.move(job.node, keys, level, settings.AE_TITLE, on_progress)
    _progress(job, outcome.completed + outcome.warning, outcome.failed, 0)
    # Success, or Warning B000 when some sub-operations failed (PS3.4 C.4.2.1.5).
    if outcome.status == scu.SUCCESS and not outcome.failed:
        return {"status": outcome.status}
    error = f"{outcome.failed} sub-operations failed (status 0x{outcome.status:04X})"
    return {"status": outcome.status, "state": State.FAILED, "error": error}


def _send(job: RemoteJob) -> dict[str, Any]:
    sent = list(job.result.get("sent", []))
    not_sent: list[str] = []
    confirmed = set(sent)
    todo = [i for i in _instances(job.parameters) if i.sop_instance_uid not in confirmed]
    already = len(sent)
    _progress(job, already, 0, len(todo))

    def on_sent(instance, status: int | None) -> None:
        (sent if status in scu.STORE_OK else not_sent).append(instance.sop_instance_uid)
        left = len(todo) - len(not_sent) - (len(sent) - already)
        _progress(job, len(sent), len(not_sent), left, sent=sent, not_sent=not_sent)

    if todo:
        scu.send(job.node, todo, dataset_for, on_sent)
    result: dict[str, Any] = {"sent": sent, "not_sent": not_sent}
    if not_sent:
        error = f"{len(not_sent)} instances were not accepted by {job.node.ae_title}"
        result.update(state=State.FAILED, error=error)
    return result


def _instances(parameters: dict[str, str]):
    rows = Instance.objects.filter(
        series__study__study_instance_uid=parameters["study_instance_uid"]
    )
    if series := parameters.get("series_instance_uid"):
        rows = rows.filter(series__series_instance_uid=series)
    return rows.defer("dicom_json").order_by("series__pk", "instance_number", "pk")


RUNNERS: dict[str, Callable[[RemoteJob], dict[str, Any]]] = {
    Kind.ECHO: _echo,
    Kind.FIND: _find,
    Kind.RETRIEVE: _retrieve,
    Kind.SEND: _send,
}
