"""Registering remote DICOM nodes and deciding what a calling AE may do.

The DICOM receiver asks authorize() once per association and operation; the management
command and the admin call add_node/remove_node/list_nodes.
"""

import functools
import ipaddress
import operator
import socket
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from backend.accounts.models import AccessGroup, GroupRule, StudyShare
from backend.archive.access import rule_condition
from backend.archive.models import Study

from .models import RemoteNode

Operation = Literal["echo", "store", "find", "retrieve"]


class NodeError(ValueError):
    """A node cannot be added or removed; the message says why."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    node: RemoteNode | None = None


def add_node(
    ae_title: str, host: str, port: int, name: str = "", group: str = "", **permissions
) -> RemoteNode:
    """Register a node, limited to the access group named `group` if given; raises
    NodeError for a bad value, an unknown group or an AE title already registered."""
    node = RemoteNode(ae_title=ae_title, host=host, port=port, name=name)
    if group:
        node.access_group = _group(group)
    for flag, value in permissions.items():
        setattr(node, flag, value)
    try:
        node.full_clean(validate_unique=False)
    except ValidationError as exc:
        raise NodeError(_describe(exc)) from None
    try:
        with transaction.atomic():
            node.save()
    except IntegrityError:
        raise NodeError(f"AE title {node.ae_title!r} is already registered") from None
    return node


def _group(name: str) -> AccessGroup:
    found = AccessGroup.objects.filter(name=name).first()
    if found is None:
        raise NodeError(f"no access group named {name!r}")
    return found


def remove_node(ae_title: str) -> None:
    deleted, _ = RemoteNode.objects.filter(ae_title=ae_title.strip(" ")).delete()
    if not deleted:
        raise NodeError(f"no node with AE title {ae_title!r}")


def list_nodes() -> QuerySet[RemoteNode]:
    return RemoteNode.objects.select_related("access_group").order_by("ae_title")


def authorize(calling_ae: str, peer_host: str, operation: Operation) -> Decision:
    """May the AE calling from peer_host perform operation?

    Verification (C-ECHO) reveals nothing and is open to all. Storing is open to all unless
    LIGHTBOX_DICOM_ACCEPT_ANY_STORE=0. Everything else needs a registered node, calling
    from its registered host (an AE title alone is trivially spoofed), with the right flag.
    """
    if operation == "echo":
        return Decision(True, "verification is open to every AE")
    if operation == "store" and settings.DICOM_ACCEPT_ANY_STORE:
        return Decision(True, "any AE may store (LIGHTBOX_DICOM_ACCEPT_ANY_STORE=1)")
    node = RemoteNode.objects.filter(ae_title=calling_ae.strip(" ")).first()
    if node is None:
        return Decision(False, f"calling AE title {calling_ae!r} is not a registered node")
    if not host_matches(node.host, peer_host):
        return Decision(
            False, f"{calling_ae!r} is registered at {node.host}, not {peer_host}", node
        )
    flag = {"store": None, "find": "can_query", "retrieve": "can_retrieve"}.get(operation)
    if flag and not getattr(node, flag):
        return Decision(False, f"{calling_ae!r} is not allowed to {operation}", node)
    return Decision(True, f"registered node {node}", node)


def host_matches(registered: str, peer_host: str) -> bool:
    """Is peer_host (an IP address) the registered host, given as an address or a name?"""
    peer = _address(peer_host)
    if peer is None:
        return registered == peer_host
    if _address(registered) is not None:
        return _address(registered) == peer
    try:
        infos = socket.getaddrinfo(registered, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return any(_address(str(info[4][0])) == peer for info in infos)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    # An IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _describe(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        # The first message of each field: ours, which cite the standard.
        return "; ".join(messages[0] for messages in exc.message_dict.values())
    return " ".join(exc.messages)


def studies_for_node(node: RemoteNode | None) -> QuerySet[Study]:
    """The studies a registered node may query and retrieve (C-FIND, C-MOVE, C-GET).

    A node limited to an access group gets that group's studies: those matching any of its
    rules, and those shared with the group (unexpired), as its members would through the
    group. A node without a group gets every study. No node (which authorize() never lets
    through) gets nothing.
    """
    if node is None:
        return Study.objects.none()
    if node.access_group_id is None:
        return Study.objects.all()
    return Study.objects.filter(group_condition(node.access_group_id))


def group_condition(group_id: int) -> Q:
    """The studies of one access group, as a condition on Study."""
    rules = GroupRule.objects.filter(group_id=group_id)
    condition = functools.reduce(operator.or_, map(rule_condition, rules), Q(pk__in=[]))
    shares = StudyShare.objects.filter(group_id=group_id).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
    )
    return condition | Q(pk__in=shares.values("study_id"))
