"""Registering remote DICOM nodes and deciding what a calling AE may do.

The DICOM receiver asks authorize() once per association and operation; the management
command and the admin call add_node/remove_node/list_nodes.
"""

import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from .models import RemoteNode

Operation = Literal["echo", "store", "find", "retrieve"]


class NodeError(ValueError):
    """A node cannot be added or removed; the message says why."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    node: RemoteNode | None = None


def add_node(ae_title: str, host: str, port: int, name: str = "", **permissions) -> RemoteNode:
    """Register a node; raises NodeError for a bad value or an AE title already registered."""
    node = RemoteNode(ae_title=ae_title, host=host, port=port, name=name)
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


def remove_node(ae_title: str) -> None:
    deleted, _ = RemoteNode.objects.filter(ae_title=ae_title.strip(" ")).delete()
    if not deleted:
        raise NodeError(f"no node with AE title {ae_title!r}")


def list_nodes() -> QuerySet[RemoteNode]:
    return RemoteNode.objects.order_by("ae_title")


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


def studies_for_node(node: RemoteNode):
    """The studies a registered node may query. Every study for now; the accounts work will
    give nodes access rules as it gives users theirs (backend/archive/access.py)."""
    from backend.archive.models import Study

    return Study.objects.all()
