"""Lightbox as a DICOM client of a remote node: Verification, Query/Retrieve FIND, MOVE and
GET, and Storage SCU (PS3.4 Annexes A, B and C), with pynetdicom.

No database logic here: callers (backend/nodes/jobs.py) pass what to do and receive
progress through callbacks. Images received by C-GET go through the one ingest entry point.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from pydicom import Dataset, uid
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association

from backend.archive import ingest
from backend.archive.retrieve import storage_contexts

from .transport import LightboxAE

# PS3.4 Annex A and Table C.6.2-1 (Study Root Query/Retrieve Information Model).
Verification = UID("1.2.840.10008.1.1")
StudyRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.2.1")
StudyRootQueryRetrieveInformationModelMove = UID("1.2.840.10008.5.1.4.1.2.2.2")
StudyRootQueryRetrieveInformationModelGet = UID("1.2.840.10008.5.1.4.1.2.2.3")
MAX_MATCHES = 1000
SUCCESS = 0x0000
PENDING = (0xFF00, 0xFF01)
CANCELLED = 0xFE00
# PS3.4 Table B.2-1: the instance was stored, with a coercion or a reservation.
STORE_OK = (SUCCESS, 0xB000, 0xB006, 0xB007)
OUT_OF_RESOURCES = 0xA700
# Offered for each storage SOP class when Lightbox receives by C-GET: uncompressed first,
# then the common lossless and lossy compressions (kept as received, never recompressed).
GET_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEG2000Lossless,
    uid.RLELossless,
    uid.JPEGBaseline8Bit,
    uid.JPEG2000,
]


class ScuError(Exception):
    """The remote node could not be reached or refused; the message says why."""


class Node(Protocol):
    ae_title: str
    host: str
    port: int


class Storable(Protocol):
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str


@dataclass
class Outcome:
    """The final response of a C-MOVE or C-GET (PS3.4 C.4.2.1.5, C.4.3.1.4)."""

    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0


Progress = Callable[[int, int, int], None]  # completed, failed, remaining


def _ae() -> AE:
    ae = LightboxAE(ae_title=settings.AE_TITLE)
    ae.acse_timeout = ae.dimse_timeout = 30
    ae.network_timeout = settings.DICOM_TIMEOUT
    ae.maximum_pdu_size = settings.DICOM_MAX_PDU
    return ae


@contextmanager
def _association(ae: AE, node: Node, **kwargs: Any) -> Iterator[Association]:
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, **kwargs)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        raise ScuError(f"association with {node.ae_title}@{node.host}:{node.port} {why}")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _status(response: Dataset | None, node: Node) -> int:
    # An empty response means the association was aborted or timed out (pynetdicom).
    if response is None or "Status" not in response:
        raise ScuError(f"no response from {node.ae_title} (connection lost or timed out)")
    return int(response.Status)


def echo(node: Node) -> int:
    """C-ECHO (PS3.7 §9.1.5); the response status, 0x0000 when the node answers."""
    ae = _ae()
    ae.add_requested_context(Verification)
    with _association(ae, node) as assoc:
        return _status(assoc.send_c_echo(), node)


def identifier(level: str, keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def find(node: Node, keys: dict[str, str], level: str) -> tuple[list[dict[str, str]], bool]:
    """C-FIND, Study Root (PS3.4 C.6.2): the matches as {keyword: value}, and whether the
    list was cut at MAX_MATCHES (the association is then aborted: cheaper than C-CANCEL)."""
    ae = _ae()
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    matches: list[dict[str, str]] = []
    with _association(ae, node) as assoc:
        query = identifier(level, keys)
        for response, ds in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            status = _status(response, node)
            if status in PENDING:
                matches.append(_as_dict(ds))
                if len(matches) >= MAX_MATCHES:
                    assoc.abort()
                    return matches, True
            elif status != SUCCESS:
                raise ScuError(f"C-FIND failed with status 0x{status:04X}{_comment(response)}")
    return matches, False


def _as_dict(ds: Dataset | None) -> dict[str, str]:
    if ds is None:
        return {}
    return {
        elem.keyword: _text(elem.value)
        for elem in ds
        if elem.keyword and elem.VR != "SQ" and elem.keyword != "QueryRetrieveLevel"
    }


def _text(value: object) -> str:
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)


def _comment(response: Dataset | None) -> str:
    comment = response.get("ErrorComment", "") if response is not None else ""
    return f": {comment}" if comment else ""


def move(
    node: Node, keys: dict[str, str], level: str, destination_ae: str, on_progress: Progress
) -> Outcome:
    """C-MOVE, Study Root (PS3.4 C.4.2): the node sends the images to destination_ae
    (Lightbox's own AE title: the node must know its address)."""
    ae = _ae()
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    with _association(ae, node) as assoc:
        responses = assoc.send_c_move(
            identifier(level, keys), destination_ae, StudyRootQueryRetrieveInformationModelMove
        )
        return _follow(responses, node, on_progress)


def get(node: Node, keys: dict[str, str], level: str, on_progress: Progress) -> Outcome:
    """C-GET, Study Root (PS3.4 C.4.3): the images come back over this association as
    C-STORE sub-operations, Lightbox acting as Storage SCP (role selection, PS3.7 §D.3.3.4),
    and each is handed to ingest before it is acknowledged."""
    ae = _ae()
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    # At most 128 presentation contexts in all (PS3.8 §9.3.2.2).
    for context in StoragePresentationContexts[:127]:
        sop_class = str(context.abstract_syntax)
        ae.add_requested_context(sop_class, GET_TRANSFER_SYNTAXES)
        roles.append(build_role(sop_class, scp_role=True))
    handlers = [(evt.EVT_C_STORE, _store_received, [node.ae_title])]
    with _association(ae, node, ext_neg=roles, evt_handlers=handlers) as assoc:
        responses = assoc.send_c_get(
            identifier(level, keys), StudyRootQueryRetrieveInformationModelGet
        )
        return _follow(responses, node, on_progress)


def _store_received(event, source_ae: str) -> int:
    """A C-STORE sub-operation of our C-GET: answered Success only once ingest made the
    file durable (PS3.4 §B.2.3); the data set is written as received."""
    meta = event.file_meta
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    try:
        ingest.receive(
            (buffer.getvalue(), event.request.DataSet.getvalue()),
            source="retrieve",
            detail=f"C-GET from {source_ae}",
        )
    except Exception:
        return OUT_OF_RESOURCES
    return SUCCESS


def _follow(responses: Iterable, node: Node, on_progress: Progress) -> Outcome:
    """Report each Pending response's counts; the final response is the outcome."""
    for response, _ in responses:
        status = _status(response, node)
        counts = [int(response.get(f"Number{k}Suboperations", 0) or 0) for k in _COUNTS]
        completed, failed, warning, remaining = counts
        if status in PENDING:
            on_progress(completed + warning, failed, remaining)
            continue
        return Outcome(status, completed, failed, warning)
    raise ScuError(f"{node.ae_title} sent no final response")


_COUNTS = ("OfCompleted", "OfFailed", "OfWarning", "OfRemaining")


def send(
    node: Node,
    instances: Sequence[Storable],
    load: Callable[[Any, list[str]], Dataset],
    on_sent: Callable[[Storable, int | None], None],
) -> None:
    """C-STORE SCU (PS3.4 Annex B) of `instances` over one association. load(instance,
    accepted transfer syntaxes) gives the data set to send; on_sent(instance, status) is
    called after each, status None when nothing could be sent for it."""
    ae = _ae()
    ae.requested_contexts = _storage_contexts(instances)
    with _association(ae, node) as assoc:
        for instance in instances:
            accepted = [
                str(cx.transfer_syntax[0])
                for cx in assoc.accepted_contexts
                if cx.abstract_syntax == instance.sop_class_uid
            ]
            if not accepted:
                on_sent(instance, None)
                continue
            response = assoc.send_c_store(load(instance, accepted))
            on_sent(instance, _status(response, node))


def _storage_contexts(instances: Sequence[Storable]) -> list:
    contexts = storage_contexts(instances)  # type: ignore[arg-type]  # duck-typed instances
    if len(contexts) > 128:  # PS3.8 §9.3.2.2
        raise ScuError("too many SOP classes and transfer syntaxes for one association")
    return contexts
