"""Readers' measurements and annotations: validated, kept per user and study."""

import math

from backend.archive.access import visible_studies
from backend.archive.models import Instance, Study

from .models import Annotation

POINTS = {"length": 2, "angle": 3, "rectangle": 2, "ellipse": 2, "point": 1}
MAX_PER_STUDY = 2000


class AnnotationError(ValueError):
    """A request that cannot be stored; str(exc) says why."""


def visible_study(user, study_uid: str) -> Study | None:
    if len(study_uid) > 64:
        return None
    return visible_studies(user).filter(study_instance_uid=study_uid).first()


def for_study(user, study: Study) -> list[dict]:
    return [as_json(a) for a in Annotation.objects.filter(user=user, study=study)]


def create(user, study: Study, data: object) -> Annotation:
    """check_ and do_ in one: the data is validated against the study, then stored."""
    if not isinstance(data, dict):
        raise AnnotationError("send a JSON object")
    kind = data.get("kind")
    if kind not in POINTS:
        raise AnnotationError(f"kind must be one of {', '.join(POINTS)}")
    sop = data.get("sop_instance_uid")
    instance = (
        Instance.objects.filter(series__study=study, sop_instance_uid=sop)
        .only("rows", "columns", "number_of_frames")
        .first()
        if isinstance(sop, str)
        else None
    )
    if instance is None:
        raise AnnotationError("sop_instance_uid is not an instance of this study")
    frame = data.get("frame", 0)
    if not isinstance(frame, int) or not 0 <= frame < instance.number_of_frames:
        raise AnnotationError("frame is out of range")
    points = _points(data.get("points"), POINTS[kind], instance)
    label = data.get("label", "")
    if not isinstance(label, str) or len(label) > 200:
        raise AnnotationError("label must be text of at most 200 characters")
    if Annotation.objects.filter(user=user, study=study).count() >= MAX_PER_STUDY:
        raise AnnotationError("too many annotations on this study")
    return Annotation.objects.create(
        user=user,
        study=study,
        sop_instance_uid=str(sop),
        frame=frame,
        kind=kind,
        points=points,
        label=label,
    )


def _points(value: object, count: int, instance: Instance) -> list[list[float]]:
    if not isinstance(value, list) or len(value) != count:
        raise AnnotationError(f"points must be {count} [column, row] pairs")
    limit = 4 * max(instance.rows or 1, instance.columns or 1)
    points = []
    for point in value:
        if (
            not isinstance(point, list)
            or len(point) != 2
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in point)
            or not all(abs(v) <= limit for v in point)
        ):
            raise AnnotationError("each point is [column, row] in image pixels")
        points.append([float(point[0]), float(point[1])])
    return points


def delete(user, annotation_id: int) -> bool:
    """Delete one of the user's own annotations (on a study they may still see)."""
    deleted, _ = Annotation.objects.filter(
        pk=annotation_id, user=user, study__in=visible_studies(user)
    ).delete()
    return bool(deleted)


def as_json(annotation: Annotation) -> dict:
    return {
        "id": annotation.pk,
        "kind": annotation.kind,
        "sop_instance_uid": annotation.sop_instance_uid,
        "frame": annotation.frame,
        "points": annotation.points,
        "label": annotation.label,
        "created_at": annotation.created_at.isoformat(),
    }
