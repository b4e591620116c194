"""C-STORE requests served by the thread that read them.

In pynetdicom, the DUL thread reads the socket and decodes each complete DIMSE message,
then hands it to the association's thread through a queue. That thread runs the service
class, which builds a response primitive, has pydicom encode its command set and queues it
back to the DUL thread to send. For a C-STORE that is two hand-offs between threads and
most of what pynetdicom costs per instance besides reading the PDUs.

Here a C-STORE request that arrives while the association's thread has nothing to do is
served where it was decoded: the EVT_C_STORE handler runs in the DUL thread, and the
response's command set (PS3.7 §9.3.1.2, Implicit VR Little Endian as every command set,
PS3.7 §6.3.1) is encoded here and queued for the same thread's next pass, ahead of reading
the next PDU. What the handler sees is what pynetdicom gives it (an Event with the request
and the context), an exception in it is answered 0xC211 as pynetdicom does, and a handler
that aborts the association gets no response sent.

Everything else takes pynetdicom's path unchanged: other messages; a C-STORE while the
association's thread is busy (a C-GET or C-MOVE being served, a peer that does not wait for
responses), so that two messages never interleave; a status this module does not encode
(any element besides Status and Error Comment, or a status the Storage Service does not
define); an abstract syntax that is not a storage SOP class; pynetdicom's DIMSE logging on.
It is used only while the association's loops are reactor.py's (pynetdicom as they were
copied from).

Receiving, too, a C-STORE request takes a shorter way (StoreDIMSE): pynetdicom decodes every
command set into a pydicom Dataset and copies its elements into a primitive one by one;
here a C-STORE-RQ's command set, when it arrives whole in one fragment and holds only the
elements PS3.7 §9.3.1.1 gives it, is read directly, and its data set fragments are written
as they come. Anything else, and anything in a form pynetdicom might read differently (a
Move Originator AE title, a UID that is not digits and dots), is left to pynetdicom's
decoder, which this follows only while its code is what it was written against
(SHAPED_AFTER).
"""

import contextlib
import functools
import logging
import struct
import threading
from io import BytesIO

from pydicom.dataset import Dataset
from pynetdicom import _config, evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from backend.nodes import reactor

LOGGER = logging.getLogger("pynetdicom.service-c")
DIMSE_LOGGER = logging.getLogger("pynetdicom.dimse")
# The SHA-256 of the pynetdicom code StoreDIMSE stands in for: if an upgrade changes any of
# it, pynetdicom's own decoder runs, and tests/dimse/test_inline.py fails until this module
# is checked against the new code.
SHAPED_AFTER = {
    "DIMSEServiceProvider.receive_primitive": (
        "5f99c86b14a15cefa87d914cda3591ec4d636d4c53a982e945ec9c1828c6e43f"
    ),
    "DIMSEMessage.decode_msg": "f51c777e841a76beeaadfe3015bd4f4a68387229a72f13f3a3b7846d01d72284",
    "DIMSEMessage.message_to_primitive": (
        "f8f43d34e43450efa31bd308677b85b370f8ca7600c0e067e854f8095ce665ac"
    ),
}

STATUS = 0x00000900
ERROR_COMMENT = 0x00000902
_C_STORE_RSP = 0x8001
_NO_DATA_SET = 0x0101
# A PDU header (6 bytes) and a PDV item's length, context ID and control header (6).
_PDU_OVERHEAD = 12
_LAST_COMMAND_FRAGMENT = b"\x03"
_KNOWN_STATUSES = frozenset(StorageServiceClass.statuses)  # PS3.4 Table B.2-1 and general


class Requests:
    """The DIMSE message queue of a receiving association (the DUL thread puts, the
    association's thread takes), serving a C-STORE request itself when it can. A response
    that a send_*() call takes from the queue (a C-GET's sub-operations) is never marked
    done: after a C-GET, the rest of that association takes pynetdicom's path."""

    def __init__(self, assoc, messages):
        self.assoc = assoc
        self.messages = messages

    def __getattr__(self, name):  # get(), qsize(), not_empty, ...: the queue's own
        return getattr(self.messages, name)

    def put(self, item, block=True, timeout=None) -> None:
        context_id, primitive = item
        # unfinished_tasks counts what was queued and not yet served: zero means the
        # association's thread is waiting (ReceiverAssociation._serve_request below).
        if (
            type(primitive) is C_STORE
            and self.messages.unfinished_tasks == 0
            and serve_store(self.assoc, primitive, context_id)
        ):
            return
        self.messages.put(item, block, timeout)


class ReceiverAssociation(reactor.WakingAssociation):
    """Marks each queued message served, so that Requests knows the thread is idle."""

    def _serve_request(self, msg, context_id: int) -> None:
        try:
            super()._serve_request(msg, context_id)
        finally:
            # Only for what this thread took from the queue: pynetdicom serves an
            # N-EVENT-REPORT in a thread of its own, without queueing it.
            if threading.current_thread() is self:
                with contextlib.suppress(ValueError):
                    self.dimse.msg_queue.task_done()


class _Incoming:
    """A C-STORE-RQ being received: its command's values and its data set so far."""

    __slots__ = ("context_id", "command", "data")

    def __init__(self, context_id: int, command: dict[int, int | str]):
        self.context_id = context_id
        self.command = command
        self.data = BytesIO()


class StoreDIMSE(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider, receiving C-STORE requests as described above."""

    _incoming: _Incoming | None = None

    def receive_primitive(self, primitive) -> None:
        if self._incoming is not None:
            self._receive_data(primitive.presentation_data_value_list)
        elif self.message is not None or not self._begin(primitive):
            super().receive_primitive(primitive)

    def _begin(self, primitive) -> bool:
        """Take the first P-DATA of a C-STORE-RQ; False, having taken nothing, for
        anything else."""
        if type(primitive) is not P_DATA or _config.STORE_RECV_CHUNKED_DATASET:
            return False
        values = primitive.presentation_data_value_list
        if not values or self.assoc.get_handlers(evt.EVT_DIMSE_RECV):
            return False
        context_id, data = values[0]
        if data[:1] != _LAST_COMMAND_FRAGMENT:  # not a whole command in one fragment
            return False
        command = store_command(memoryview(data)[1:])
        if command is None:
            return False
        self._incoming = _Incoming(context_id, command)
        self._receive_data(values[1:])
        return True

    def _receive_data(self, values) -> None:
        incoming = self._incoming
        assert incoming is not None
        for _, data in values:
            control = data[0]
            if control & 1:  # a command fragment among a message's data: not DIMSE
                self._incoming = None
                DIMSE_LOGGER.error("Received an invalid DIMSE message")
                self.dul.event_queue.put("Evt19")
                return
            incoming.data.write(memoryview(data)[1:])
            if control & 2:  # the last fragment: what follows it is dropped, as pynetdicom does
                self._incoming = None
                self._deliver(incoming)
                return

    def _deliver(self, incoming: _Incoming) -> None:
        request = C_STORE()
        try:
            for element, value in incoming.command.items():
                keyword = _PRIMITIVE_KEYWORDS.get(element)
                if keyword:
                    setattr(request, keyword, value)
            request.DataSet = incoming.data
            request._context_id = incoming.context_id
        except Exception as exc:  # as pynetdicom does with a message it cannot convert
            DIMSE_LOGGER.error("Received an invalid DIMSE message")
            DIMSE_LOGGER.exception(exc)
            self.dul.event_queue.put("Evt19")
            return
        self.msg_queue.put((incoming.context_id, request))


# The elements of a C-STORE-RQ command set (PS3.7 Table 9.3-1) read here, and their VRs;
# (0000,1030) Move Originator Application Entity Title is left to pynetdicom.
_STORE_COMMAND = {
    0x0000: "UL",  # Command Group Length
    0x0002: "UI",  # Affected SOP Class UID
    0x0100: "US",  # Command Field
    0x0110: "US",  # Message ID
    0x0700: "US",  # Priority
    0x0800: "US",  # Command Data Set Type
    0x1000: "UI",  # Affected SOP Instance UID
    0x1031: "US",  # Move Originator Message ID
}
_PRIMITIVE_KEYWORDS = {
    0x0002: "AffectedSOPClassUID",
    0x0110: "MessageID",
    0x0700: "Priority",
    0x1000: "AffectedSOPInstanceUID",
    0x1031: "MoveOriginatorMessageID",
}
_C_STORE_RQ = 0x0001
_UID_CHARACTERS = frozenset(b"0123456789.")


def store_command(view: memoryview) -> dict[int, int | str] | None:
    """The values of a C-STORE-RQ command set (Implicit VR Little Endian, PS3.7 §6.3.1)
    with a data set, by element number; None for any other command set, or one holding
    anything else or anything pynetdicom might read otherwise."""
    values: dict[int, int | str] = {}
    offset, end = 0, len(view)
    while offset < end:
        if offset + 8 > end:
            return None
        group, element, length = struct.unpack_from("<HHI", view, offset)
        offset += 8
        vr = _STORE_COMMAND.get(element)
        if group != 0 or vr is None or element in values or offset + length > end:
            return None
        value = view[offset : offset + length]
        offset += length
        if vr == "US":
            if length != 2:
                return None
            values[element] = struct.unpack("<H", value)[0]
        elif vr == "UL":
            if length != 4:
                return None
        else:
            text = bytes(value).rstrip(b"\0 ")
            if not text or not _UID_CHARACTERS.issuperset(text):
                return None
            values[element] = text.decode("ascii")
    if values.get(0x0100) != _C_STORE_RQ or values.get(0x0800, _NO_DATA_SET) == _NO_DATA_SET:
        return None
    return values


def stock_hashes() -> dict[str, str]:
    """The SHA-256 of the installed pynetdicom's code that SHAPED_AFTER records."""
    return reactor.source_hashes(
        {
            "DIMSEServiceProvider.receive_primitive": DIMSEServiceProvider.receive_primitive,
            "DIMSEMessage.decode_msg": DIMSEMessage.decode_msg,
            "DIMSEMessage.message_to_primitive": DIMSEMessage.message_to_primitive,
        }
    )


@functools.cache
def receives_directly() -> bool:
    return reactor.pinned(
        stock_hashes(),
        SHAPED_AFTER,
        "pynetdicom's DIMSE decoding differs from what worker/dimse/inline.py was written "
        "against: C-STORE requests are decoded by pynetdicom",
    )


def install(assoc) -> None:
    """Serve C-STOREs in the DUL thread on a new (not yet started) accepted association,
    whose loops reactor.make_waking has switched, and receive them as above."""
    if not isinstance(assoc, reactor.WakingAssociation):
        return  # pynetdicom's own loops: left as they are
    assoc.__class__ = ReceiverAssociation
    assoc.dimse.msg_queue = Requests(assoc, assoc.dimse.msg_queue)  # type: ignore[assignment]
    if receives_directly():
        assoc.dimse.__class__ = StoreDIMSE


def serve_store(assoc, request: C_STORE, context_id: int) -> bool:
    """Serve a C-STORE request in the calling (DUL) thread; False, having done nothing,
    when pynetdicom's path must serve it."""
    if not _servable(assoc, request, context_id):
        return False
    context = assoc._accepted_cx[context_id]
    assoc.dimse.cancel_req = {}
    # As pynetdicom's service classes do while a handler runs: abort() must not wait for
    # this thread to end.
    assoc.abort = assoc._abort_nonblocking
    try:
        status = evt.trigger(
            assoc, evt.EVT_C_STORE, {"request": request, "context": context.as_tuple}
        )
    except Exception as exc:
        LOGGER.error("Exception in handler bound to 'evt.EVT_C_STORE'")
        LOGGER.exception(exc)
        status = 0xC211
    finally:
        assoc.abort = assoc._abort_blocking
    if not assoc.is_established:  # the handler aborted or released
        return True
    command = response(request, status)
    if command is None or not _fits(assoc, command):
        answer = C_STORE()
        answer.MessageIDBeingRespondedTo = request.MessageID
        answer.AffectedSOPInstanceUID = request.AffectedSOPInstanceUID
        answer.AffectedSOPClassUID = request.AffectedSOPClassUID
        service = StorageServiceClass(assoc)
        answer = service.validate_status(status, answer)  # type: ignore[arg-type]
        assoc.dimse.send_msg(answer, context_id)
        return True
    pdata = P_DATA()
    pdv = [context_id, _LAST_COMMAND_FRAGMENT + command]  # a list: P_DATA checks for one
    pdata.presentation_data_value_list = [pdv]  # type: ignore[list-item]
    # The DUL's own queue, without waking it: this is its thread, and it sends what is
    # queued before it reads again.
    DULServiceProvider.send_pdu(assoc.dul, pdata)
    return True


def _servable(assoc, request: C_STORE, context_id: int) -> bool:
    if not request.is_valid_request or assoc._sent_release or not assoc.is_established:
        return False
    if _config.UNRESTRICTED_STORAGE_SERVICE or context_id not in assoc._accepted_cx:
        return False
    if assoc.get_handlers(evt.EVT_DIMSE_SENT) or request._dataset_file is not None:
        return False
    class_uid = str(request.AffectedSOPClassUID)
    extended = assoc.acceptor.accepted_common_extended.get(class_uid)
    if extended:
        class_uid = extended[0]
    return uid_to_service_class(class_uid) is StorageServiceClass


def _fits(assoc, command: bytes) -> bool:
    maximum = assoc.dimse.maximum_pdu_size
    return not maximum or len(command) + _PDU_OVERHEAD <= maximum


def response(request: C_STORE, status) -> bytes | None:
    """The C-STORE-RSP command set for a handler's status (an int, or a Dataset of Status
    and, optionally, Error Comment), or None when it is anything else."""
    comment = None
    if isinstance(status, Dataset):
        if "Status" not in status or set(status.keys()) - {STATUS, ERROR_COMMENT}:
            return None
        code, comment = status.Status, status.get("ErrorComment")
    else:
        code = status
    if type(code) is not int or code not in _KNOWN_STATUSES:
        return None
    try:
        sop_class_uid, sop_instance_uid = (
            _uid(request.AffectedSOPClassUID),
            _uid(request.AffectedSOPInstanceUID),
        )
    except UnicodeEncodeError:
        return None
    elements = [
        _element(0x0002, sop_class_uid),
        _element(0x0100, struct.pack("<H", _C_STORE_RSP)),
        _element(0x0120, struct.pack("<H", request.MessageID)),
        _element(0x0800, struct.pack("<H", _NO_DATA_SET)),
        _element(0x0900, struct.pack("<H", code)),
    ]
    if comment:
        if not isinstance(comment, str):  # several values (a backslash in the text)
            return None
        text = comment
        if len(text) > 64 or not text.isascii() or not text.isprintable() or "\\" in text:
            return None
        value = text.encode("ascii")
        elements.append(_element(0x0902, value + b" " * (len(value) % 2)))
    elements.append(_element(0x1000, sop_instance_uid))
    body = b"".join(elements)
    return _element(0x0000, struct.pack("<I", len(body))) + body


def _uid(value) -> bytes:
    encoded = str(value).encode("ascii")
    return encoded + b"\x00" * (len(encoded) % 2)


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, element, len(value)) + value
