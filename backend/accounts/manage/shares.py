"""Study shares on /manage: one study opened to one user or one group, until a date or for
good; the list of shares, the study search of the share form, sharing and revoking.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from backend.archive.attributes import search_key
from backend.archive.models import Study

from ..models import AccessGroup, StudyShare
from .common import Actor, ManageError, NotFound, authorize, group_ref, iso, record_audit, user_ref
from .inputs import get_row, parse_date, query_id, start_of, text

STUDY_SEARCH_LIMIT = 20
SHARE_LIST_LIMIT = 500


def list_shares(actor: Actor, params: Mapping) -> QuerySet[StudyShare]:
    """Shares, newest first, of one user (?user=id) or group (?group=id) if asked."""
    authorize(actor)
    rows = StudyShare.objects.select_related("study__patient", "user", "group", "created_by")
    for key in ("user", "group"):
        if params.get(key):
            rows = rows.filter(**{f"{key}_id": query_id(params, key)})
    return rows.order_by("-created_at", "-pk")[:SHARE_LIST_LIMIT]


def search_studies(actor: Actor, params: Mapping) -> QuerySet[Study]:
    """A few studies for the share form: by Study Instance UID, patient ID, accession
    number (each a prefix) or patient name (words anywhere in it)."""
    authorize(actor)
    query = text(params, "q", 200)
    if not query:
        return Study.objects.none()
    condition = (
        Q(study_instance_uid__startswith=query)
        | Q(patient__patient_id__istartswith=query)
        | Q(accession_number__istartswith=query)
    )
    name = search_key(query)
    if name:
        condition |= Q(patient__patient_name_search__contains=name)
    found = Study.objects.select_related("patient").filter(condition)
    return found.order_by("-study_date", "-pk")[:STUDY_SEARCH_LIMIT]


@dataclass(frozen=True)
class NewShare:
    study: Study
    user: User | None
    group: AccessGroup | None
    expires_at: datetime | None


def check_create_share(actor: Actor, data: Mapping) -> NewShare:
    authorize(actor)
    uid = text(data, "study_instance_uid", 64, required=True)
    study = Study.objects.select_related("patient").filter(study_instance_uid=uid).first()
    if study is None:
        raise NotFound("no study with this Study Instance UID")
    has_user, has_group = data.get("user") is not None, data.get("group") is not None
    if has_user == has_group:
        raise ManageError("share with one user or one group")
    user = get_row(User.objects.all(), data["user"], "user") if has_user else None
    group = get_row(AccessGroup.objects.all(), data["group"], "group") if has_group else None
    return NewShare(study, user, group, _until(text(data, "expires_on", 10)))


def _until(value: str) -> datetime | None:
    """A share "until" a date lasts to the end of that day, local time."""
    if not value:
        return None
    day = parse_date(value, "expires_on")
    if day < timezone.localdate():
        raise ManageError("expires_on is in the past")
    return start_of(day + timedelta(days=1))


@transaction.atomic
def do_create_share(actor: Actor, new: NewShare) -> StudyShare:
    """Share the study; sharing it again with the same user or group sets the new date."""
    share, _ = StudyShare.objects.update_or_create(
        study=new.study,
        user=new.user,
        group=new.group,
        defaults={"expires_at": new.expires_at, "created_by": actor.user},
    )
    _audit_share(actor, "admin.share_created", share)
    return share


def _audit_share(actor: Actor, event_type: str, share: StudyShare) -> None:
    study = share.study
    detail = {
        "share": share.pk,
        "with": _share_target(share),
        "expires_at": iso(share.expires_at),
    }
    record_audit(
        actor,
        event_type,
        detail,
        study_instance_uid=study.study_instance_uid,
        patient_id=study.patient.patient_id,
    )


def _share_target(share: StudyShare) -> dict:
    if share.user is not None:
        return user_ref(share.user)
    assert share.group is not None  # the share_with_user_or_group constraint
    return {"group": group_ref(share.group)}


def check_revoke_share(actor: Actor, share_id: object) -> StudyShare:
    authorize(actor)
    rows = StudyShare.objects.select_related("study__patient", "user", "group")
    return get_row(rows, share_id, "share")


@transaction.atomic
def do_revoke_share(actor: Actor, share: StudyShare) -> None:
    _audit_share(actor, "admin.share_revoked", share)
    share.delete()
