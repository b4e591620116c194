"""Audit rows as DICOM audit messages (PS3.15 §A.5) and their trip to a syslog collector
(RFC 5424 over UDP, TCP and TLS), plus the reads that were not audited before."""

import base64
import re
import socket
import ssl
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import pydicom
import pytest
from django.contrib.auth.models import User
from django.db import transaction
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset

from backend.accounts import audit, audit_export
from backend.accounts.models import AuditEvent
from backend.archive.models import Series

from ..archive.helpers import receive_file
from ..conftest import REPO, grant_every_study, pydicom_file

pytestmark = pytest.mark.django_db(transaction=True)

STUDY = "1.2.826.0.1.3680043.8.498.11"
OTHER_STUDY = "1.2.826.0.1.3680043.8.498.12"
SYSLOG_LINE = re.compile(
    rb"^<85>1 (?P<time>\S+) (?P<host>\S+) lightbox (?P<pid>\d+) IHE\+RFC-3881 - "
    rb"\xef\xbb\xbf(?P<xml><\?xml .*)$",
    re.DOTALL,
)


@pytest.fixture(autouse=True)
def no_repeats_remembered():
    audit._recent.clear()


@pytest.fixture
def alice():
    return User.objects.create_user("alice")


# --- A validator for the DICOM Audit Message Schema (PS3.15 §A.5.1) --------------------

ACTIONS = {"C", "R", "U", "D", "E"}
OUTCOMES = {"0", "4", "8", "12"}
OBJECT_TYPES = {"1", "2", "3", "4"}
OBJECT_ROLES = {str(n) for n in range(1, 27)}


def check_code(element: ET.Element) -> None:
    """CodedValueType: csd-code, codeSystemName and originalText are required."""
    for name in ("csd-code", "codeSystemName", "originalText"):
        assert element.get(name), f"{element.tag} lacks {name}"


def check_message(xml: bytes) -> ET.Element:
    """The schema's structure, element order, required attributes and value sets."""
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(xml)  # noqa: S314 - our own output, the thing under test
    assert root.tag == "AuditMessage"
    tags = [child.tag for child in root]
    assert re.fullmatch(
        r"E(A)+S(P)*",
        "".join(
            {
                "EventIdentification": "E",
                "ActiveParticipant": "A",
                "AuditSourceIdentification": "S",
                "ParticipantObjectIdentification": "P",
            }[tag]
            for tag in tags
        ),
    ), tags
    check_event(root.find("EventIdentification"))
    for participant in root.findall("ActiveParticipant"):
        check_participant(participant)
    source = root.find("AuditSourceIdentification")
    assert source.get("AuditSourceID")
    for code in source:
        assert code.tag == "AuditSourceTypeCode" and code.get("csd-code") in set("123456789")
    for thing in root.findall("ParticipantObjectIdentification"):
        check_object(thing)
    return root


def check_event(event: ET.Element) -> None:
    assert event.get("EventActionCode") in ACTIONS
    assert event.get("EventOutcomeIndicator") in OUTCOMES
    assert datetime.fromisoformat(event.get("EventDateTime")).utcoffset().total_seconds() == 0
    children = [child.tag for child in event]
    assert children[0] == "EventID"
    assert set(children[1:]) <= {"EventTypeCode", "EventOutcomeDescription"}
    for child in event:
        if child.tag != "EventOutcomeDescription":
            check_code(child)


def check_participant(participant: ET.Element) -> None:
    assert participant.get("UserID")
    assert participant.get("UserIsRequestor") in ("true", "false")
    if participant.get("NetworkAccessPointID"):
        assert participant.get("NetworkAccessPointTypeCode") in {"1", "2", "3", "4", "5"}
    for role in participant:
        assert role.tag == "RoleIDCode"
        check_code(role)


def check_object(thing: ET.Element) -> None:
    assert thing.get("ParticipantObjectID")
    assert thing.get("ParticipantObjectTypeCode") in OBJECT_TYPES
    assert thing.get("ParticipantObjectTypeCodeRole") in OBJECT_ROLES
    children = list(thing)
    assert children[0].tag == "ParticipantObjectIDTypeCode"
    check_code(children[0])
    rest = [child.tag for child in children[1:]]
    assert rest.count("ParticipantObjectName") + rest.count("ParticipantObjectQuery") <= 1
    order = ["ParticipantObjectName", "ParticipantObjectQuery", "ParticipantObjectDetail"]
    order.append("ParticipantObjectDescription")
    positions = [order.index(tag) if tag in order[:2] else order.index(tag) for tag in rest]
    assert positions == sorted(positions), rest
    for child in children[1:]:
        if child.tag == "ParticipantObjectQuery":
            base64.b64decode(child.text, validate=True)
        if child.tag == "ParticipantObjectDetail":
            assert child.get("type")
            base64.b64decode(child.get("value"), validate=True)


def message(event: AuditEvent) -> ET.Element:
    xml = audit_export.audit_message(event)
    assert xml is not None
    return check_message(xml)


def event_id(root: ET.Element) -> str:
    return root.find("EventIdentification/EventID").get("csd-code")


def type_codes(root: ET.Element) -> list[str]:
    return [code.get("csd-code") for code in root.findall("EventIdentification/EventTypeCode")]


def objects(root: ET.Element) -> list[tuple[str, str]]:
    """(ParticipantObjectID, its ID type code) of each participant object."""
    return [
        (
            thing.get("ParticipantObjectID"),
            thing.find("ParticipantObjectIDTypeCode").get("csd-code"),
        )
        for thing in root.findall("ParticipantObjectIdentification")
    ]


def participants(root: ET.Element) -> list[tuple[str, str, list[str]]]:
    return [
        (p.get("UserID"), p.get("UserIsRequestor"), [r.get("csd-code") for r in p])
        for p in root.findall("ActiveParticipant")
    ]


# --- Mapping ---------------------------------------------------------------------------

DIMSE = {"calling_ae": "VIEWER", "called_ae": "LIGHTBOX", "peer_address": "10.0.0.7"}


def test_it_maps_a_c_find_onto_a_query_message():
    query = {"QueryRetrieveLevel": "STUDY", "PatientID": "P1", "StudyDate": "20240101-"}
    row = audit.record(
        "dicom.find", **DIMSE, patient_id="P1", detail={"model": "study", "query": query}
    )

    root = message(row)

    assert event_id(root) == "110112"
    assert root.find("EventIdentification").get("EventActionCode") == "E"
    assert participants(root) == [
        ("VIEWER", "true", ["110153"]),
        ("LIGHTBOX", "false", ["110152"]),
    ]
    assert objects(root) == [("1.2.840.10008.5.1.4.1.2.2.1", "110181"), ("P1", "2")]
    query_object = root.find("ParticipantObjectIdentification")
    encoded = base64.b64decode(query_object.find("ParticipantObjectQuery").text)
    fp = DicomBytesIO(encoded)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    identifier = read_dataset(fp, is_implicit_VR=False, is_little_endian=True)
    assert (identifier.PatientID, identifier.StudyDate) == ("P1", "20240101-")
    detail = query_object.find("ParticipantObjectDetail")
    assert detail.get("type") == "TransferSyntax"
    assert base64.b64decode(detail.get("value")) == b"1.2.840.10008.1.2.1"


def test_it_maps_a_qido_query_with_its_query_string(alice):
    row = audit.record(
        "dicomweb.query",
        user=alice,
        peer_address="192.0.2.4",
        detail={"level": "STUDY", "query": "PatientID=P1&limit=10", "results": 1},
    )

    root = message(row)

    assert event_id(root) == "110112"
    assert participants(root)[0] == ("alice", "true", ["110153"])
    query = root.find("ParticipantObjectIdentification/ParticipantObjectQuery").text
    assert base64.b64decode(query) == b"PatientID=P1&limit=10"


def test_it_maps_a_c_store_onto_instances_transferred():
    row = audit.record(
        "dicom.store", **DIMSE, study_instance_uid=STUDY, patient_id="P1", detail={"instances": 7}
    )

    root = message(row)

    assert (event_id(root), root.find("EventIdentification").get("EventActionCode")) == (
        "110104",
        "C",
    )
    assert objects(root) == [(STUDY, "110180"), ("P1", "2")]
    sop_class = root.find("ParticipantObjectIdentification/ParticipantObjectDescription/SOPClass")
    assert sop_class.get("NumberOfInstances") == "7"


def test_it_maps_a_c_move_with_its_destination_and_requestor():
    detail = {"model": "study", "destination": "WORKSTATION", "studies": [STUDY, OTHER_STUDY]}
    row = audit.record("dicom.move", **DIMSE, detail=detail)

    root = message(row)

    assert (event_id(root), root.find("EventIdentification").get("EventActionCode")) == (
        "110104",
        "R",
    )
    assert participants(root) == [
        ("LIGHTBOX", "false", ["110153"]),
        ("WORKSTATION", "false", ["110152"]),
        ("VIEWER", "true", []),
    ]
    assert objects(root) == [(STUDY, "110180"), (OTHER_STUDY, "110180")]


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("instances", "110104"),
        ("frames", "110104"),
        ("bulkdata", "110104"),
        ("metadata", "110103"),
        ("rendered", "110103"),
        ("thumbnail", "110103"),
    ],
)
def test_it_tells_wado_transfers_from_accesses(alice, resource, expected):
    row = audit.record(
        "dicomweb.retrieve",
        user=alice,
        study_instance_uid=STUDY,
        patient_id="P1",
        detail={"resource": resource},
    )
    root = message(row)
    assert event_id(root) == expected
    assert objects(root) == [(STUDY, "110180"), ("P1", "2")]


@pytest.mark.parametrize(
    ("event_type", "outcome", "indicator", "type_code"),
    [
        ("auth.login", "success", "0", "110122"),
        ("auth.login_failed", "failure", "4", "110122"),
        ("auth.2fa_failed", "failure", "4", "110122"),
        ("auth.locked", "failure", "8", "110122"),
        ("auth.logout", "success", "0", "110123"),
    ],
)
def test_it_maps_sign_ins_onto_user_authentication(
    alice, event_type, outcome, indicator, type_code
):
    row = audit.record(event_type, outcome, user=alice, peer_address="192.0.2.4")

    root = message(row)

    assert event_id(root) == "110114"
    assert type_codes(root) == [type_code]
    assert root.find("EventIdentification").get("EventOutcomeIndicator") == indicator
    assert participants(root)[0] == ("alice", "true", [])
    person = root.find("ActiveParticipant")
    assert (person.get("NetworkAccessPointID"), person.get("NetworkAccessPointTypeCode")) == (
        "192.0.2.4",
        "2",
    )


def test_it_names_the_username_tried_in_a_failed_anonymous_login():
    row = audit.record(
        "auth.login_failed", "failure", detail={"username": "mallory", "reason": "invalid"}
    )
    root = message(row)
    assert participants(root)[0][0] == "mallory"
    assert root.find("EventIdentification/EventOutcomeDescription").text == "invalid"


def test_it_maps_a_refused_association_onto_a_node_authentication_alert():
    row = audit.record(
        "dicom.rejected", "failure", **DIMSE, detail={"operation": "find", "reason": "unknown AE"}
    )

    root = message(row)

    assert (event_id(root), type_codes(root)) == ("110113", ["110126"])
    assert objects(root) == [("VIEWER", "110182")]
    detail = root.find("ParticipantObjectIdentification/ParticipantObjectDetail")
    assert detail.get("type") == "Alert Description"
    assert base64.b64decode(detail.get("value")) == b"unknown AE"


@pytest.mark.parametrize(
    ("event_type", "detail", "type_code", "subject"),
    [
        ("admin.user_changed", {"target": {"id": 1, "username": "bob"}}, "110137", ("bob", "11")),
        (
            "admin.group_changed",
            {"group": {"id": 1, "name": "CT"}},
            "110135",
            ("CT", "access-group"),
        ),
        ("auth.password_changed", {}, "110137", ("alice", "11")),
        ("account.invitation_accepted", {}, "110137", ("alice", "11")),
    ],
)
def test_it_maps_security_changes_onto_security_alerts(
    alice, event_type, detail, type_code, subject
):
    root = message(audit.record(event_type, user=alice, detail=detail))
    assert (event_id(root), type_codes(root)) == ("110113", [type_code])
    assert objects(root)[0] == subject


def test_it_maps_an_audit_export_onto_audit_log_used(alice):
    root = message(audit.record("admin.audit_exported", user=alice, detail={"rows": 10}))
    assert (event_id(root), root.find("EventIdentification").get("EventActionCode")) == (
        "110101",
        "R",
    )
    assert objects(root) == [("urn:lightbox:audit-log", "12")]


def test_it_maps_an_operator_s_import_onto_import():
    row = audit.record("archive.import", study_instance_uid=STUDY, detail={"instances": 3})
    root = message(row)
    assert (event_id(root), root.find("EventIdentification").get("EventActionCode")) == (
        "110107",
        "C",
    )
    assert participants(root) == [("LIGHTBOX", "true", ["110152"])]
    assert objects(root) == [(STUDY, "110180")]


def test_it_maps_application_start_onto_application_activity():
    root = message(audit.record("application.started"))
    assert (event_id(root), type_codes(root)) == ("110100", ["110120"])
    assert participants(root) == [("LIGHTBOX", "false", ["110150"])]


def test_it_sends_an_unknown_event_as_a_security_alert_of_its_own_type():
    root = message(audit.record("gadget.frobbed"))
    assert event_id(root) == "110113"
    code = root.find("EventIdentification/EventTypeCode")
    assert (code.get("csd-code"), code.get("codeSystemName")) == ("gadget.frobbed", "99LIGHTBOX")


@pytest.mark.parametrize("event_type", sorted(audit_export.SKIPPED))
def test_it_skips_events_without_a_dicom_message(event_type):
    assert audit_export.audit_message(audit.record(event_type, **DIMSE)) is None


def test_it_keeps_hostile_text_well_formed():
    row = audit.record(
        "dicom.rejected",
        "failure",
        calling_ae='<x a="1">\x00&',
        peer_address="10.0.0.1",
        detail={"reason": "]]><!-- \x07"},
    )
    root = message(row)
    assert participants(root)[0][0] == '<x a="1">\ufffd&'


def recorded_event_types() -> set[str]:
    """Event types written anywhere in the code, as string literals, and the ones built
    from a variable (dicom.{get,move}, dicom.scu.{kind})."""
    pattern = re.compile(
        r'"((?:auth|admin|account|archive|dicom|dicomweb|web|viewer|application)\.[a-z0-9_.]+)"'
    )
    found = set()
    for path in [*(REPO / "backend").rglob("*.py"), *(REPO / "worker").rglob("*.py")]:
        found |= set(pattern.findall(path.read_text()))
    found = {name for name in found if not name.endswith((".html", ".js", ".py"))}
    found |= {"dicom.get", "dicom.move"} | {
        f"dicom.scu.{k}" for k in ("echo", "find", "retrieve", "send")
    }
    return found


def test_it_maps_every_event_type_lightbox_records():
    types = recorded_event_types()
    assert {"dicom.store", "dicomweb.query", "web.retrieve"} <= types  # the scan works
    for event_type in sorted(types):
        kind = audit_export.kind_of(event_type, {})
        if kind is None:
            assert event_type in audit_export.SKIPPED
            continue
        assert kind.type_code is None or kind.type_code.scheme == "DCM", (
            f"{event_type} has no DICOM audit message: add it to audit_export.EVENTS"
        )


# --- Syslog -----------------------------------------------------------------------------


def parse_syslog(data: bytes) -> ET.Element:
    match = SYSLOG_LINE.match(data)
    assert match, data[:200]
    assert datetime.fromisoformat(match["time"].decode().replace("Z", "+00:00"))
    return check_message(match["xml"])


class UdpCollector:
    def __init__(self):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(5)
        self.url = f"udp://127.0.0.1:{self.socket.getsockname()[1]}"

    def receive(self) -> bytes:
        return self.socket.recv(65535)


class TcpCollector:
    """Accepts one connection at a time and splits RFC 6587 octet-counted frames."""

    def __init__(self, port: int = 0, context: ssl.SSLContext | None = None):
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self.context = context
        self.frames: list[bytes] = []
        self.arrived = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'tls' if self.context else 'tcp'}://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            if self.context is not None:
                connection = self.context.wrap_socket(connection, server_side=True)
            self._read(connection)

    def _read(self, connection) -> None:
        buffer = b""
        while chunk := connection.recv(65536):
            buffer += chunk
            while b" " in buffer:
                length, _, rest = buffer.partition(b" ")
                if len(rest) < int(length):
                    break
                with self.arrived:
                    self.frames.append(rest[: int(length)])
                    self.arrived.notify_all()
                buffer = rest[int(length) :]

    def wait(self, count: int, timeout: float = 10) -> list[bytes]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.frames) >= count, timeout), self.frames
            return list(self.frames)

    def close(self) -> None:
        self.server.close()


def test_it_sends_nothing_by_default(settings):
    settings.LIGHTBOX_AUDIT_SYSLOG = ""
    audit.record("dicom.find", **DIMSE)
    assert audit_export.sender() is None


def test_it_sends_each_event_over_udp_after_commit(settings):
    collector = UdpCollector()
    settings.LIGHTBOX_AUDIT_SYSLOG = collector.url

    with transaction.atomic():
        audit.record("dicom.store", **DIMSE, study_instance_uid=STUDY, detail={"instances": 1})

    root = parse_syslog(collector.receive())
    assert event_id(root) == "110104"
    assert objects(root) == [(STUDY, "110180")]


def test_it_sends_nothing_for_a_rolled_back_event(settings):
    collector = UdpCollector()
    settings.LIGHTBOX_AUDIT_SYSLOG = collector.url

    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record("auth.login", detail={"username": "rolled-back"})
        raise RuntimeError
    audit.record("auth.logout", detail={"username": "after"})

    root = parse_syslog(collector.receive())
    assert type_codes(root) == ["110123"]


def test_it_sends_events_in_order_over_tcp(settings):
    collector = TcpCollector()
    settings.LIGHTBOX_AUDIT_SYSLOG = collector.url
    try:
        for event_type in ("auth.login", "dicom.find", "auth.logout"):
            audit.record(event_type, **DIMSE)

        frames = collector.wait(3)
    finally:
        collector.close()
    assert [event_id(parse_syslog(frame)) for frame in frames] == ["110114", "110112", "110114"]


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return key, cert


def test_it_sends_over_tls_to_a_collector_it_trusts(settings, tmp_path):
    key, cert = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    collector = TcpCollector(context=context)
    settings.LIGHTBOX_AUDIT_SYSLOG = collector.url
    settings.LIGHTBOX_AUDIT_SYSLOG_CA = str(cert)
    try:
        audit.record("auth.login", detail={"username": "alice"})
        [frame] = collector.wait(1)
    finally:
        collector.close()
    assert event_id(parse_syslog(frame)) == "110114"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_it_neither_waits_nor_fails_while_the_collector_is_down(settings, client, tasks):
    port = free_port()
    settings.LIGHTBOX_AUDIT_SYSLOG = f"tcp://127.0.0.1:{port}"
    reader = grant_every_study(User.objects.create_user("reader"))
    client.force_login(reader)
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    series = Series.objects.get()

    started = time.monotonic()
    response = client.get(f"/api/series/{series.pk}/thumbnail")
    assert response.status_code == 200
    assert time.monotonic() - started < 2
    assert AuditEvent.objects.filter(event_type="web.retrieve").count() == 1

    # Kept and sent once the collector is back.
    collector = TcpCollector(port)
    try:
        frames = collector.wait(1, timeout=15)
    finally:
        collector.close()
    assert event_id(parse_syslog(frames[0])) == "110103"


def test_it_records_the_event_even_if_the_export_breaks(settings, monkeypatch):
    settings.LIGHTBOX_AUDIT_SYSLOG = UdpCollector().url
    monkeypatch.setattr(audit_export, "audit_message", lambda event: 1 / 0)
    audit.record("auth.login")
    assert AuditEvent.objects.filter(event_type="auth.login").exists()


def test_it_drops_and_counts_what_does_not_fit_in_the_queue(settings, monkeypatch):
    monkeypatch.setattr(audit_export, "QUEUE_SIZE", 2)
    sender = audit_export.SyslogSender(audit_export.Destination("tcp", "127.0.0.1", free_port()))
    results = [sender.submit(b"x") for _ in range(6)]
    assert results.count(False) == sender.dropped >= 3


# --- Reads that are audited now ---------------------------------------------------------


@pytest.fixture
def thumbnail_url(tasks):
    receive_file(pydicom_file("CT_small.dcm"), tasks)
    return f"/api/series/{Series.objects.get().pk}/thumbnail"


def test_it_audits_a_thumbnail_once_per_user_and_study(client, thumbnail_url):
    reader = grant_every_study(User.objects.create_user("reader"))
    client.force_login(reader)

    for _ in range(3):
        assert client.get(thumbnail_url).status_code == 200

    [row] = AuditEvent.objects.filter(event_type="web.retrieve")
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    assert (row.user, row.study_instance_uid, row.patient_id) == (
        reader,
        ds.StudyInstanceUID,
        ds.PatientID,
    )
    assert row.detail == {"resource": "thumbnail", "path": thumbnail_url}


def test_it_audits_no_thumbnail_it_refused(client, thumbnail_url):
    client.force_login(User.objects.create_user("stranger"))
    assert client.get(thumbnail_url).status_code == 404
    assert not AuditEvent.objects.filter(event_type="web.retrieve").exists()
