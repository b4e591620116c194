"""The studies, series and instances a DICOMweb path names, within what the user may see.

A resource the user may not see answers exactly as one that does not exist (404), so a
request never reveals that a study is there.
"""

from django.db.models import QuerySet

from backend.archive.access import visible_studies
from backend.archive.models import Instance, Series, Study
from backend.archive.query import _UID  # PS3.5 §9.1, as C-FIND checks it

from .errors import DicomWebError

INSTANCE_ORDER = ("series__series_number", "series__pk", "slice_index", "instance_number", "pk")


def check_uid(uid: str, what: str) -> str:
    if len(uid) > 64 or not _UID.fullmatch(uid):
        raise DicomWebError(400, f"{what} {uid[:70]!r} is not a UID (PS3.5 §9.1)")
    return uid


def study(user, study_uid: str) -> Study:
    check_uid(study_uid, "StudyInstanceUID")
    found = (
        visible_studies(user).select_related("patient").filter(study_instance_uid=study_uid).first()
    )
    if found is None:
        raise DicomWebError(404, "no such study")
    return found


def series(user, study_uid: str, series_uid: str) -> Series:
    check_uid(study_uid, "StudyInstanceUID")
    check_uid(series_uid, "SeriesInstanceUID")
    found = (
        Series.objects.select_related("study__patient")
        .filter(
            series_instance_uid=series_uid,
            study__study_instance_uid=study_uid,
            study__in=visible_studies(user),
        )
        .first()
    )
    if found is None:
        raise DicomWebError(404, "no such series")
    return found


def instances(
    user, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> list[Instance]:
    """The instances under a path, in series and slice order (without their DICOM JSON);
    404 when there are none."""
    rows = list(_instances(user, study_uid, series_uid, sop_uid).defer("dicom_json"))
    if not rows:
        raise DicomWebError(404, _missing(series_uid, sop_uid))
    return rows


def _missing(series_uid: str | None, sop_uid: str | None) -> str:
    return "no such " + ("instance" if sop_uid else "series" if series_uid else "study")


def _instances(
    user, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> QuerySet[Instance]:
    check_uid(study_uid, "StudyInstanceUID")
    rows = Instance.objects.filter(
        series__study__study_instance_uid=study_uid,
        series__study__in=visible_studies(user),
    )
    if series_uid is not None:
        rows = rows.filter(series__series_instance_uid=check_uid(series_uid, "SeriesInstanceUID"))
    if sop_uid is not None:
        rows = rows.filter(sop_instance_uid=check_uid(sop_uid, "SOPInstanceUID"))
    return rows.select_related("series__study__patient").order_by(*INSTANCE_ORDER)


def instance(user, study_uid: str, series_uid: str, sop_uid: str, *, header=False) -> Instance:
    """One instance; its DICOM JSON is loaded only when `header` is asked for."""
    rows = _instances(user, study_uid, series_uid, sop_uid)
    found = (rows if header else rows.defer("dicom_json")).first()
    if found is None:
        raise DicomWebError(404, "no such instance")
    return found
