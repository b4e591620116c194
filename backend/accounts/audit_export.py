"""The audit log as DICOM audit messages (PS3.15 §A.5), sent to a syslog collector.

Each AuditEvent row maps onto one DICOM Audit Message, the XML of the DICOM Audit Message
Schema (PS3.15 §A.5.1, derived from RFC 3881): AuditMessage with EventIdentification,
ActiveParticipant+, AuditSourceIdentification and ParticipantObjectIdentification*. The
event's kind chooses the message of §A.5.3 (EVENTS below; codes from PS3.16 CID 400-404).

With LIGHTBOX_AUDIT_SYSLOG set (udp://host:514, tcp://host:6514 or tls://host:6514), each
new row is sent once its transaction commits, as RFC 5424 syslog (facility authpriv,
MSGID IHE+RFC-3881 as IHE ITI-20 asks) over UDP (RFC 5426), TCP (RFC 6587 octet counting)
or TLS (RFC 5425). A background thread sends: a request never waits for the collector,
and never fails because of it. While the collector is unreachable messages wait in memory
(up to QUEUE_SIZE, then new ones are dropped and counted); the database rows remain the
record either way.
"""

import atexit
import base64
import ipaddress
import itertools
import json
import logging
import os
import queue
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from django.conf import settings
from django.db import transaction

from .models import AuditEvent

log = logging.getLogger(__name__)

# --- Codes (PS3.16) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """A coded value (csd-code, codeSystemName, originalText = DICOM Code Meaning)."""

    value: str
    scheme: str
    meaning: str


def dcm(value: str, meaning: str) -> Code:
    return Code(value, "DCM", meaning)


# CID 400 Audit Event ID
APPLICATION_ACTIVITY = dcm("110100", "Application Activity")
AUDIT_LOG_USED = dcm("110101", "Audit Log Used")
INSTANCES_ACCESSED = dcm("110103", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = dcm("110104", "DICOM Instances Transferred")
IMPORT = dcm("110107", "Import")
QUERY = dcm("110112", "Query")
SECURITY_ALERT = dcm("110113", "Security Alert")
USER_AUTHENTICATION = dcm("110114", "User Authentication")
# CID 401 Audit Event Type Code, CID 403 Security Alert Type Code
APPLICATION_START = dcm("110120", "Application Start")
APPLICATION_STOP = dcm("110121", "Application Stop")
LOGIN = dcm("110122", "Login")
LOGOUT = dcm("110123", "Logout")
NODE_AUTHENTICATION = dcm("110126", "Node Authentication")
SECURITY_CONFIGURATION = dcm("110129", "Security Configuration")
OBJECT_SECURITY_CHANGED = dcm("110135", "Object Security Attributes Changed")
USER_SECURITY_CHANGED = dcm("110137", "User Security Attributes Changed")
# CID 402 Audit Active Participant Role ID Code
APPLICATION = dcm("110150", "Application")
DESTINATION = dcm("110152", "Destination Role ID")
SOURCE = dcm("110153", "Source Role ID")
# CID 404 Audit Participant Object ID Type Code, and RFC 3881's own values (§A.5.1.2.4)
STUDY_UID = dcm("110180", "Study Instance UID")
SOP_CLASS_UID = dcm("110181", "SOP Class UID")
NODE_ID = dcm("110182", "Node ID")
PATIENT_NUMBER = Code("2", "RFC-3881", "Patient Number")
USER_IDENTIFIER = Code("11", "RFC-3881", "User Identifier")
URI = Code("12", "RFC-3881", "URI")
ACCESS_GROUP = Code("access-group", "99LIGHTBOX", "Access Group")

# Query/Retrieve FIND SOP Classes (PS3.4 §C.6): what a query's object names.
FIND_SOP_CLASS = {
    "patient": "1.2.840.10008.5.1.4.1.2.1.1",
    "study": "1.2.840.10008.5.1.4.1.2.2.1",
}
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

# EventOutcomeIndicator (§A.5.1): 0 success, 4 minor failure, 8 serious failure.
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE = "0", "4", "8"

# --- The message, as data ------------------------------------------------------------


@dataclass
class Participant:
    """An ActiveParticipant: a person or process that took part."""

    user_id: str
    requestor: bool
    roles: tuple[Code, ...] = ()
    alternative_user_id: str = ""
    access_point: str = ""


@dataclass
class Thing:
    """A ParticipantObjectIdentification: a patient, study, query, user, group or node."""

    object_id: str
    type_code: str  # 1 person, 2 system object, 3 organisation, 4 other
    role: str  # §A.5.1.2.2: 1 patient, 3 report, 11 security user, 12 group, 13 resource
    id_type: Code
    name: str = ""
    query: bytes = b""
    details: list[tuple[str, bytes]] = field(default_factory=list)
    instances: int | None = None  # DICOM Instances Transferred: how many of the study


@dataclass
class Message:
    event_id: Code
    action: str  # EventActionCode: C, R, U, D, E
    outcome: str
    when: str
    participants: list[Participant]
    things: list[Thing]
    type_codes: tuple[Code, ...] = ()
    description: str = ""


# --- Mapping AuditEvent rows ---------------------------------------------------------


Build = Callable[[AuditEvent], tuple[list[Participant], list[Thing]]]


@dataclass(frozen=True)
class Kind:
    event_id: Code
    action: str
    build: "Build"
    type_code: Code | None = None
    failure: str = MINOR_FAILURE  # the outcome indicator of a failed event


def _lightbox(requestor: bool = False, *roles: Code) -> Participant:
    """This application: AE title, its AE titles as §A.5.2.2 writes them, its host."""
    return Participant(
        settings.AE_TITLE,
        requestor,
        roles,
        alternative_user_id=f"AETITLES={settings.AE_TITLE}",
        access_point=socket.gethostname(),
    )


def _person(event: AuditEvent, requestor: bool = True, *roles: Code) -> Participant:
    """The signed-in user, or the username an anonymous request gave (a failed login)."""
    username = event.user.get_username() if event.user is not None else ""
    username = username or str(event.detail.get("username") or "") or "anonymous"
    return Participant(username, requestor, roles, access_point=_host(event.peer_address))


def _peer(event: AuditEvent, requestor: bool = True, *roles: Code) -> Participant:
    """The remote application entity that called Lightbox."""
    title = event.calling_ae or "UNKNOWN"
    return Participant(
        title,
        requestor,
        roles,
        alternative_user_id=f"AETITLES={title}",
        access_point=_host(event.peer_address),
    )


def _called(event: AuditEvent, *roles: Code) -> Participant:
    """The remote node Lightbox called (its jobs: C-FIND, C-MOVE/C-GET, C-STORE as SCU)."""
    title = event.called_ae or "UNKNOWN"
    return Participant(
        title,
        False,
        roles,
        alternative_user_id=f"AETITLES={title}",
        access_point=_host(event.peer_address),
    )


def _host(address: str) -> str:
    """An address without its port ("10.0.0.5:104", "[::1]:8000" → the host)."""
    if address.startswith("["):
        return address[1:].split("]")[0]
    if address.count(":") == 1:
        return address.split(":")[0]
    return address


def _studies(event: AuditEvent) -> list[str]:
    listed = event.detail.get("studies")
    uids = [str(uid) for uid in listed] if isinstance(listed, list) else []
    if event.study_instance_uid and event.study_instance_uid not in uids:
        uids.insert(0, event.study_instance_uid)
    return [uid for uid in uids if uid]


def _study_things(event: AuditEvent, count_key: str = "") -> list[Thing]:
    """One object per study (Study Instance UID, §A.5.3.5), then the patient if known."""
    instances = event.detail.get(count_key) if count_key else None
    count = instances if isinstance(instances, int) else None
    things = [Thing(uid, "2", "3", STUDY_UID, instances=count) for uid in _studies(event)]
    if event.patient_id:
        things.append(Thing(event.patient_id, "1", "1", PATIENT_NUMBER))
    return things


def received_from_peer(event):
    """C-STORE received (§A.5.3.5, action C): the calling AE sent, Lightbox received."""
    parties = [_peer(event, True, SOURCE), _lightbox(False, DESTINATION)]
    return parties, _study_things(event, "instances")


def sent_to_peer(event):
    """C-GET or C-MOVE answered: Lightbox sent to the requestor or the Move Destination."""
    destination = str(event.detail.get("destination") or "")
    if not destination:  # C-GET: back to the requestor
        return [_lightbox(False, SOURCE), _peer(event, True, DESTINATION)], _study_things(event)
    receiver = Participant(destination, False, (DESTINATION,), f"AETITLES={destination}")
    parties = [_lightbox(False, SOURCE), receiver, _peer(event, True)]
    return parties, _study_things(event)


def received_from_user(event):
    """STOW-RS (action C): the user sent, Lightbox received."""
    return [_person(event, True, SOURCE), _lightbox(False, DESTINATION)], _study_things(event)


def sent_to_user(event):
    """WADO: the user's client received instances, frames or bulk data (action R)."""
    return [_lightbox(False, SOURCE), _person(event, True, DESTINATION)], _study_things(event)


def accessed_by_user(event):
    """Shown to the user (metadata, rendered images, thumbnails, the viewer)."""
    return [_person(event), _lightbox()], _study_things(event)


def job_received(event):
    """A retrieve job: the remote node sent to Lightbox, at a user's request."""
    parties = [_called(event, SOURCE), _lightbox(False, DESTINATION)]
    return [*parties, _person(event)], _study_things(event)


def job_sent(event):
    """A send job: Lightbox sent to the remote node, at a user's request."""
    parties = [_lightbox(False, SOURCE), _called(event, DESTINATION)]
    return [*parties, _person(event)], _study_things(event)


def peer_query(event):
    """C-FIND (§A.5.3.10): the calling AE asked, Lightbox answered."""
    parties = [_peer(event, True, SOURCE), _lightbox(False, DESTINATION)]
    model = str(event.detail.get("model") or "study")
    keys = event.detail.get("query") if isinstance(event.detail.get("query"), dict) else {}
    return parties, [_dimse_query(model, keys or {}), *_patient(event)]


def web_query(event):
    """QIDO-RS: the user asked, Lightbox answered; the query is the URL's query string."""
    parties = [_person(event, True, SOURCE), _lightbox(False, DESTINATION)]
    text = str(event.detail.get("query") or "").encode()
    query = Thing(FIND_SOP_CLASS["study"], "2", "3", SOP_CLASS_UID, query=text)
    query.details.append(("QueryEncoding", b"UTF-8"))
    return parties, [query, *_patient(event)]


def job_query(event):
    """A find job: Lightbox asked the remote node, for a user."""
    parameters = event.detail.get("parameters") or {}
    keys = parameters.get("keys") if isinstance(parameters, dict) else {}
    parties = [_lightbox(False, SOURCE), _called(event, DESTINATION), _person(event)]
    return parties, [_dimse_query("study", keys if isinstance(keys, dict) else {})]


def _patient(event: AuditEvent) -> list[Thing]:
    return [Thing(event.patient_id, "1", "1", PATIENT_NUMBER)] if event.patient_id else []


def _dimse_query(model: str, keys: dict) -> Thing:
    """The query object: its SOP Class, the identifier encoded in Explicit VR Little Endian
    and that transfer syntax (§A.5.3.10); keys pydicom cannot encode go as JSON instead."""
    sop_class = FIND_SOP_CLASS.get(model, FIND_SOP_CLASS["study"])
    encoded = _encode_identifier(keys)
    if encoded is not None:
        thing = Thing(sop_class, "2", "3", SOP_CLASS_UID, query=encoded)
        thing.details.append(("TransferSyntax", EXPLICIT_VR_LITTLE_ENDIAN.encode()))
        return thing
    thing = Thing(sop_class, "2", "3", SOP_CLASS_UID, query=json.dumps(keys).encode())
    thing.details.append(("QueryEncoding", b"UTF-8"))
    return thing


def _encode_identifier(keys: dict) -> bytes | None:
    from pydicom import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    try:
        ds = Dataset()
        for keyword, value in keys.items():
            setattr(ds, str(keyword), value)
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_dataset(buffer, ds)
        return buffer.getvalue()
    except Exception:
        return None


def authentication(event):
    """Login and logout (§A.5.3.12): the person and the node that signed them in."""
    return [_person(event), _lightbox()], []


def security_alert(event):
    """Something changed a user's or an object's security, or was refused (§A.5.3.11):
    who did it, and what it was done to."""
    actor = _peer(event) if event.calling_ae and event.user is None else _person(event)
    things = _security_subjects(event)
    reason = event.detail.get("reason")
    if reason and things:
        things[0].details.append(("Alert Description", str(reason)[:1000].encode()))
    return [actor, _lightbox()], things


def _security_subjects(event: AuditEvent) -> list[Thing]:
    detail, things = event.detail, []
    target = detail.get("target")
    if isinstance(target, dict) and target.get("username"):
        username = str(target["username"])
        things.append(Thing(username, "1", "11", USER_IDENTIFIER, name=username))
    group = detail.get("group")
    if isinstance(group, dict) and group.get("name"):
        name = str(group["name"])
        things.append(Thing(name, "2", "12", ACCESS_GROUP, name=name))
    if event.event_type == "dicom.rejected" and event.calling_ae:
        title = event.calling_ae
        things.append(Thing(title, "2", "13", NODE_ID, name=title))
    things.extend(_study_things(event))
    if not things and event.user is not None:  # a change to the user's own account
        username = event.user.get_username()
        things.append(Thing(username, "1", "11", USER_IDENTIFIER, name=username))
    return things


def audit_log_used(event):
    """The audit log was read or exported (§A.5.3.2)."""
    log_uri = "urn:lightbox:audit-log"
    thing = Thing(log_uri, "2", "13", URI, name="Security Audit Log")
    return [_person(event), _lightbox()], [thing]


def imported(event):
    """Files imported by an operator (manage.py import, §A.5.3.9): Lightbox received them
    from media; the user who ran it, when known, asked."""
    parties = [_lightbox(event.user is None, DESTINATION)]
    if event.user is not None:
        parties.append(_person(event))
    return parties, _study_things(event, "instances")


def application_activity(event):
    """A Lightbox process started or stopped (§A.5.3.1)."""
    return [_lightbox(False, APPLICATION)], []


READ, CREATE, EXECUTE = "R", "C", "E"
SKIPPED: frozenset[str] = frozenset(
    # Verification and the association's own bookkeeping reveal nothing and have no
    # message of their own; what an association did is sent as its operations.
    {"dicom.echo", "dicom.scu.echo", "dicom.association"}
)
EVENTS: dict[str, Kind] = {
    # DICOM network (worker/dimse, backend/nodes/jobs.py)
    "dicom.store": Kind(INSTANCES_TRANSFERRED, CREATE, received_from_peer),
    "dicom.get": Kind(INSTANCES_TRANSFERRED, READ, sent_to_peer),
    "dicom.move": Kind(INSTANCES_TRANSFERRED, READ, sent_to_peer),
    "dicom.find": Kind(QUERY, EXECUTE, peer_query),
    "dicom.rejected": Kind(SECURITY_ALERT, EXECUTE, security_alert, NODE_AUTHENTICATION),
    "dicom.scu.find": Kind(QUERY, EXECUTE, job_query),
    "dicom.scu.retrieve": Kind(INSTANCES_TRANSFERRED, CREATE, job_received),
    "dicom.scu.send": Kind(INSTANCES_TRANSFERRED, READ, job_sent),
    # DICOMweb and the web pages
    "dicomweb.query": Kind(QUERY, EXECUTE, web_query),
    "dicomweb.store": Kind(INSTANCES_TRANSFERRED, CREATE, received_from_user),
    "dicomweb.retrieve": Kind(INSTANCES_ACCESSED, READ, accessed_by_user),
    "archive.import": Kind(IMPORT, CREATE, imported),
    "web.retrieve": Kind(INSTANCES_ACCESSED, READ, accessed_by_user),
    "web.upload": Kind(INSTANCES_TRANSFERRED, CREATE, received_from_user),
    "viewer.study_opened": Kind(INSTANCES_ACCESSED, READ, accessed_by_user),
    "viewer.images_streamed": Kind(INSTANCES_ACCESSED, READ, accessed_by_user),
    # Signing in (backend/accounts/signin.py, throttle.py)
    "auth.login": Kind(USER_AUTHENTICATION, EXECUTE, authentication, LOGIN),
    "auth.login_failed": Kind(USER_AUTHENTICATION, EXECUTE, authentication, LOGIN),
    "auth.2fa_failed": Kind(USER_AUTHENTICATION, EXECUTE, authentication, LOGIN),
    "auth.locked": Kind(
        USER_AUTHENTICATION, EXECUTE, authentication, LOGIN, failure=SERIOUS_FAILURE
    ),
    "auth.logout": Kind(USER_AUTHENTICATION, EXECUTE, authentication, LOGOUT),
    # The audit log itself
    "admin.audit_exported": Kind(AUDIT_LOG_USED, READ, audit_log_used),
    "admin.audit_viewed": Kind(AUDIT_LOG_USED, READ, audit_log_used),
    # Lightbox processes
    "application.started": Kind(
        APPLICATION_ACTIVITY, EXECUTE, application_activity, APPLICATION_START
    ),
    "application.stopped": Kind(
        APPLICATION_ACTIVITY, EXECUTE, application_activity, APPLICATION_STOP
    ),
}
# Everything else that changes who may do or see what is a Security Alert (§A.5.3.11).
SECURITY_PREFIXES: dict[str, Code] = {
    "auth.": USER_SECURITY_CHANGED,  # password, two-factor, API tokens, sessions
    "account.": USER_SECURITY_CHANGED,  # invitations accepted
    "admin.user_": USER_SECURITY_CHANGED,
    "admin.password_": USER_SECURITY_CHANGED,
    "admin.sessions_": USER_SECURITY_CHANGED,
    "admin.token_": USER_SECURITY_CHANGED,
    "admin.invitation_": USER_SECURITY_CHANGED,
    "admin.group_": OBJECT_SECURITY_CHANGED,
    "admin.rule_": OBJECT_SECURITY_CHANGED,
    "admin.share_": OBJECT_SECURITY_CHANGED,
    "admin.node_": SECURITY_CONFIGURATION,
    "admin.": SECURITY_CONFIGURATION,
}
# WADO resources that hand the instances themselves to the client, not a picture of them:
# those retrieves are transfers, the others (metadata, rendered, thumbnail) accesses.
TRANSFERRED_RESOURCES = {"instances", "frames", "bulkdata"}
WADO_TRANSFER = Kind(INSTANCES_TRANSFERRED, READ, sent_to_user)


def kind_of(event_type: str, detail: dict | None = None) -> Kind | None:
    """The message an event type maps onto; None for the SKIPPED ones. Unknown types become
    a Security Alert whose event type is Lightbox's own code (99LIGHTBOX), so that nothing
    recorded is left out of the export."""
    if event_type in SKIPPED:
        return None
    resource = (detail or {}).get("resource")
    if event_type == "dicomweb.retrieve" and resource in TRANSFERRED_RESOURCES:
        return WADO_TRANSFER
    if event_type in EVENTS:
        return EVENTS[event_type]
    for prefix, type_code in SECURITY_PREFIXES.items():
        if event_type.startswith(prefix):
            return Kind(SECURITY_ALERT, EXECUTE, security_alert, type_code)
    own = Code(event_type, "99LIGHTBOX", event_type)
    return Kind(SECURITY_ALERT, EXECUTE, security_alert, own)


def message_for(event: AuditEvent) -> Message | None:
    kind = kind_of(event.event_type, event.detail if isinstance(event.detail, dict) else {})
    if kind is None:
        return None
    participants, things = kind.build(event)
    failed = event.outcome != AuditEvent.Outcome.SUCCESS
    reason = event.detail.get("reason") if isinstance(event.detail, dict) else None
    return Message(
        event_id=kind.event_id,
        action=kind.action,
        outcome=kind.failure if failed else SUCCESS,
        when=_utc(event),
        participants=participants,
        things=things,
        type_codes=(kind.type_code,) if kind.type_code else (),
        description=str(reason)[:1000] if failed and reason else "",
    )


def _utc(event: AuditEvent) -> str:
    """EventDateTime and the syslog TIMESTAMP: UTC, unambiguous (§A.5.2.5)."""
    when = event.created_at.astimezone(UTC).isoformat(timespec="milliseconds")
    return when.replace("+00:00", "Z")


# --- XML (PS3.15 §A.5.1) -------------------------------------------------------------

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    """Text a peer or user supplied, without the characters XML 1.0 cannot carry."""
    return _NOT_XML.sub("\ufffd", text)


def _code(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(
        parent,
        tag,
        {
            "csd-code": _clean(code.value),
            "codeSystemName": code.scheme,
            "originalText": _clean(code.meaning),
        },
    )


def to_xml(message: Message) -> bytes:
    """The AuditMessage document, UTF-8, with its XML declaration."""
    root = ET.Element("AuditMessage")
    _event_identification(root, message)
    for participant in message.participants:
        _active_participant(root, participant)
    source = ET.SubElement(root, "AuditSourceIdentification", {"AuditSourceID": _source_id()})
    ET.SubElement(source, "AuditSourceTypeCode", {"csd-code": "4"})  # application server
    for thing in message.things:
        _participant_object(root, thing)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _source_id() -> str:
    return _clean(settings.AE_TITLE)


def _event_identification(root: ET.Element, message: Message) -> None:
    event = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": message.action,
            "EventDateTime": message.when,
            "EventOutcomeIndicator": message.outcome,
        },
    )
    _code(event, "EventID", message.event_id)
    for type_code in message.type_codes:
        _code(event, "EventTypeCode", type_code)
    if message.description:
        ET.SubElement(event, "EventOutcomeDescription").text = _clean(message.description)


def _active_participant(root: ET.Element, participant: Participant) -> None:
    attributes = {
        "UserID": _clean(participant.user_id),
        "UserIsRequestor": "true" if participant.requestor else "false",
    }
    if participant.alternative_user_id:
        attributes["AlternativeUserID"] = _clean(participant.alternative_user_id)
    if participant.access_point:
        attributes["NetworkAccessPointID"] = _clean(participant.access_point)
        attributes["NetworkAccessPointTypeCode"] = _access_point_type(participant.access_point)
    element = ET.SubElement(root, "ActiveParticipant", attributes)
    for role in participant.roles:
        _code(element, "RoleIDCode", role)


def _access_point_type(access_point: str) -> str:
    try:
        ipaddress.ip_address(access_point)
    except ValueError:
        return "1"  # machine name
    return "2"  # IP address


def _participant_object(root: ET.Element, thing: Thing) -> None:
    element = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": _clean(thing.object_id),
            "ParticipantObjectTypeCode": thing.type_code,
            "ParticipantObjectTypeCodeRole": thing.role,
        },
    )
    _code(element, "ParticipantObjectIDTypeCode", thing.id_type)
    if thing.query:
        query = ET.SubElement(element, "ParticipantObjectQuery")
        query.text = base64.b64encode(thing.query).decode()
    elif thing.name:
        ET.SubElement(element, "ParticipantObjectName").text = _clean(thing.name)
    for kind, value in thing.details:
        ET.SubElement(
            element,
            "ParticipantObjectDetail",
            {"type": kind, "value": base64.b64encode(value).decode()},
        )
    if thing.instances is not None:
        description = ET.SubElement(element, "ParticipantObjectDescription")
        ET.SubElement(description, "SOPClass", {"NumberOfInstances": str(thing.instances)})


def audit_message(event: AuditEvent) -> bytes | None:
    """The DICOM audit message XML of one audit row; None for the SKIPPED kinds."""
    message = message_for(event)
    return to_xml(message) if message is not None else None


# --- Syslog (RFC 5424) -----------------------------------------------------------------

FACILITY_AUTHPRIV, SEVERITY_NOTICE = 10, 5
APP_NAME = "lightbox"
MSGID = "IHE+RFC-3881"
BOM = b"\xef\xbb\xbf"


def syslog_frame(xml: bytes, when: str) -> bytes:
    """An RFC 5424 message carrying the XML: <PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG,
    the MSG marked as UTF-8 by its byte order mark (RFC 5424 §6.4)."""
    host = re.sub(r"[^!-~]", "", socket.gethostname())[:255] or "-"
    header = f"<{FACILITY_AUTHPRIV * 8 + SEVERITY_NOTICE}>1 {when} {host} {APP_NAME} "
    header += f"{os.getpid()} {MSGID} - "
    return header.encode() + BOM + xml


@dataclass(frozen=True)
class Destination:
    transport: str  # udp, tcp or tls
    host: str
    port: int


def parse_destination(url: str) -> Destination:
    """udp://host:514, tcp://host:6514, tls://host:6514 (the port defaults to these)."""
    parts = urlsplit(url)
    defaults = {"udp": 514, "tcp": 601, "tls": 6514}
    if parts.scheme not in defaults or not parts.hostname:
        raise ValueError(
            f"LIGHTBOX_AUDIT_SYSLOG must be udp://, tcp:// or tls://HOST[:PORT]: {url}"
        )
    return Destination(parts.scheme, parts.hostname, parts.port or defaults[parts.scheme])


QUEUE_SIZE = 10_000
CONNECT_TIMEOUT = 5.0
RETRY_SECONDS = (0.5, 1, 2, 5, 10, 30)


class SyslogSender:
    """Sends framed messages from a daemon thread, in order; retries a failed message with
    back-off, and drops new ones (counting them) once QUEUE_SIZE are waiting."""

    def __init__(self, destination: Destination):
        self.destination = destination
        self.pid = os.getpid()
        self.dropped = 0
        self.sent = 0
        self._queue: queue.Queue[bytes] = queue.Queue(QUEUE_SIZE)
        self._socket: socket.socket | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="audit-syslog", daemon=True)
        self._thread.start()

    def submit(self, message: bytes) -> bool:
        try:
            self._idle.clear()
            self._queue.put_nowait(message)
            return True
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("audit syslog unreachable: %d messages dropped", self.dropped)
            return False

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything submitted was sent (tests; process exit)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            self._deliver(message)
            if self._queue.empty():
                self._idle.set()

    def _deliver(self, message: bytes) -> None:
        for attempt in itertools.count():
            try:
                self._send(message)
                self.sent += 1
                return
            except OSError as exc:
                self._close()
                if attempt == 0:
                    log.warning("audit syslog %s: %s; retrying", self.destination.host, exc)
                time.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])

    def _send(self, message: bytes) -> None:
        if self._socket is None:
            self._socket = self._connect()
        if self.destination.transport == "udp":
            self._socket.send(message)
        else:
            # RFC 6587 §3.4.1 / RFC 5425 §4.3: octet counting.
            self._socket.sendall(f"{len(message)} ".encode() + message)

    def _connect(self) -> socket.socket:
        address = (self.destination.host, self.destination.port)
        if self.destination.transport == "udp":
            family, kind, proto, _, target = socket.getaddrinfo(*address, type=socket.SOCK_DGRAM)[0]
            udp = socket.socket(family, kind, proto)
            udp.connect(target)
            return udp
        tcp = socket.create_connection(address, timeout=CONNECT_TIMEOUT)
        if self.destination.transport == "tls":
            context = ssl.create_default_context(cafile=settings.LIGHTBOX_AUDIT_SYSLOG_CA or None)
            return context.wrap_socket(tcp, server_hostname=self.destination.host)
        return tcp

    def _close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None


_sender: SyslogSender | None = None
_sender_lock = threading.Lock()


def sender() -> SyslogSender | None:
    """This process's sender for LIGHTBOX_AUDIT_SYSLOG (None when unset); a new one after a
    fork (Celery's workers) or a change of destination."""
    global _sender
    url = settings.LIGHTBOX_AUDIT_SYSLOG
    if not url:
        return None
    destination = parse_destination(url)
    with _sender_lock:
        current = _sender
        if current is None or current.pid != os.getpid() or current.destination != destination:
            _sender = current = SyslogSender(destination)
        return current


def send(event: AuditEvent) -> None:
    """Queue one row's message; never raises (the audit row is written whatever happens)."""
    try:
        current = sender()
        xml = audit_message(event) if current is not None else None
        if current is not None and xml is not None:
            current.submit(syslog_frame(xml, _utc(event)))
    except Exception:
        log.exception("could not export audit event %s to syslog", event.pk)


def send_on_commit(event: AuditEvent) -> None:
    """The post_save hook (backend/accounts/audit.py): send once the row is committed."""
    if settings.LIGHTBOX_AUDIT_SYSLOG:
        transaction.on_commit(lambda: send(event))


@atexit.register
def _flush_at_exit() -> None:
    if _sender is not None and _sender.pid == os.getpid():
        _sender.wait_idle(1.0)
