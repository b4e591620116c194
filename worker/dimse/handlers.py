"""DIMSE handlers: one per service, each parses the request, authorizes, calls one service and
answers with a DICOM status. Dependencies (ingest, authorization, audit, query) come in
through a Services object at registration (see server.py), never as globals, so tests can
replace them.

Audit granularity: one row per association (written when it ends, with the counts of what
it did), one row per C-ECHO and C-FIND request, one row per study stored on an association
(PS3.15 §A.5.3.3 "DICOM Instances Transferred" is per study, not per instance), one row per
failed C-STORE, and one row per refused operation (first refusal of an association) or
rejected association. A modality sending 2,000 slices thus writes a handful of rows, not
2,000.
"""

import errno
import logging
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from django.db import connections
from pydicom import Dataset
from pydicom.filereader import read_dataset, read_partial
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pynetdicom import build_context, evt
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dsutils import encode

from backend.archive.retrieve import storage_contexts

log = logging.getLogger("lightbox.dimse")

# Lightbox's own implementation identity in the File Meta Information (PS3.10 §7.1); the
# root is ours, registered under the UUID-derived 2.25 arc (PS3.5 §B.2).
IMPLEMENTATION_CLASS_UID = UID("2.25.186036411312404012436219802613577766621")
IMPLEMENTATION_VERSION_NAME = "LIGHTBOX_010"

# DIMSE status codes used here (PS3.7 Annex C; PS3.4 §B.2.3 for C-STORE, §C.4.1.1.4 for
# C-FIND).
SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_OPTIONAL_KEYS_UNSUPPORTED = 0xFF01
CANCEL = 0xFE00
REFUSED_NOT_AUTHORIZED = 0x0124  # PS3.7 Annex C.5, general failure: "Refused: Not Authorized"
OUT_OF_RESOURCES = 0xA700  # PS3.4 Table B.2-1 and C.4-1: "Refused: Out of Resources"
IDENTIFIER_DOES_NOT_MATCH = 0xA900  # PS3.4 Table C.4-1
# PS3.4 Table B.2-1 "Error: Cannot understand" is the range C000-CFFF; C001 is the one
# Lightbox returns when it could not record an instance for a reason of its own.
STORE_CANNOT_UNDERSTAND = 0xC001
# PS3.4 Table C.4-1 "Unable to process" (C000-CFFF): C000 for an identifier the query
# service cannot process (QueryError, its reason in the Error Comment), C311 (pynetdicom's
# own choice for a failing handler) when the query service is missing or failed.
FIND_QUERY_REFUSED = 0xC000
FIND_UNABLE_TO_PROCESS = 0xC311
# PS3.4 Table C.4-2 (C-MOVE) and C.4-3 (C-GET): C000 "Unable to process" for an identifier
# the retrieve service refuses, C311 when it is missing or failed; A801 "Refused: Move
# Destination unknown".
RETRIEVE_UNABLE_TO_PROCESS = 0xC000
RETRIEVE_FAILED = 0xC311
MOVE_DESTINATION_UNKNOWN = 0xA801
# PS3.4 Table B.2-1: the C-STORE statuses that count as warnings, not failures.
STORE_WARNINGS = {0x0001, 0xB000, 0xB006, 0xB007}

# SOP classes (PS3.4 Annex A and §C.6.1.1, §C.6.2.1).
VERIFICATION = UID("1.2.840.10008.1.1")
PATIENT_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.1.1")
STUDY_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")
FIND_MODELS = {PATIENT_ROOT_FIND: "patient", STUDY_ROOT_FIND: "study"}
# §C.6.1.1.4-5, §C.6.2.1.4-5
PATIENT_ROOT_MOVE = UID("1.2.840.10008.5.1.4.1.2.1.2")
PATIENT_ROOT_GET = UID("1.2.840.10008.5.1.4.1.2.1.3")
STUDY_ROOT_MOVE = UID("1.2.840.10008.5.1.4.1.2.2.2")
STUDY_ROOT_GET = UID("1.2.840.10008.5.1.4.1.2.2.3")
RETRIEVE_MODELS = {
    PATIENT_ROOT_MOVE: "patient",
    PATIENT_ROOT_GET: "patient",
    STUDY_ROOT_MOVE: "study",
    STUDY_ROOT_GET: "study",
}
# Keys that every C-FIND response carries whatever was asked (PS3.4 §C.4.1.1.3.2).
_ALWAYS_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet"}


@dataclass
class Services:
    """What the handlers call; built once in server.py from the real services."""

    receive: Callable[..., Any]  # backend.archive.ingest.receive, or a RecordingProcess's
    authorize: Callable[..., Any]  # backend.nodes.services.authorize -> Decision
    audit: Callable[..., Any]  # backend.accounts.audit.record
    find: Callable[[], Callable[..., Iterator[Dataset]] | None]  # loads query.find lazily
    studies_for: Callable[[Any], Any]  # node -> access-filtered Study queryset
    query_error: Callable[[], type[Exception] | None]
    # backend.archive.retrieve.instances_for / dataset_for, and the registered node that
    # may receive a C-MOVE's sub-operations (None when there is none)
    instances_for: Callable[..., list] | None = None
    dataset_for: Callable[..., Dataset] | None = None
    move_destination: Callable[[str], Any] | None = None
    tracker: "Associations" = field(default_factory=lambda: Associations())
    close: Callable[[], None] = lambda: None  # flushes what receive() left to record
    # Called when an association ends and none is left open: the indexing held while
    # files arrived can start at once (RecordingProcess.senders_done).
    senders_done: Callable[[], None] = lambda: None
    # Waits up to the given seconds until receive()'s recording is set up; False if not.
    ready: Callable[[float], bool] = lambda timeout: True
    recent: "RecentStudies" = field(default_factory=lambda: RecentStudies())


@dataclass
class AssociationState:
    calling_ae: str
    called_ae: str
    peer: str
    started: float = field(default_factory=time.monotonic)
    counts: Counter = field(default_factory=Counter)
    # StudyInstanceUID -> [PatientID, instances stored]
    studies: dict[str, list] = field(default_factory=dict)
    decisions: dict[str, Any] = field(default_factory=dict)


class RecentStudies:
    """The studies this receiver process has received files of lately, for telling ingest
    which file is a study's first (RecordingProcess.receive(urgent=...)): that one is
    queued for indexing at once, with what was held before it, so that the study reaches
    open worklists at once; the rest wait while the sender keeps sending
    (LIGHTBOX_DICOM_INDEX_HOLD_MS).

    Per process, not per association: a modality or archive that sends one study over
    several associations at once would otherwise have each association's first file
    release everything held, and the workers index beside the transfer. A study is new
    again after WINDOW seconds without a file of it."""

    WINDOW = 10.0
    LIMIT = 10_000  # studies remembered; older ones are forgotten first

    def __init__(self):
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    def first_in_a_while(self, study_instance_uid: str) -> bool:
        """Whether no file of this study came in the last WINDOW seconds; notes this one."""
        now = time.monotonic()
        with self._lock:
            last = self._seen.pop(study_instance_uid, None)
            self._seen[study_instance_uid] = now  # at the end: the dict is oldest first
            if len(self._seen) > self.LIMIT:
                del self._seen[next(iter(self._seen))]
        return last is None or now - last > self.WINDOW


class Associations:
    """The state of each open association, keyed by the Association object."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: dict[int, AssociationState] = {}

    def begin(self, assoc) -> AssociationState:
        state = AssociationState(*_who(assoc))
        with self._lock:
            self._open[id(assoc)] = state
        return state

    def get(self, assoc) -> AssociationState:
        with self._lock:
            state = self._open.get(id(assoc))
        return state or self.begin(assoc)

    def end(self, assoc) -> AssociationState | None:
        with self._lock:
            return self._open.pop(id(assoc), None)

    def none_open(self) -> bool:
        with self._lock:
            return not self._open


def _who(assoc) -> tuple[str, str, str]:
    return (
        assoc.requestor.ae_title.strip(),
        assoc.acceptor.ae_title.strip(),
        assoc.requestor.address or "",
    )


def _audit_fields(state: AssociationState) -> dict[str, str]:
    return {
        "calling_ae": state.calling_ae,
        "called_ae": state.called_ae,
        "peer_address": state.peer,
    }


def _authorized(event, services: Services, operation: str):
    """The node's Decision for this association and operation; asked once per association,
    a refusal audited once."""
    state = services.tracker.get(event.assoc)
    decision = state.decisions.get(operation)
    if decision is None:
        decision = services.authorize(state.calling_ae, state.peer, operation)
        state.decisions[operation] = decision
        if not decision.allowed:
            log.warning(
                "refused %s from %s@%s: %s",
                operation,
                state.calling_ae,
                state.peer,
                decision.reason,
            )
            services.audit(
                "dicom.rejected",
                "failure",
                **_audit_fields(state),
                detail={"operation": operation, "reason": decision.reason},
            )
    if not decision.allowed:
        state.counts[f"{operation}_refused"] += 1
    return decision


def _status(code: int, comment: str) -> Dataset:
    """A status with an Error Comment (0000,0902; LO, at most 64 characters)."""
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment.replace("\\", "/")[:64]
    return status


# --- Association events ----------------------------------------------------------------


def handle_accepted(event, services: Services) -> None:
    """EVT_ACCEPTED: start counting what the association does."""
    state = services.tracker.begin(event.assoc)
    log.info("association from %s@%s accepted", state.calling_ae, state.peer)


def handle_rejected(event, services: Services) -> None:
    """EVT_REJECTED (PS3.8 §7.1.1.9): e.g. too many associations, called AE not ours."""
    calling_ae, called_ae, peer = _who(event.assoc)
    services.audit(
        "dicom.rejected",
        "failure",
        calling_ae=calling_ae,
        called_ae=called_ae,
        peer_address=peer,
        detail={"operation": "associate"},
    )


def handle_released(event, services: Services) -> None:
    _end_association(event, services, "released")


def handle_aborted(event, services: Services) -> None:
    _end_association(event, services, "aborted")


def _end_association(event, services: Services, how: str) -> None:
    state = services.tracker.end(event.assoc)
    try:
        if services.tracker.none_open():
            services.senders_done()
        if state is not None:
            _audit_association(state, services, how)
    finally:
        # Handlers ran in the association's thread, which ends now: give its database
        # connection back instead of leaving it to the garbage collector.
        if threading.current_thread() is event.assoc:
            connections.close_all()


def _audit_association(state: AssociationState, services: Services, how: str) -> None:
    for study_instance_uid, (patient_id, count) in state.studies.items():
        services.audit(
            "dicom.store",
            "success",
            **_audit_fields(state),
            study_instance_uid=study_instance_uid,
            patient_id=patient_id,
            detail={"instances": count},
        )
    seconds = round(time.monotonic() - state.started, 3)
    services.audit(
        "dicom.association",
        "success" if how == "released" else "failure",
        **_audit_fields(state),
        detail={"end": how, "seconds": seconds, **state.counts},
    )
    log.info(
        "association from %s@%s %s after %.1f s: %s",
        state.calling_ae,
        state.peer,
        how,
        seconds,
        dict(state.counts) or "nothing done",
    )


# --- C-ECHO (PS3.7 §9.1.5, Verification PS3.4 Annex A) ---------------------------------


def handle_echo(event, services: Services) -> int:
    state = services.tracker.get(event.assoc)
    state.counts["echo"] += 1
    services.audit("dicom.echo", "success", **_audit_fields(state))
    return SUCCESS


# --- C-STORE (PS3.7 §9.1.1, Storage PS3.4 Annex B) --------------------------------------


def handle_store(event, services: Services) -> int | Dataset:
    """Write the Part 10 file as received (the data set is never decoded and re-encoded)
    and answer Success only once ingest has made it durable (PS3.4 §B.2.3)."""
    decision = _authorized(event, services, "store")
    if not decision.allowed:
        return _status(REFUSED_NOT_AUTHORIZED, "calling AE not authorized to store")
    state = services.tracker.get(event.assoc)
    try:
        # The received bytes as they are, without a copy (nothing writes to them any more).
        data_set = event.request.DataSet.getbuffer()
        transfer_syntax = UID(event.context.transfer_syntax)
        file_start = part10_header(
            event.request.AffectedSOPClassUID,
            event.request.AffectedSOPInstanceUID,
            transfer_syntax,
        )
        noted = _noted(transfer_syntax, file_start, data_set)
        services.receive(
            (file_start, data_set),
            source="dimse",
            detail=f"{state.calling_ae}@{state.peer}",
            calling_ae=state.calling_ae,
            # a new study: on the worklists at once
            urgent=services.recent.first_in_a_while(noted[0]),
        )
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return _store_failed(event, services, state, OUT_OF_RESOURCES, "storage is full")
        return _store_failed(event, services, state, STORE_CANNOT_UNDERSTAND, str(exc))
    except Exception as exc:
        return _store_failed(event, services, state, STORE_CANNOT_UNDERSTAND, repr(exc))
    state.counts["stored"] += 1
    entry = state.studies.setdefault(noted[0], [noted[1], 0])
    entry[1] += 1
    return SUCCESS


def part10_header(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """Preamble, 'DICM' and the File Meta Information (PS3.10 §7.1) for a received data set,
    from the request's Affected SOP Class/Instance UIDs and the context's transfer syntax.

    Encoded here, in Explicit VR Little Endian (PS3.10 §7.1, PS3.5 §7.1.2), rather than by
    pydicom: this runs once per instance while the sender waits."""
    elements = b"".join(
        [
            _meta_element(0x0001, b"OB", b"\x00\x01"),
            _meta_element(0x0002, b"UI", _uid_value(sop_class_uid)),
            _meta_element(0x0003, b"UI", _uid_value(sop_instance_uid)),
            _meta_element(0x0010, b"UI", _uid_value(transfer_syntax)),
            _meta_element(0x0012, b"UI", _uid_value(IMPLEMENTATION_CLASS_UID)),
            _meta_element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii")),
        ]
    )
    group_length = _meta_element(0x0000, b"UL", struct.pack("<I", len(elements)))
    return b"\x00" * 128 + b"DICM" + group_length + elements


def _uid_value(value: str) -> bytes:
    """A UI value (PS3.5 §9.1): at most 64 characters of digits and dots, padded with NUL
    to an even length; anything else is refused (the C-STORE fails with C001)."""
    uid = str(value).rstrip("\x00 ")
    if not uid or len(uid) > 64 or uid.strip("0123456789."):
        raise ValueError(f"invalid UID {uid[:80]!r}")
    encoded = uid.encode("ascii")
    return encoded + b"\x00" * (len(encoded) % 2)


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b" "  # SH is padded with a space (PS3.5 §6.2)
    if vr == b"OB":  # 2 reserved bytes and a 4-byte length (PS3.5 §7.1.2)
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _store_failed(event, services, state, code: int, reason: str) -> Dataset:
    sop_instance_uid = str(event.request.AffectedSOPInstanceUID or "")
    log.error(
        "C-STORE of %s from %s@%s failed (0x%04X): %s",
        sop_instance_uid,
        state.calling_ae,
        state.peer,
        code,
        reason,
    )
    state.counts["store_failed"] += 1
    services.audit(
        "dicom.store",
        "failure",
        **_audit_fields(state),
        detail={"sop_instance_uid": sop_instance_uid, "status": code, "reason": reason[:1000]},
    )
    return _status(code, reason)


def _noted(transfer_syntax: UID, file_start: bytes, data_set) -> tuple[str, str]:
    """(StudyInstanceUID, PatientID) an instance is counted under for the association's
    audit rows. Only these two elements are read, and reading stops after them; a file too
    broken for that is counted under an empty study UID, and the worker will say why when
    it indexes it."""
    try:
        noted = None
        if transfer_syntax.is_little_endian and not transfer_syntax.is_deflated:
            noted = _noted_at_top(data_set, transfer_syntax.is_implicit_VR)
        if noted is None:
            ds = _read_noted(transfer_syntax, file_start, data_set)
            noted = str(ds.get("StudyInstanceUID", "")), str(ds.get("PatientID", ""))
        return noted
    except Exception:
        return "", ""


# The VRs, as encoded, and those with a 4-byte length in Explicit VR (PS3.5 §7.1.2).
_VRS = frozenset(vr.value.encode() for vr in VR if len(vr.value) == 2)
_LONG_LENGTH_VRS = frozenset(vr.value.encode() for vr in EXPLICIT_VR_LENGTH_32)


def _noted_at_top(data_set, implicit_vr: bool) -> tuple[str, str] | None:
    """(StudyInstanceUID, PatientID) of a little endian data set, reading only the tags and
    lengths before them: pydicom's read of the same costs ten times as much, while the
    sender waits. None when anything on the way needs pydicom: an undefined length, a value
    that is not plain ASCII (its character set matters) or has several values, a data set
    whose VR encoding is not the transfer syntax's (pydicom's read tells the two apart)."""
    view = memoryview(data_set)
    end, offset = len(view), 0
    if implicit_vr and bytes(view[4:6]) in _VRS:
        return None
    values = {0x00100020: b"", _STUDY_INSTANCE_UID: b""}
    while offset + 8 <= end:
        group, element, length = struct.unpack_from("<HHI", view, offset)
        tag = group << 16 | element
        if tag > _STUDY_INSTANCE_UID:
            break
        start = offset + 8
        if not implicit_vr:
            vr = bytes(view[offset + 4 : offset + 6])
            if vr not in _VRS:
                return None
            if vr in _LONG_LENGTH_VRS:
                (length,) = struct.unpack_from("<I", view, offset + 8)
                start += 4
            else:
                length >>= 16  # the 2-byte length after the VR
        if length == 0xFFFFFFFF or start + length > end:
            return None
        if tag in values:
            values[tag] = bytes(view[start : start + length])
        offset = start + length
    text = []
    for value in values.values():
        if not value.isascii() or b"\\" in value or b"\x1b" in value:
            return None
        text.append(value.decode("ascii").rstrip("\x00 "))
    patient_id, study_instance_uid = text
    return study_instance_uid, patient_id


def _read_noted(transfer_syntax: UID, file_start: bytes, data_set) -> Dataset:
    if transfer_syntax.is_deflated:  # the whole file, for pydicom to inflate
        return read_partial(
            BytesIO(b"".join((file_start, data_set))),
            stop_when=_after_study_instance_uid,
            specific_tags=_NOTED_TAGS,
        )
    return read_dataset(
        BytesIO(data_set),
        transfer_syntax.is_implicit_VR,
        transfer_syntax.is_little_endian,
        stop_when=_after_study_instance_uid,
        specific_tags=_NOTED_TAGS,
    )


_STUDY_INSTANCE_UID = 0x0020000D
_NOTED_TAGS: list = [0x00100020, _STUDY_INSTANCE_UID]  # PatientID, StudyInstanceUID


def _after_study_instance_uid(tag, vr, length) -> bool:
    return tag > _STUDY_INSTANCE_UID


# --- C-FIND (PS3.7 §9.1.2, Query/Retrieve PS3.4 Annex C) --------------------------------


def handle_find(event, services: Services) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """Pending responses with the matches, Cancel on C-CANCEL, then Success (PS3.4
    §C.4.1.2). Only registered nodes with can_query, calling from their host, get answers."""
    decision = _authorized(event, services, "find")
    state = services.tracker.get(event.assoc)
    if not decision.allowed:
        yield _status(REFUSED_NOT_AUTHORIZED, "calling AE not authorized to query"), None
        return
    model = FIND_MODELS.get(UID(str(event.request.AffectedSOPClassUID)))
    try:
        identifier = event.identifier
        requested = {elem.keyword for elem in identifier if elem.keyword} - _ALWAYS_KEYS
    except Exception as exc:
        yield _find_failed(services, state, IDENTIFIER_DOES_NOT_MATCH, f"bad identifier: {exc}")
        return
    find = services.find()
    if find is None or model is None:
        yield _find_failed(services, state, FIND_UNABLE_TO_PROCESS, "query is not available")
        return
    yield from _find_matches(event, services, state, find, identifier, model, requested)


# pynetdicom's DUL reads the socket only in a loop turn with nothing to send: a handler
# that queues responses faster than they leave keeps it from ever reading a C-CANCEL. Every
# CANCEL_CHECK_EVERY matches the handler waits for the queue to drain and for one turn more.
CANCEL_CHECK_EVERY = 16


def _let_peer_speak(assoc) -> None:
    outgoing = getattr(getattr(assoc, "dul", None), "to_provider_queue", None)
    if outgoing is None:
        return
    deadline = time.monotonic() + 5
    while not outgoing.empty() and time.monotonic() < deadline and assoc.is_established:
        time.sleep(0.0005)
    time.sleep(0.002)  # the DUL's loop sleeps 1 ms between idle turns


def _find_matches(event, services, state, find, identifier, model, requested):
    query_error = services.query_error() or ValueError
    matches = 0
    try:
        studies = services.studies_for(state.decisions["find"].node)
        for response in find(identifier, model=model, studies=studies):
            if matches % CANCEL_CHECK_EVERY == CANCEL_CHECK_EVERY - 1:
                _let_peer_speak(event.assoc)
            if event.is_cancelled:
                _audit_find(services, state, identifier, model, matches, "cancelled")
                yield CANCEL, None
                return
            missing = requested - {elem.keyword for elem in response}
            yield (PENDING_OPTIONAL_KEYS_UNSUPPORTED if missing else PENDING), response
            matches += 1
    except query_error as exc:
        code = getattr(exc, "status", None) or FIND_QUERY_REFUSED
        yield _find_failed(services, state, code, str(exc), identifier, model)
        return
    except Exception as exc:
        log.exception("C-FIND from %s@%s failed", state.calling_ae, state.peer)
        yield _find_failed(services, state, FIND_UNABLE_TO_PROCESS, repr(exc), identifier, model)
        return
    state.counts["find"] += 1
    _audit_find(services, state, identifier, model, matches, "success")


def _find_failed(services, state, code, reason, identifier=None, model=None):
    state.counts["find_failed"] += 1
    _audit_find(services, state, identifier, model, 0, "failure", reason=reason, status=code)
    return _status(code, reason), None


def _audit_find(services, state, identifier, model, matches, end, **extra) -> None:
    services.audit(
        "dicom.find",
        "failure" if end == "failure" else "success",
        **_audit_fields(state),
        study_instance_uid=_value(identifier, "StudyInstanceUID"),
        patient_id=_value(identifier, "PatientID"),
        detail={
            "model": model,
            "query": _query(identifier),
            "matches": matches,
            "end": end,
            **extra,
        },
    )


def _value(identifier: Dataset | None, keyword: str) -> str:
    try:
        return str(identifier.get(keyword, "") or "") if identifier is not None else ""
    except Exception:
        return ""


def _query(identifier: Dataset | None) -> dict[str, str]:
    """The query keys as text, for the audit row (PS3.15 §A.5.3.10 keeps the query)."""
    if identifier is None:
        return {}
    try:
        return {e.keyword or str(e.tag): str(e.value)[:200] for e in identifier if e.VR != "SQ"}
    except Exception:
        return {}


# --- C-GET and C-MOVE (PS3.7 §9.1.3-4, Query/Retrieve PS3.4 §C.4.2-3) --------------------


@dataclass
class Retrieve:
    """One C-GET or C-MOVE: what was asked, what matched, and how the peer answered each
    C-STORE sub-operation (counted from the C-STORE responses, as pynetdicom counts them)."""

    operation: str  # "get" or "move"
    model: str | None
    destination: str = ""
    studies: list[str] = field(default_factory=list)
    matched: int = 0
    counts: Counter = field(default_factory=Counter)
    store_assoc: Any = None  # C-MOVE: the association to the Move Destination
    destination_node: Any = None  # C-MOVE: the registered node it is

    def on_store_response(self, event) -> None:
        """EVT_DIMSE_RECV on the association that carries the sub-operations."""
        command = getattr(event.message, "command_set", None)
        if command is None or command.get("CommandField") != 0x8001:  # C-STORE-RSP
            return
        status = int(command.get("Status", 0xC000))
        outcome = "completed" if status == SUCCESS else "failed"
        self.counts["warning" if status in STORE_WARNINGS else outcome] += 1

    def on_established(self, event) -> None:
        self.store_assoc = event.assoc


UNCOMPRESSED = ((True, True), (False, True), (False, False))  # (implicit VR, little endian)


def _empty_failed_lists() -> frozenset[bytes]:
    """A data set holding only an empty Failed SOP Instance UID List (0008,0058), as
    pynetdicom encodes it in each uncompressed transfer syntax."""
    empty = Dataset()
    empty.FailedSOPInstanceUIDList = []
    encodings = (encode(empty, implicit, little) for implicit, little in UNCOMPRESSED)
    return frozenset(encoded for encoded in encodings if encoded is not None)


_EMPTY_FAILED_LISTS = _empty_failed_lists()


def omit_empty_failed_lists(assoc) -> None:
    """Send a final C-GET or C-MOVE response without a data set when all it would hold
    is an empty Failed SOP Instance UID List.

    pynetdicom attaches that list to every Failure, Warning or Cancel response, even when
    no sub-operation failed (a retrieve refused before any: not authorized, a key
    missing). Empty, it names nothing; dcmtk's dcmqrscp sends no data set then. dcmtk's
    getscu does not read one it did not expect: its P-DATA arrived during the A-RELEASE,
    and getscu aborted the association after every refusal ("Association Release Failed:
    DUL P-Data PDU arrived")."""
    dimse = assoc.dimse
    send = dimse.send_msg

    def send_msg(primitive, context_id: int) -> None:
        if (
            isinstance(primitive, C_GET | C_MOVE)
            and primitive.Status not in (None, PENDING, PENDING_OPTIONAL_KEYS_UNSUPPORTED)
            and isinstance(primitive.Identifier, BytesIO)
            and primitive.Identifier.getvalue() in _EMPTY_FAILED_LISTS
        ):
            primitive.Identifier = None
        send(primitive, context_id)

    dimse.send_msg = send_msg


def handle_get(event, services: Services):
    """C-GET SCP (PS3.4 §C.4.3): the matches go back over the same association as C-STORE
    sub-operations, the peer acting as Storage SCP (role selection, PS3.7 §D.3.3.4).
    Yields the number of sub-operations, then (Pending, data set) per instance."""
    retrieve = Retrieve("get", RETRIEVE_MODELS.get(UID(str(event.request.AffectedSOPClassUID))))
    instances = _retrieve_matches(event, services, retrieve)
    if isinstance(instances, tuple):
        yield 1  # pynetdicom answers Success to zero sub-operations, whatever follows
        yield instances
        return
    yield len(instances)
    event.assoc.bind(evt.EVT_DIMSE_RECV, retrieve.on_store_response)
    try:
        yield from _sub_operations(event, services, retrieve, instances, event.assoc)
    finally:
        event.assoc.unbind(evt.EVT_DIMSE_RECV, retrieve.on_store_response)


def handle_move(event, services: Services):
    """C-MOVE SCP (PS3.4 §C.4.2): the matches go to the Move Destination, a registered node
    with can_store_to, over a new association. Yields its (address, port, options), the
    number of sub-operations, then (Pending, data set) per instance."""
    retrieve = Retrieve("move", RETRIEVE_MODELS.get(UID(str(event.request.AffectedSOPClassUID))))
    retrieve.destination = str(event.move_destination or "").strip()
    node = services.move_destination(retrieve.destination) if services.move_destination else None
    retrieve.destination_node = node
    if node is None:
        _audit_retrieve(services, event, retrieve, "failure", status=MOVE_DESTINATION_UNKNOWN)
        yield None, None  # pynetdicom answers A801 "Refused: Move Destination unknown"
        return
    instances = _retrieve_matches(event, services, retrieve)
    if isinstance(instances, tuple):
        # pynetdicom sends a failure only once the destination is associated: propose
        # only Verification there, so that nothing can be stored.
        yield node.host, node.port, {"contexts": [build_context(VERIFICATION)]}
        yield 1
        yield instances
        return
    options = {"contexts": _storage_contexts(instances), "evt_handlers": _move_handlers(retrieve)}
    yield node.host, node.port, options
    yield len(instances)
    yield from _sub_operations(event, services, retrieve, instances, None)


def _move_handlers(retrieve: Retrieve) -> list:
    return [
        (evt.EVT_ESTABLISHED, retrieve.on_established),
        (evt.EVT_DIMSE_RECV, retrieve.on_store_response),
    ]


def _retrieve_matches(event, services: Services, retrieve: Retrieve):
    """The instances to send, or the (failure status, None) that answers the request."""
    decision = _authorized(event, services, "retrieve")
    if not decision.allowed:
        return _status(REFUSED_NOT_AUTHORIZED, "calling AE not authorized to retrieve"), None
    if retrieve.model is None or services.instances_for is None:
        return _retrieve_failed(services, event, retrieve, RETRIEVE_FAILED, "not available")
    try:
        identifier = event.identifier
    except Exception as exc:
        reason = f"bad identifier: {exc}"
        return _retrieve_failed(services, event, retrieve, IDENTIFIER_DOES_NOT_MATCH, reason)
    query_error = services.query_error() or ValueError
    try:
        studies = _retrievable(services, decision.node, retrieve.destination_node)
        instances = services.instances_for(identifier, model=retrieve.model, studies=studies)
    except query_error as exc:
        return _retrieve_failed(services, event, retrieve, RETRIEVE_UNABLE_TO_PROCESS, str(exc))
    except Exception as exc:
        log.exception("retrieve for %s failed", retrieve.destination or "C-GET")
        return _retrieve_failed(services, event, retrieve, RETRIEVE_FAILED, repr(exc))
    retrieve.matched = len(instances)
    retrieve.studies = list(dict.fromkeys(i.series.study.study_instance_uid for i in instances))
    return instances


def _retrievable(services: Services, requestor, destination):
    """The studies a retrieve may send: the requestor's and, for a C-MOVE, only those the
    Move Destination may hold too, for a node limited to an access group receives nothing
    else, whoever asks (backend/nodes/services.py studies_for_node)."""
    studies = services.studies_for(requestor)
    if destination is not None:
        studies = studies.filter(pk__in=services.studies_for(destination).values("pk"))
    return studies


def _storage_contexts(instances) -> list:
    """For the Move Destination (we are the requestor, PS3.7 §D.3.3.4 does not apply)."""
    return storage_contexts(instances)[:128]  # PS3.8 §9.3.2.2: at most 128 contexts


def _sub_operations(event, services, retrieve: Retrieve, instances, assoc):
    """(Pending, data set) per instance, each in a transfer syntax the receiver accepted;
    Cancel on C-CANCEL (PS3.4 §C.4.2.3.1). pynetdicom sends each one, counts the outcomes
    and answers Success, B000 (some failed) or A702 (all failed) at the end."""
    for instance in instances:
        if event.is_cancelled:
            _audit_retrieve(services, event, retrieve, "success", end="cancelled")
            yield CANCEL, None
            return
        accepted = _accepted_syntaxes(assoc or retrieve.store_assoc, instance.sop_class_uid)
        try:
            ds = services.dataset_for(instance, accepted)
        except Exception as exc:
            # Sent as a bare identifier: the C-STORE fails and is counted as a failure.
            log.error("cannot read %s for retrieve: %r", instance.sop_instance_uid, exc)
            ds = Dataset()
            ds.SOPInstanceUID = instance.sop_instance_uid
        yield PENDING, ds
    end = "failure" if retrieve.counts["failed"] == len(instances) else "success"
    _audit_retrieve(services, event, retrieve, end)


def _accepted_syntaxes(assoc, sop_class_uid: str) -> list[str]:
    """Transfer syntaxes accepted for sending sop_class_uid: as SCU of Storage, which on a
    C-GET association is the role the requestor granted us."""
    if assoc is None:
        return []
    return [
        str(cx.transfer_syntax[0])
        for cx in assoc.accepted_contexts
        if cx.abstract_syntax == sop_class_uid and cx.as_scu
    ]


def _retrieve_failed(services, event, retrieve, code, reason):
    _audit_retrieve(services, event, retrieve, "failure", status=code, reason=reason)
    return _status(code, reason), None


def _audit_retrieve(services, event, retrieve: Retrieve, outcome, **extra) -> None:
    """One row per C-GET or C-MOVE (PS3.15 §A.5.3.3 "DICOM Instances Transferred")."""
    state = services.tracker.get(event.assoc)
    state.counts[retrieve.operation] += 1
    services.audit(
        f"dicom.{retrieve.operation}",
        outcome,
        **_audit_fields(state),
        study_instance_uid=retrieve.studies[0] if len(retrieve.studies) == 1 else "",
        detail={
            "model": retrieve.model,
            "destination": retrieve.destination,
            "studies": retrieve.studies[:100],
            "matched": retrieve.matched,
            **retrieve.counts,
            **extra,
        },
    )
