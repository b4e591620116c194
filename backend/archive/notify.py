"""Events the archive publishes (their schemas are declared in backend/live/events.py)."""

from backend.live.events import STUDIES_GROUP, publish

from .models import Series, Study


def study_changed(study: Study, series: Series, change: str) -> None:
    """Tell open worklists that a study changed, once the current transaction commits."""
    study.refresh_from_db(fields=["number_of_series", "number_of_instances", "modalities_in_study"])
    publish(
        STUDIES_GROUP,
        {
            "type": "study.changed",
            "study_instance_uid": study.study_instance_uid,
            "series_instance_uid": series.series_instance_uid,
            "change": change,
            "number_of_series": study.number_of_series,
            "number_of_instances": study.number_of_instances,
            "modalities_in_study": study.modalities_in_study,
        },
    )
