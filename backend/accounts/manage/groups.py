"""Access groups on /manage: creating, renaming and deleting them, their members, and the
rules by which a group sees studies (counted here, applied by backend.archive.access).
"""

import functools
import operator
from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Prefetch, QuerySet

from backend.archive.access import rule_condition
from backend.archive.models import Study

from ..models import AccessGroup, GroupRule
from .common import Actor, ManageError, authorize, changed_detail, group_ref, record_audit, user_ref
from .inputs import encodable, get_row, text


def list_groups(actor: Actor) -> QuerySet[AccessGroup]:
    authorize(actor)
    members = Prefetch("members", queryset=User.objects.order_by("username"))
    rules = Prefetch("rules", queryset=GroupRule.objects.order_by("pk"))
    return AccessGroup.objects.prefetch_related(members, rules)


def group_names(actor: Actor) -> list[dict[str, Any]]:
    authorize(actor)
    return [{"id": g.pk, "name": g.name} for g in AccessGroup.objects.only("name")]


def count_studies(rules: Iterable[GroupRule]) -> int:
    """How many studies the rules select together (a group's studies, shares aside)."""
    conditions = [rule_condition(rule) for rule in rules]
    if not conditions:
        return 0
    return Study.objects.filter(functools.reduce(operator.or_, conditions)).count()


def _group_name(data: Mapping, group: AccessGroup | None = None) -> str:
    name = text(data, "name", 100, required=True)
    clash = AccessGroup.objects.filter(name__iexact=name)
    if group is not None:
        clash = clash.exclude(pk=group.pk)
    if clash.exists():
        raise ManageError(f"a group named {name} exists")
    return name


def check_create_group(actor: Actor, data: Mapping) -> tuple[str, str]:
    authorize(actor)
    return _group_name(data), _description(data)


def _description(data: Mapping) -> str:
    value = data.get("description") or ""
    if not isinstance(value, str) or len(value) > 2000 or not encodable(value):
        raise ManageError("description must be text of at most 2000 characters")
    if "\x00" in value:
        raise ManageError("description holds characters that cannot be stored")
    return value.strip()


@transaction.atomic
def do_create_group(actor: Actor, name: str, description: str) -> AccessGroup:
    group = AccessGroup.objects.create(name=name, description=description)
    record_audit(actor, "admin.group_changed", {"action": "created", "group": group_ref(group)})
    return group


def get_group(actor: Actor, group_id: object) -> AccessGroup:
    authorize(actor)
    return get_row(AccessGroup.objects.all(), group_id, "group")


def check_change_group(actor: Actor, group_id: object, data: Mapping) -> tuple[AccessGroup, dict]:
    group = get_group(actor, group_id)
    changes = {}
    if "name" in data:
        changes["name"] = (group.name, _group_name(data, group))
    if "description" in data:
        changes["description"] = (group.description, _description(data))
    return group, {k: v for k, v in changes.items() if v[0] != v[1]}


@transaction.atomic
def do_change_group(actor: Actor, group: AccessGroup, changes: dict) -> None:
    if not changes:
        return
    for key, (_old, new) in changes.items():
        setattr(group, key, new)
    group.save()
    detail = {"action": "changed", "group": group_ref(group), "changed": changed_detail(changes)}
    record_audit(actor, "admin.group_changed", detail)


@transaction.atomic
def do_delete_group(actor: Actor, group: AccessGroup) -> None:
    """Delete the group; its members stay, its rules and shares go with it. A group that
    limits a DICOM node stays: deleting it would silently widen what the node sees."""
    nodes = list(group.nodes.values_list("ae_title", flat=True))
    if nodes:
        raise ManageError(f"DICOM nodes are limited to this group: {', '.join(nodes)}")
    detail = {
        "action": "deleted",
        "group": group_ref(group),
        "members": list(group.members.order_by("username").values_list("username", flat=True)),
        "shares_removed": group.shares.count(),
    }
    group.delete()
    record_audit(actor, "admin.group_changed", detail)


def check_member(
    actor: Actor, group_id: object, data: Mapping, *, joining: bool
) -> tuple[AccessGroup, User]:
    """The group and the user who joins it (joining) or leaves it."""
    group = get_group(actor, group_id)
    user = get_row(User.objects.all(), data.get("user"), "user")
    if group.members.filter(pk=user.pk).exists() == joining:
        state = "already in" if joining else "not in"
        raise ManageError(f"{user.username} is {state} {group.name}")
    return group, user


@transaction.atomic
def do_add_member(actor: Actor, group: AccessGroup, user: User) -> None:
    group.members.add(user)
    detail = {"action": "member_added", "group": group_ref(group), "target": user_ref(user)}
    record_audit(actor, "admin.group_changed", detail)


@transaction.atomic
def do_remove_member(actor: Actor, group: AccessGroup, user: User) -> None:
    group.members.remove(user)
    detail = {"action": "member_removed", "group": group_ref(group), "target": user_ref(user)}
    record_audit(actor, "admin.group_changed", detail)


def check_add_rule(actor: Actor, group_id: object, data: Mapping) -> tuple[AccessGroup, str, str]:
    group = get_group(actor, group_id)
    attribute = data.get("attribute")
    if attribute not in GroupRule.Attribute.values:
        raise ManageError(f"attribute must be one of {', '.join(GroupRule.Attribute.values)}")
    required = attribute != GroupRule.Attribute.ALL
    pattern = text(data, "pattern", 200, required=required) if required else ""
    if group.rules.filter(attribute=attribute, pattern=pattern).exists():
        raise ManageError("the group has this rule already")
    return group, attribute, pattern


@transaction.atomic
def do_add_rule(actor: Actor, group: AccessGroup, attribute: str, pattern: str) -> GroupRule:
    rule = group.rules.create(attribute=attribute, pattern=pattern)
    record_audit(actor, "admin.rule_changed", {"action": "added", **_rule(rule)})
    return rule


def _rule(rule: GroupRule) -> dict:
    return {
        "group": group_ref(rule.group),
        "rule": {"id": rule.pk, "attribute": rule.attribute, "pattern": rule.pattern},
    }


def check_remove_rule(actor: Actor, rule_id: object) -> GroupRule:
    authorize(actor)
    return get_row(GroupRule.objects.select_related("group"), rule_id, "rule")


@transaction.atomic
def do_remove_rule(actor: Actor, rule: GroupRule) -> None:
    detail = {"action": "removed", **_rule(rule)}
    rule.delete()
    record_audit(actor, "admin.rule_changed", detail)
