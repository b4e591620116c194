"""The DICOM receiver: a pynetdicom Application Entity serving Verification, Storage and
Query/Retrieve FIND, MOVE and GET on LIGHTBOX_DICOM_HOST:LIGHTBOX_DICOM_PORT (docs/conformance.md).

In each receiver process (LIGHTBOX_DICOM_PROCESSES of them share the port, members.py),
connections are accepted by one thread; each association then runs in its own thread,
at most LIGHTBOX_DICOM_MAX_ASSOCIATIONS at once in all processes together.
"""

import copy
import importlib
import logging
import os
import socket
import ssl
import threading
import time
from typing import cast

from django.conf import settings
from pydicom import uid
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom import (
    ALL_TRANSFER_SYNTAXES,
    DEFAULT_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    _config,
    evt,
)
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from backend import heap
from backend.nodes.transport import LightboxAE, accepted

from . import handlers, inline, members
from .handlers import (
    PATIENT_ROOT_FIND,
    RETRIEVE_MODELS,
    STUDY_ROOT_FIND,
    VERIFICATION,
    Services,
)
from .members import Load

log = logging.getLogger("lightbox.dimse")
QUERY_MODULE = "backend.archive.query"
LOSSLESS = [
    uid.JPEGLSLossless,
    uid.JPEG2000Lossless,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.JPEG2000MCLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLossless,
    uid.RLELossless,
]


class Contexts(list):
    """The server's supported presentation contexts. pynetdicom deep-copies them for every
    association; UIDs are immutable, so they are shared rather than copied (a tenth of the
    time: every storage SOP class times every transfer syntax is some 7,700 UIDs)."""

    def __deepcopy__(self, memo: dict) -> list:
        for context in self:
            for syntax in (context._abstract_syntax, *context._transfer_syntax):
                memo[id(syntax)] = syntax
        return [copy.deepcopy(context, memo) for context in self]


class Handler(RequestHandler):
    started = False  # whether the association's thread was started

    def _create_association(self):
        assoc = super()._create_association()
        accepted(assoc)
        inline.install(assoc)
        handlers.omit_empty_failed_lists(assoc)
        load, run = self.server.load, assoc.run

        def run_counted() -> None:
            try:
                run()
            finally:
                load.leave()

        assoc.run = run_counted
        return assoc

    def handle(self) -> None:
        super().handle()
        self.started = True


class ReceiverAE(LightboxAE):
    """The receiver's AE: its association limit is for all receiver processes together."""

    load: Load | None = None

    @property
    def maximum_associations(self) -> int:
        limit = self._maximum_associations
        return limit if self.load is None else max(limit - self.load.others(), 0)

    @maximum_associations.setter
    def maximum_associations(self, value: int) -> None:
        LightboxAE.maximum_associations.fset(self, value)  # type: ignore[attr-defined]


class Server(ThreadedAssociationServer):
    """pynetdicom's server, with TCP_NODELAY on every accepted socket (DIMSE responses are
    small and must not wait for Nagle's algorithm) and the TLS handshake done in the
    connection's own thread, so a slow or silent peer cannot stall the accept loop.

    `listening`: a listening socket to accept from (a member process's, inherited) instead
    of binding one. The listening socket is non-blocking: every receiver process is woken
    for a new connection, and those that do not get it go back to waiting. A process with
    more associations than another leaves the connection to that one (members.Load) for up
    to members.DEFER_LIMIT seconds.
    """

    handshake_timeout = 30.0
    request_queue_size = 128  # simultaneous connection requests waiting to be accepted

    def __init__(
        self, *args, listening: socket.socket | None = None, load: Load | None = None, **kwargs
    ):
        kwargs.setdefault("request_handler", Handler)
        self.listening = listening
        self.load = load or Load.alone(settings.DICOM_MAX_ASSOCIATIONS)
        self._deferring_since = self._deferred_at = 0.0
        super().__init__(*args, **kwargs)
        self.contexts = Contexts(self.contexts)
        cast(socket.socket, self.socket).setblocking(False)

    def server_bind(self) -> None:
        if self.listening is None:
            super().server_bind()
            return
        cast(socket.socket, self.socket).close()
        self.socket = self.listening
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        if self.listening is None:
            super().server_activate()

    def service_actions(self) -> None:
        super().service_actions()
        self.load.alive()

    def get_request(self):
        if self._leave_to_another():
            raise BlockingIOError  # socketserver goes back to waiting
        client_socket, address = self.socket.accept()
        self.load.enter()
        client_socket.setblocking(True)
        client_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context:
            client_socket = self.ssl_context.wrap_socket(
                client_socket, server_side=True, do_handshake_on_connect=False
            )
        return client_socket, address

    def _leave_to_another(self) -> bool:
        if self.load.closed:  # stopping: the port closes in a moment
            time.sleep(0.01)
            return True
        if not self.load.busier():
            return False
        now = time.monotonic()
        if now - self._deferred_at > 0.02:  # not deferring a moment ago: another connection
            self._deferring_since = now
        self._deferred_at = now
        if now - self._deferring_since > members.DEFER_LIMIT:
            return False
        time.sleep(0.001)  # the connection stays ready until one takes it: no busy loop
        return True

    def finish_request(self, request, client_address) -> None:
        handler = None
        try:
            if isinstance(request, ssl.SSLSocket):
                previous = request.gettimeout()
                request.settimeout(self.handshake_timeout)
                try:
                    request.do_handshake()
                except (OSError, ssl.SSLError) as exc:
                    log.warning("TLS handshake with %s failed: %s", client_address[0], exc)
                    return
                request.settimeout(previous)
            make = cast(type[Handler], self.RequestHandlerClass)
            handler = make(request, client_address, self)
        finally:
            if not (handler is not None and handler.started):
                self.load.leave()  # no association thread will


def load_find():
    """backend.archive.query.find, or None while that module does not exist."""
    module = _query_module()
    return getattr(module, "find", None) if module else None


def load_query_error():
    module = _query_module()
    return getattr(module, "QueryError", None) if module else None


def _query_module():
    try:
        return importlib.import_module(QUERY_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != QUERY_MODULE:
            raise
        return None


def default_services() -> Services:
    from backend.accounts.audit import record
    from backend.archive.ingest import RecordingProcess
    from backend.archive.retrieve import dataset_for, instances_for
    from backend.nodes.services import authorize, studies_for_node

    # Acknowledge once the spool copy is durable; records and tasks follow in batches,
    # written by a process of their own.
    recorder = RecordingProcess()
    return Services(
        receive=recorder.receive,
        close=recorder.close,
        senders_done=recorder.senders_done,
        ready=recorder.wait_ready,
        authorize=authorize,
        audit=record,
        find=load_find,
        studies_for=studies_for_node,
        query_error=load_query_error,
        instances_for=instances_for,
        dataset_for=dataset_for,
        move_destination=move_destination,
    )


def move_destination(ae_title: str):
    """The registered node a C-MOVE may send to (can_store_to), or None (PS3.4 C.4.2.1.4.1:
    the Move Destination is an AE title the SCP must know the address of)."""
    from backend.nodes.models import RemoteNode

    title = ae_title.strip(" ")
    return RemoteNode.objects.filter(ae_title=title, can_store_to=True).first() if title else None


def storage_transfer_syntaxes() -> list[str]:
    """Every transfer syntax, in the order of preference used when a peer proposes several
    in one presentation context (pynetdicom accepts the first of ours the peer proposed):
    Explicit VR Little Endian, then lossless compressed, then the other uncompressed ones,
    then lossy (accepted only when the peer offers nothing else: its data are lossy
    already). So a modality is never asked to compress lossily for us."""
    every = [UID(syntax) for syntax in ALL_TRANSFER_SYNTAXES]
    uncompressed = [syntax for syntax in every if not syntax.is_compressed]
    return list(dict.fromkeys([ExplicitVRLittleEndian, *LOSSLESS, *uncompressed, *every]))


def make_ae() -> ReceiverAE:
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        # pynetdicom's own logging handlers format every DIMSE message (and copy each
        # received data set to see whether it is empty) before the logger drops the text.
        _config.LOG_HANDLER_LEVEL = "none"
    ae = ReceiverAE(ae_title=settings.AE_TITLE)
    ae.maximum_associations = settings.DICOM_MAX_ASSOCIATIONS
    ae.maximum_pdu_size = settings.DICOM_MAX_PDU
    ae.network_timeout = settings.DICOM_TIMEOUT
    # Associations addressed to another AE title are rejected (PS3.8 §7.1.1.9, reason 7).
    ae.require_called_aet = True
    ae.add_supported_context(VERIFICATION, DEFAULT_TRANSFER_SYNTAXES)
    # Every storage SOP class in every transfer syntax: compressed data is kept as received.
    # A C-GET requestor proposes the SCP role for them (PS3.7 §D.3.3.4): both roles are
    # accepted, so one association may store to Lightbox and retrieve from it.
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(
            str(context.abstract_syntax),
            storage_transfer_syntaxes(),
            scu_role=True,
            scp_role=True,
        )
    for model in (PATIENT_ROOT_FIND, STUDY_ROOT_FIND, *RETRIEVE_MODELS):
        ae.add_supported_context(model, DEFAULT_TRANSFER_SYNTAXES)
    return ae


def event_handlers(services: Services) -> list:
    bound = {
        evt.EVT_C_ECHO: handlers.handle_echo,
        evt.EVT_C_STORE: handlers.handle_store,
        evt.EVT_C_FIND: handlers.handle_find,
        evt.EVT_C_GET: handlers.handle_get,
        evt.EVT_C_MOVE: handlers.handle_move,
        evt.EVT_ACCEPTED: handlers.handle_accepted,
        evt.EVT_REJECTED: handlers.handle_rejected,
        evt.EVT_RELEASED: handlers.handle_released,
        evt.EVT_ABORTED: handlers.handle_aborted,
    }
    return [(event, handler, [services]) for event, handler in bound.items()]


def tls_context() -> ssl.SSLContext | None:
    """Server-side TLS (PS3.15 §B.1 Basic TLS Secure Transport Connection Profile)."""
    if not settings.DICOM_TLS_CERT:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.DICOM_TLS_CERT, settings.DICOM_TLS_KEY)
    if settings.DICOM_TLS_CA:
        context.load_verify_locations(settings.DICOM_TLS_CA)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class Receiver:
    def __init__(self, services: Services | None = None, load: Load | None = None):
        self.ae = make_ae()
        self.load = load or Load.alone(settings.DICOM_MAX_ASSOCIATIONS)
        self.ae.load = self.load
        self.services = services or default_services()
        self.server: Server | None = None

    def start(self, listening: socket.socket | None = None) -> tuple[str, int]:
        address = (settings.DICOM_HOST, settings.DICOM_PORT)
        server = self.server = cast(
            Server,
            self.ae.make_server(
                address,
                ssl_context=tls_context(),
                evt_handlers=event_handlers(self.services),
                server_class=Server,
                listening=listening,
                load=self.load,
            ),
        )
        self.ae._servers.append(server)
        thread = threading.Thread(target=server.serve_forever, name="DicomAccept")
        thread.daemon = True
        thread.start()
        host, port = server.server_address[:2]
        return str(host), int(port)

    def stop(self, grace: float) -> int:
        """Stop accepting, give open associations `grace` seconds, abort the rest; returns
        how many were aborted."""
        if self.server is None:
            return 0
        self.server.shutdown()  # no new connections; the listening socket is closed
        self.load.gone()  # other receiver processes leave it none any more
        deadline = time.monotonic() + grace
        while self.server.active_associations and time.monotonic() < deadline:
            time.sleep(0.1)
        remaining = self.server.active_associations
        for assoc in remaining:
            log.warning("aborting the association from %s", assoc.requestor.ae_title)
            assoc.abort()
        for assoc in remaining:
            assoc.join(timeout=5)
        self.services.close()
        return len(remaining)


RECORDING_START_TIMEOUT = 60.0  # seconds


def await_recording(services: Services) -> None:
    """Say ready only once the recording process is: its start-up then does not compete
    with the first transfer. Associations are accepted meanwhile (files are spooled
    durably and wait in the recording process's input)."""
    if not services.ready(RECORDING_START_TIMEOUT):
        log.warning(
            "the recording process was not ready after %s s; received files are spooled "
            "and recorded once it is (or by the sweep)",
            RECORDING_START_TIMEOUT,
        )


def run_until(stop: threading.Event, services: Services | None = None) -> int:
    """Serve until `stop` is set, with LIGHTBOX_DICOM_PROCESSES - 1 member processes;
    returns the number of associations aborted at the end (by this process)."""
    count = settings.DICOM_PROCESSES if hasattr(os, "memfd_create") else 1
    load, load_fd = Load.shared(count, settings.DICOM_MAX_ASSOCIATIONS) if count > 1 else (None, -1)
    receiver = Receiver(services, load)
    host, port = receiver.start()
    assert receiver.server is not None
    listening = cast(socket.socket, receiver.server.socket)
    started = members.Members(listening, load, load_fd, count) if load else None
    await_recording(receiver.services)
    heap.freeze_start_up()
    tls = " (TLS)" if settings.DICOM_TLS_CERT else ""
    processes = f", {count} processes" if count > 1 else ""
    log.info(
        "DICOM receiver %s listening on %s:%s%s%s", settings.AE_TITLE, host, port, tls, processes
    )
    while not stop.wait(0.5):
        if started:
            started.check()
    receiver.load.stopping()
    log.info("stopping: waiting up to %s s for open associations", settings.DICOM_SHUTDOWN_GRACE)
    if started:
        started.signal_stop()
    aborted = receiver.stop(settings.DICOM_SHUTDOWN_GRACE)
    if started:
        # Each member has its own grace period; this one began with this process's.
        started.wait(timeout=settings.DICOM_SHUTDOWN_GRACE + 15)
    log.info("DICOM receiver stopped (%d associations aborted)", aborted)
    return aborted


def run_member(stop: threading.Event, member: int, listening_fd: int, load_fd: int) -> int:
    """A member process (members.py): serve from the first process's listening socket until
    `stop` is set or the first process has gone."""
    parent = os.getppid()
    load = Load.attach(load_fd, member, settings.DICOM_MAX_ASSOCIATIONS)
    receiver = Receiver(load=load)
    receiver.start(listening=socket.socket(fileno=listening_fd))
    await_recording(receiver.services)
    heap.freeze_start_up()
    log.info("DICOM receiver process %d of %d ready", member + 1, load.members)
    while not stop.wait(0.5):
        if os.getppid() != parent:
            log.warning("the first DICOM receiver process has gone: stopping")
            break
    aborted = receiver.stop(settings.DICOM_SHUTDOWN_GRACE)
    log.info("DICOM receiver process %d stopped (%d associations aborted)", member + 1, aborted)
    return aborted
