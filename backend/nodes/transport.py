"""DICOM network plumbing shared by the receiver (worker/dimse) and the SCU jobs
(backend/nodes/scu.py): how our associations' sockets read and acknowledge, and the AE
whose outgoing associations use them.

- PDUs are read with recv() calls of up to RECV_CHUNK bytes instead of pynetdicom's 4 KiB
  calls appended one by one; the buffer grows with what arrives, never to the length a
  peer claims (a PDU header saying 4 GiB costs nothing until it is sent).
- Each read first asks Linux to acknowledge at once (TCP_QUICKACK) rather than after its
  delayed-ACK wait of up to 40 ms. A peer that leaves Nagle's algorithm on (dcmtk does
  unless TCP_NODELAY=1 is in its environment) holds its next small PDU, such as the
  C-STORE response of a C-GET or C-MOVE sub-operation, until its previous one is
  acknowledged: 275 CT slices by C-GET to getscu took 13.8 s, now 2.0 s.
- Our own small PDUs go out at once (TCP_NODELAY), on accepted and outgoing sockets.
- Both threads of every association, accepted or outgoing, wait instead of polling
  (reactor.make_waking).
"""

import contextlib
import socket
from typing import cast

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket

from . import reactor

RECV_CHUNK = 1 << 20


def quick_ack(sock: socket.socket) -> None:
    """Acknowledge what arrives next at once. The option does not stay set (Linux turns
    it off again by itself), so it is set before each read; harmless where unsupported."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def no_delay(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Socket(AssociationSocket):
    """pynetdicom's socket wrapper, reading as described above."""

    def recv(self, nr_bytes: int) -> bytearray:
        sock = cast(socket.socket, self.socket)
        quick_ack(sock)
        buffer = bytearray()
        while len(buffer) < nr_bytes:
            chunk = sock.recv(min(nr_bytes - len(buffer), RECV_CHUNK))
            if not chunk:  # the connection was closed: return what arrived, as pynetdicom does
                break
            buffer += chunk
        return buffer


def accepted(assoc: Association) -> None:
    """Set up a new (not yet started) association the receiver accepted: our socket, and
    both its threads waiting rather than polling."""
    assoc.dul.socket.__class__ = Socket
    reactor.make_waking(assoc)


class LightboxAE(AE):
    """pynetdicom's AE whose outgoing associations (C-MOVE sub-operations, the SCU jobs)
    read, acknowledge and send as above."""

    def _create_socket(self, assoc: Association, address, tls_args) -> AssociationSocket:
        sock = super()._create_socket(assoc, address, tls_args)
        sock.__class__ = Socket
        if sock.socket is not None:
            no_delay(sock.socket)
        if reactor.applicable():  # neither thread is started yet
            reactor.make_waking(assoc)
        return sock
