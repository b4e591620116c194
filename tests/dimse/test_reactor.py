"""The receiver's association loops that wait for work instead of polling
(backend/nodes/reactor.py): copied from this pynetdicom, used by the server, and correct
across many requests, a release and an abort. Store, find, move, get, cancel, abort and
shutdown run through them in the other tests of this folder, against the real receiver."""

import socket
import threading

import pytest
from pynetdicom import evt
from pynetdicom.sop_class import Verification

from backend.nodes import reactor
from backend.nodes.transport import LightboxAE, Socket
from worker.dimse import inline
from worker.dimse.server import Server, make_ae


def test_the_copied_loops_are_this_pynetdicoms():
    # If this fails after a pynetdicom upgrade, bring WakingAssociation._run_reactor and
    # WakingDUL._run_reactor_loop up to date with the new code, then update COPIED_FROM.
    assert reactor.stock_hashes() == reactor.COPIED_FROM
    assert reactor.applicable()


@pytest.fixture
def server():
    """The receiver's AE and server class on a free port, with recording handlers."""
    seen = {
        "classes": set(),
        "echoes": 0,
        "released": threading.Event(),
        "aborted": threading.Event(),
    }

    def on_echo(event):
        dul = event.assoc.dul
        # _waker is set only while WakingDUL's own loop runs in the DUL thread
        seen["classes"].add(
            (
                type(event.assoc).__name__,
                type(dul).__name__,
                getattr(dul, "_waker", None) is not None,
            )
        )
        seen["echoes"] += 1
        return 0x0000

    ae = make_ae()
    ae.require_called_aet = False
    handlers = [
        (evt.EVT_C_ECHO, on_echo),
        (evt.EVT_RELEASED, lambda event: seen["released"].set()),
        (evt.EVT_ABORTED, lambda event: seen["aborted"].set()),
    ]
    running = ae.make_server(("127.0.0.1", 0), evt_handlers=handlers, server_class=Server)
    ae._servers.append(running)  # as AE.start_server does; shutdown() takes it out
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running.server_address[1], seen
    running.shutdown()


def associate(port: int):
    # Our own AE, as the C-MOVE sub-operations and SCU jobs use: pynetdicom's stock
    # requestor loop can take a fast reply from the queue before send_c_echo() does
    # (WakingAssociation._pause), which is its bug, not the server's.
    scu = LightboxAE(ae_title="TESTSCU")
    scu.add_requested_context(Verification)
    assoc = scu.associate("127.0.0.1", port, ae_title="LIGHTBOX")
    assert assoc.is_established
    return assoc


def test_the_server_runs_them_and_they_answer_every_request(server):
    port, seen = server
    assoc = associate(port)

    statuses = [assoc.send_c_echo().Status for _ in range(1000)]
    assoc.release()

    assert statuses == [0x0000] * 1000 and seen["echoes"] == 1000
    # ReceiverAssociation: WakingAssociation that also serves C-STOREs inline (inline.py)
    assert seen["classes"] == {("ReceiverAssociation", "WakingDUL", True)}
    assert issubclass(inline.ReceiverAssociation, reactor.WakingAssociation)
    assert seen["released"].wait(5) and assoc.is_released


def test_an_abort_from_the_peer_ends_the_association(server):
    port, seen = server
    assoc = associate(port)
    assert assoc.send_c_echo().Status == 0x0000

    assoc.abort()

    assert seen["aborted"].wait(5)


def test_outgoing_associations_send_at_once_and_wait_for_their_socket(server):
    port, seen = server
    ae = LightboxAE(ae_title="LIGHTBOX")  # as the C-MOVE sub-operations and SCU jobs use
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="LIGHTBOX")
    assert assoc.is_established
    sock = assoc.dul.socket

    assert type(sock) is Socket and type(assoc.dul) is reactor.WakingDUL
    assert type(assoc) is reactor.WakingAssociation
    assert assoc.dul._waker is not None  # its loop, not the stock one, runs the thread
    assert sock.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert [assoc.send_c_echo().Status for _ in range(50)] == [0x0000] * 50
    assoc.release()
    assert assoc.is_released
