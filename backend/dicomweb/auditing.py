"""Audit records for DICOMweb (PS3.15 §A.5.3: Query, DICOM Instances Transferred).

A viewer reads a series as hundreds of frame requests; one audit row per request would
drown the log. Retrieves are recorded once per user, study and kind of resource per
audit.REPEAT_SECONDS in each web process (audit.record_once); every query and every
store is recorded.
"""

from backend.accounts import audit


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


def queried(request, level: str, outcome: str = audit.SUCCESS, **detail) -> None:
    audit.record(
        "dicomweb.query",
        outcome,
        user=request.user,
        peer_address=client_address(request),
        study_instance_uid=detail.pop("study_instance_uid", ""),
        detail={"level": level, "query": request.GET.urlencode()[:2000], **detail},
    )


def retrieved(request, study, kind: str) -> None:
    audit.record_once(
        (request.user.pk, study.pk, kind),
        "dicomweb.retrieve",
        user=request.user,
        peer_address=client_address(request),
        study_instance_uid=study.study_instance_uid,
        patient_id=study.patient.patient_id,
        detail={"resource": kind, "path": request.path[:500]},
    )


def stored(request, outcome) -> None:
    audit.record(
        "dicomweb.store",
        audit.SUCCESS if outcome.stored else audit.FAILURE,
        user=request.user,
        peer_address=client_address(request),
        study_instance_uid=next(iter(outcome.studies)) if len(outcome.studies) == 1 else "",
        detail={
            "stored": len(outcome.stored),
            "failed": len(outcome.failed),
            "studies": sorted(outcome.studies)[:50],
            "reasons": outcome.reasons[:20],
        },
    )
