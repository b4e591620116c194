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
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import pydicom
from django.db import connections
from pydicom import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

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

# SOP classes (PS3.4 Annex A and §C.6.1.1, §C.6.2.1).
VERIFICATION = UID("1.2.840.10008.1.1")
PATIENT_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.1.1")
STUDY_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")
FIND_MODELS = {PATIENT_ROOT_FIND: "patient", STUDY_ROOT_FIND: "study"}
# Keys that every C-FIND response carries whatever was asked (PS3.4 §C.4.1.1.3.2).
_ALWAYS_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet"}


@dataclass
class Services:
    """What the handlers call; built once in server.py from the real services."""

    receive: Callable[..., Any]  # backend.archive.ingest.receive
    authorize: Callable[..., Any]  # backend.nodes.services.authorize -> Decision
    audit: Callable[..., Any]  # backend.accounts.audit.record
    find: Callable[[], Callable[..., Iterator[Dataset]] | None]  # loads query.find lazily
    studies_for: Callable[[Any], Any]  # node -> access-filtered Study queryset
    query_error: Callable[[], type[Exception] | None]
    tracker: "Associations" = field(default_factory=lambda: Associations())


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
    data_set = event.request.DataSet.getvalue()
    file_start = part10_header(event.file_meta)
    try:
        services.receive(
            (file_start, data_set), source="dimse", detail=f"{state.calling_ae}@{state.peer}"
        )
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return _store_failed(event, services, state, OUT_OF_RESOURCES, "storage is full")
        return _store_failed(event, services, state, STORE_CANNOT_UNDERSTAND, str(exc))
    except Exception as exc:
        return _store_failed(event, services, state, STORE_CANNOT_UNDERSTAND, repr(exc))
    state.counts["stored"] += 1
    _note_study(state, file_start + data_set)
    return SUCCESS


def part10_header(file_meta: FileMetaDataset) -> bytes:
    """Preamble, 'DICM' and the File Meta Information (PS3.10 §7.1) for a received data set:
    pynetdicom fills in the SOP Class/Instance UIDs and the negotiated transfer syntax."""
    file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, file_meta, enforce_standard=True)
    return buffer.getvalue()


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


def _note_study(state: AssociationState, file_bytes: bytes) -> None:
    """Count the instance under its study for the association's audit rows. Only these two
    elements are read (stopping at the pixel data); a file too broken for that is counted
    under an empty study UID, and the worker will say why when it indexes it."""
    try:
        ds = pydicom.dcmread(
            BytesIO(file_bytes),
            stop_before_pixels=True,
            specific_tags=["StudyInstanceUID", "PatientID"],
        )
        study_instance_uid = str(ds.get("StudyInstanceUID", ""))
        patient_id = str(ds.get("PatientID", ""))
    except Exception:
        study_instance_uid, patient_id = "", ""
    entry = state.studies.setdefault(study_instance_uid, [patient_id, 0])
    entry[1] += 1


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


def _find_matches(event, services, state, find, identifier, model, requested):
    query_error = services.query_error() or ValueError
    matches = 0
    try:
        studies = services.studies_for(state.decisions["find"].node)
        for response in find(identifier, model=model, studies=studies):
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
