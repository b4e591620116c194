"""The one place that decides which studies a user may see.

Every list, count and retrieve goes through visible_studies(), so the access rules of the
accounts work (roles, groups, shares) change behaviour here and nowhere else. Until then:
every active, logged-in user sees every study.
"""

from django.db.models import QuerySet

from .models import Series, Study


def visible_studies(user) -> QuerySet[Study]:
    if user is None or not user.is_authenticated or not user.is_active:
        return Study.objects.none()
    return Study.objects.all()


def visible_series(user) -> QuerySet[Series]:
    return Series.objects.filter(study__in=visible_studies(user))
