"""pynetdicom's two loops per association, woken by what they wait for instead of polling.

pynetdicom 3.0 runs each association in two threads that poll: the association's loop
sleeps 1 ms before each look for a received DIMSE message, and the DUL's (the socket's)
sleeps 1 ms whenever a pass found nothing to read or send. Over one association every
C-STORE paid those naps three times on its way (the request read, the request served,
the response sent): about 1.5 of the ~6 ms an instance took on the benchmark machine
(docs/performance.md), with both threads asleep most of that time.

Here the association's loop waits on its message queue, and the DUL's on the socket and
on a wake-up pipe that every queued primitive writes to; both still wake at least every
IDLE_WAIT to do the rest of their checks (timers, release, abort, shutdown), at which
pynetdicom's own code runs unchanged. The two methods below are pynetdicom's with only the
sleep replaced. They are used only while pynetdicom's own methods are the ones they were
copied from (COPIED_FROM, their source's SHA-256): after an upgrade that changes either, the
stock loops run, and tests/dimse/test_reactor.py fails until the copies are brought up to
date.
"""

import contextlib
import functools
import hashlib
import inspect
import logging
import queue
import select
import socket
import ssl
import time
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket
from pynetdicom.utils import make_target

LOGGER = logging.getLogger("pynetdicom.dul")
ASSOC_LOGGER = logging.getLogger("pynetdicom.association")
IDLE_WAIT = 0.01  # seconds: the longest either loop sleeps with nothing to do
COPIED_FROM = {
    "Association._run_reactor": "f28838c5559e462a563750cfc9f3790027f4bb7e2223baf42c9f5d682c359dee",
    "DULServiceProvider.run_reactor": (
        "e3a10eb3a0931e4854af33b9496e92d9679522aca26b0e04da8967559b9e2803"
    ),
}


class WakingDUL(DULServiceProvider):
    """The DUL thread, sleeping in select() on its socket and its wake-up pipe."""

    _waker: tuple[socket.socket, socket.socket] | None = None

    def send_pdu(self, primitive) -> None:
        super().send_pdu(primitive)
        self._wake()

    def _wake(self) -> None:
        waker = self._waker
        if waker is not None:
            with contextlib.suppress(OSError):  # full (already woken) or closed
                waker[1].send(b"\0")

    def _idle(self) -> None:
        """Until the socket has data, a primitive is queued, or IDLE_WAIT has passed."""
        if self.to_provider_queue.qsize() or self.event_queue.qsize():
            return
        sock = getattr(self.socket, "socket", None)
        if self._waker is None or sock is None:
            time.sleep(self._run_loop_delay)
            return
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return
        try:
            ready, _, _ = select.select([sock, self._waker[0]], [], [], IDLE_WAIT)
        except (OSError, ValueError):  # closed under us: the loop's own checks see it
            return
        if self._waker[0] in ready:
            with contextlib.suppress(OSError):
                self._waker[0].recv(4096)

    _requested = False  # an acceptor's: whether the peer's A-ASSOCIATE-RQ came

    def _after_transition(self) -> None:
        """An accepted connection that closed (or sent something other than an
        A-ASSOCIATE-RQ, or whose ARTIM timer ran out) before the peer asked for an
        association: pynetdicom's acceptor thread would go on waiting for the request for
        the ACSE timeout (30 s), counted as an open association all that time. A health
        check's bare connect-and-close, or a scan of the port, held one of the receiver's
        associations for half a minute, and the receiver processes shared new connections
        unevenly meanwhile (members.Load). Wake it at once: an empty item is what its wait
        returns when it times out, and it ends as it does then."""
        state = self.state_machine.current_state
        if state == "Sta3":  # A-ASSOCIATE-RQ received, the acceptor's thread answers it
            self._requested = True
        elif state == "Sta1" and not self._requested and self.assoc.is_acceptor:
            self._requested = True  # once
            self.to_user_queue.put(None)  # type: ignore[arg-type]

    def run(self) -> None:
        # The thread's target is the stock loop, bound by pynetdicom when the DUL was made
        # (before its class was switched): run this class's loop instead.
        make_target(self.run_reactor)()

    def run_reactor(self) -> None:
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._waker = (reader, writer)
        try:
            self._run_reactor_loop()
        finally:
            self._waker = None
            reader.close()
            writer.close()

    def _run_reactor_loop(self) -> None:
        # pynetdicom 3.0.4 DULServiceProvider.run_reactor, with `time.sleep(delay)` → _idle()
        self._idle_timer.start()
        sleep = False

        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                sleep = True

            if sleep:
                self._idle()

            if self._kill_thread:
                break

            if self.artim_timer.expired:
                self.event_queue.put("Evt18")

            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception as exc:
                LOGGER.error("Exception in DUL.run(), aborting association")
                LOGGER.exception(exc)
                abort_pdu = A_ABORT_RQ()
                abort_pdu.source = 0x02
                abort_pdu.reason_diagnostic = 0x00
                cast(AssociationSocket, self.socket).send(abort_pdu.encode())
                self.assoc.is_aborted = True
                self.assoc.is_established = False
                self.assoc._kill = True
                self._kill_thread = True
                return

            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                sleep = True
                continue

            self.state_machine.do_action(event)
            self._after_transition()
            sleep = False


class WakingAssociation(Association):
    """The association's thread, sleeping on its DIMSE message queue."""

    def _idle(self) -> None:
        """Until a DIMSE message is waiting or IDLE_WAIT has passed (not taking it: the
        pause checkpoint below still decides who does)."""
        messages = self.dimse.msg_queue
        with messages.not_empty:
            if not messages._qsize():
                messages.not_empty.wait(IDLE_WAIT)

    def _pause(self) -> None:
        """Wait while a send_*() method owns the DIMSE queue (it clears the checkpoint,
        waits for _is_paused, sends, takes the response, sets the checkpoint).

        pynetdicom's loop leaves _is_paused True until its thread runs again after the
        set(). A send_*() that comes in that gap sees it paused, while the loop goes on to
        take the response from the queue. It logs "Received unexpected C-ECHO service
        message", and the sender waits for the DIMSE timeout. Once replies came back within
        microseconds, 200 C-ECHOs in a row hit this. Here the loop marks itself running
        first, then goes on only if the checkpoint is still set."""
        while True:
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            if self._reactor_checkpoint.is_set():
                return

    def _run_reactor(self) -> None:
        # pynetdicom 3.0.4 Association._run_reactor, with `time.sleep(0.001)` → _idle()
        # and its pause → _pause()
        self._is_paused = False
        while not self._kill:
            self._idle()

            self._pause()

            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, cast(int, context_id))

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                ASSOC_LOGGER.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                log_msg = "Association Aborted"
                if self.acse.is_aborted("a-p-abort"):
                    log_msg += " (A-P-ABORT)"
                ASSOC_LOGGER.info(log_msg)
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                ASSOC_LOGGER.error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()

                self.kill()
                return


def source_hashes(methods: dict[str, Any]) -> dict[str, str]:
    """The SHA-256 of each method's source code, by name: how the code of pynetdicom's that
    ours copies or stands in for is pinned (here and in worker/dimse/inline.py)."""
    return {
        name: hashlib.sha256(inspect.getsource(method).encode()).hexdigest()
        for name, method in methods.items()
    }


def stock_hashes() -> dict[str, str]:
    """The SHA-256 of the installed pynetdicom's two loops, as COPIED_FROM records them."""
    return source_hashes(
        {
            "Association._run_reactor": Association._run_reactor,
            "DULServiceProvider.run_reactor": DULServiceProvider.run_reactor,
        }
    )


def pinned(current: dict[str, str], recorded: dict[str, str], otherwise: str) -> bool:
    """Whether the installed pynetdicom's code is the code `recorded` pins; if it is not,
    the log says what runs instead (`otherwise`)."""
    if current == recorded:
        return True
    logging.getLogger("lightbox.dimse").warning(otherwise)
    return False


@functools.cache
def applicable() -> bool:
    return pinned(
        stock_hashes(),
        COPIED_FROM,
        "pynetdicom's reactor loops differ from those backend/nodes/reactor.py copied: "
        "running the stock (polling) loops",
    )


def make_waking(assoc: Association) -> None:
    """Switch a new (not yet started) association, accepted or requested, to the loops
    above.

    Replies then leave within microseconds of being ready, as from dcmtk's or Orthanc's
    SCPs. A client built on stock pynetdicom 3.0 can lose such a reply to the race that
    WakingAssociation._pause closes on our side (pynetdicom issue #875: its own loop takes
    the reply, and it waits for the DIMSE timeout); pynetdicom's 1 ms poll on our side only
    made that rarer, at a fifth of the time one association took per C-STORE. The tests'
    pynetdicom clients are LightboxAE, whose loops do not have it."""
    if applicable():
        assoc.__class__ = WakingAssociation
        assoc.dul.__class__ = WakingDUL
