"""The one place that decides which studies a user may see.

Every list, count and retrieve goes through visible_studies(). Roles (accounts.Role):

- admin (or a Django superuser): every study.
- radiologist: the studies of their access groups, each group's studies being those
  matching any of its rules (institution, sending AE title, modality, referring physician,
  or every study), plus studies shared with them or their groups.
- referring physician: studies shared with them or their groups, and studies whose
  ReferringPhysicianName is their configured name or whose AccessionNumber starts with
  their configured prefix.
- uploader/technologist: the studies they sent (STOW-RS, upload), plus shares.

A user without a profile is a radiologist in no group: they see nothing until an admin
gives them a group. Inactive and anonymous users see nothing.
"""

import functools
import operator
import re

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from backend.accounts.models import AccessGroup, GroupRule, Profile, Role, StudyShare

from .attributes import search_key
from .models import Series, Study, StudySource
from .query import _Wildcard


def role_of(user) -> str:
    if user is None or not user.is_authenticated or not user.is_active:
        return ""
    if user.is_superuser:
        return Role.ADMIN
    profile = _profile(user)
    return profile.role if profile else Role.RADIOLOGIST


def is_admin(user) -> bool:
    return role_of(user) == Role.ADMIN


def _profile(user) -> Profile | None:
    try:
        return user.profile
    except Profile.DoesNotExist:
        return None


def visible_studies(user) -> QuerySet[Study]:
    role = role_of(user)
    if not role:
        return Study.objects.none()
    if role == Role.ADMIN:
        return Study.objects.all()
    condition = _shared_with(user)
    if role == Role.RADIOLOGIST:
        condition |= _group_rules(user)
    elif role == Role.REFERRING:
        condition |= _referring(user)
    elif role == Role.UPLOADER:
        condition |= Q(pk__in=StudySource.objects.filter(user=user).values("study_id"))
    return Study.objects.filter(condition)


def visible_series(user) -> QuerySet[Series]:
    return Series.objects.filter(study__in=visible_studies(user))


def can_see(user, study: Study) -> bool:
    return visible_studies(user).filter(pk=study.pk).exists()


def _shared_with(user) -> Q:
    now = timezone.now()
    shares = StudyShare.objects.filter(Q(user=user) | Q(group__members=user)).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    return Q(pk__in=shares.values("study_id"))


def _group_rules(user) -> Q:
    rules = GroupRule.objects.filter(group__in=AccessGroup.objects.filter(members=user))
    conditions = [rule_condition(rule) for rule in rules]
    return functools.reduce(operator.or_, conditions, Q(pk__in=[]))


def rule_condition(rule: GroupRule) -> Q:
    """The studies one group rule selects."""
    attribute, pattern = rule.attribute, rule.pattern.strip()
    if attribute == GroupRule.Attribute.ALL:
        return ~Q(pk__in=[])
    if not pattern:
        return Q(pk__in=[])
    if attribute == GroupRule.Attribute.INSTITUTION:
        return _matches("institution_name", pattern)
    if attribute == GroupRule.Attribute.REFERRING:
        return _matches("referring_physician_search", search_key(pattern))
    if attribute == GroupRule.Attribute.CALLING_AE:
        sources = StudySource.objects.filter(_matches("calling_ae", pattern))
        return Q(pk__in=sources.values("study_id"))
    if attribute == GroupRule.Attribute.MODALITY:
        series = Series.objects.filter(_matches("modality", pattern.upper()))
        return Q(pk__in=series.values("study_id"))
    return Q(pk__in=[])


def _matches(column: str, pattern: str) -> Q:
    if "*" in pattern or "?" in pattern:
        return Q(_Wildcard(F(column), pattern))
    return Q(**{column: pattern})


def _referring(user) -> Q:
    profile = _profile(user)
    condition = Q(pk__in=[])
    if profile is None:
        return condition
    name = search_key(profile.referring_name)
    if name:
        condition |= Q(referring_physician_search=name)
    prefix = profile.referring_accession_prefix.strip()
    if prefix and re.fullmatch(r"[^*?]+", prefix):
        condition |= Q(accession_number__startswith=prefix)
    return condition
