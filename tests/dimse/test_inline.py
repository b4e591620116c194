"""C-STOREs served in the DUL thread (worker/dimse/inline.py): the response command sets
are those pynetdicom encodes, every status a handler can return is answered, and the
requests take pynetdicom's own path whenever the association's thread is busy."""

import threading
import time
from io import BytesIO

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from backend.nodes.transport import LightboxAE
from worker.dimse import inline
from worker.dimse.server import Server, make_ae


def _request(message_id: int = 7, sop_class: str = CTImageStorage, instance: str = "") -> C_STORE:
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = sop_class
    request.AffectedSOPInstanceUID = instance or generate_uid()
    request.Priority = 0
    return request


def _pynetdicom_command(request: C_STORE, status) -> bytes:
    """The command set pynetdicom's own Storage SCP sends for `status`."""
    answer = C_STORE()
    answer.MessageIDBeingRespondedTo = request.MessageID
    answer.AffectedSOPInstanceUID = request.AffectedSOPInstanceUID
    answer.AffectedSOPClassUID = request.AffectedSOPClassUID
    answer = object.__new__(StorageServiceClass).validate_status(status, answer)
    message = C_STORE_RSP()
    message.primitive_to_message(answer)
    (pdata,) = message.encode_msg(1, 16384)
    ((context_id, pdv),) = pdata.presentation_data_value_list
    assert pdv[0:1] == b"\x03"  # a command, its last fragment
    return pdv[1:]


def _status(code: int, comment: str | None = None) -> Dataset:
    status = Dataset()
    status.Status = code
    if comment is not None:
        status.ErrorComment = comment
    return status


@pytest.mark.parametrize(
    "status",
    [
        0x0000,
        0xA700,
        0xC001,
        0xB000,
        _status(0x0000),
        _status(0xA700, "storage is full"),
        _status(0xC001, "odd"),
        _status(0x0124, "calling AE not authorized to store"),
        _status(0xC211, "x" * 64),
    ],
    ids=repr,
)
@pytest.mark.parametrize("instance", ["1.2.3.4", "1.2.3.45", ""], ids=["even", "odd", "long"])
def test_the_response_is_the_one_pynetdicom_encodes(status, instance):
    request = _request(message_id=0xFFFF, instance=instance)
    assert inline.response(request, status) == _pynetdicom_command(request, status)


@pytest.mark.parametrize(
    "status",
    [
        None,
        "0",
        1.0,
        0x1234,  # not a Storage Service status: pynetdicom logs it and sends it
        _status(0xC001, "x" * 65),  # pynetdicom decides what to do with an overlong LO
        _status(0xC001, "café"),
        _status(0xC001, "a\\b"),
        Dataset(),  # no Status: pynetdicom answers 0xC001
    ],
    ids=repr,
)
def test_anything_else_is_left_to_pynetdicom(status):
    assert inline.response(_request(), status) is None


def test_an_offending_element_is_left_to_pynetdicom():
    status = _status(0xC000)
    status.OffendingElement = [0x00100010]
    assert inline.response(_request(), status) is None


@pytest.fixture
def receiver():
    """The receiver's AE and server class on a free port; its C-STORE handler answers what
    `answers` holds next and records the thread it ran in."""
    seen: dict = {"threads": [], "answers": [], "find_started": threading.Event()}
    release_find = threading.Event()

    def on_store(event):
        seen["threads"].append(threading.current_thread() is event.assoc)
        answer = seen["answers"].pop(0) if seen["answers"] else 0x0000
        if isinstance(answer, Exception):
            raise answer
        return answer

    def on_find(event):
        seen["find_started"].set()
        release_find.wait(10)
        yield 0x0000, None

    ae = make_ae()
    ae.require_called_aet = False
    handlers = [(evt.EVT_C_STORE, on_store), (evt.EVT_C_FIND, on_find)]
    running = ae.make_server(("127.0.0.1", 0), evt_handlers=handlers, server_class=Server)
    ae._servers.append(running)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    seen["release_find"] = release_find
    yield running.server_address[1], seen
    release_find.set()
    running.shutdown()


def _client() -> LightboxAE:
    client = LightboxAE(ae_title="INLINE")
    client.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    client.add_requested_context(Verification)
    client.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    return client


def _instance() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.PatientID = "INLINE"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_stores_are_served_in_the_dul_thread_with_the_handlers_statuses(receiver):
    port, seen = receiver
    seen["answers"] = [
        0x0000,
        _status(0xA700, "storage is full"),
        0xB000,
        _status(0xC001, "café"),  # left to pynetdicom: still answered
        RuntimeError("handler failed"),
        0x0000,
    ]
    assoc = _client().associate("127.0.0.1", port)
    assert assoc.is_established
    statuses = []
    for _ in range(6):
        status = assoc.send_c_store(_instance())
        statuses.append((status.Status, status.get("ErrorComment")))
    assert assoc.send_c_echo().Status == 0x0000  # other services: the association's thread
    assoc.release()
    assert statuses == [
        (0x0000, None),
        (0xA700, "storage is full"),
        (0xB000, None),
        (0xC001, "café"),
        (0xC211, None),
        (0x0000, None),
    ]
    assert seen["threads"] == [False] * 6  # none in the association's own thread


def test_a_store_while_the_association_thread_is_busy_waits_for_it(receiver):
    """A peer that sends a C-STORE without waiting for its C-FIND's response: the store is
    queued behind the find, as pynetdicom does, so the two responses do not interleave."""
    port, seen = receiver
    assoc = _client().associate("127.0.0.1", port)
    assert assoc.is_established
    contexts = {str(cx.abstract_syntax): cx.context_id for cx in assoc.accepted_contexts}
    # What pynetdicom's send_*() do before sending: stop the client's own loop taking replies.
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.001)
    try:
        find = C_FIND()
        find.MessageID, find.Priority = 1, 0
        find.AffectedSOPClassUID = StudyRootQueryRetrieveInformationModelFind
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        find.Identifier = BytesIO(encode(query, True, True))
        assoc.dimse.send_msg(find, contexts[StudyRootQueryRetrieveInformationModelFind])
        assert seen["find_started"].wait(10)
        store = _request(message_id=2)
        store.DataSet = BytesIO(encode(_instance(), False, True))
        assoc.dimse.send_msg(store, contexts[CTImageStorage])
        time.sleep(0.3)
        assert seen["threads"] == []  # not served beside the find
        seen["release_find"].set()
        replies = [assoc.dimse.get_msg(block=True)[1] for _ in range(2)]
    finally:
        assoc._reactor_checkpoint.set()
    assoc.release()
    assert [(type(reply).__name__, reply.Status) for reply in replies] == [
        ("C_FIND", 0x0000),
        ("C_STORE", 0x0000),
    ]
    assert seen["threads"] == [True]  # served by the association's thread, after the find


# --- receiving (StoreDIMSE) -------------------------------------------------------------


def test_the_decoding_it_stands_in_for_is_this_pynetdicoms():
    # If this fails after a pynetdicom upgrade, check StoreDIMSE and store_command against
    # the new DIMSEServiceProvider.receive_primitive and DIMSEMessage, then update
    # SHAPED_AFTER.
    assert inline.stock_hashes() == inline.SHAPED_AFTER
    assert inline.receives_directly()


def _p_datas(primitive, max_pdu: int = 16384) -> list:
    kinds = {"C_ECHO": C_ECHO_RQ, "C_STORE": C_STORE_RQ}
    kind = type(primitive).__name__
    message = (kinds[kind] if primitive.MessageIDBeingRespondedTo is None else C_STORE_RSP)()
    message.primitive_to_message(primitive)
    return list(message.encode_msg(3, max_pdu))


@pytest.fixture
def no_dimse_logging(monkeypatch):
    """As the receiver runs unless pynetdicom logs at INFO (server.make_ae): pynetdicom's
    logging handlers, when bound, leave every message to pynetdicom's own decoder."""
    monkeypatch.setattr(_config, "LOG_HANDLER_LEVEL", "none")


def _received(p_datas: list, direct: bool, taken: list | None = None) -> list:
    """What an acceptor's DIMSE provider queues for these P-DATA primitives: pynetdicom's
    own, or StoreDIMSE (`taken` gets whether it was receiving a C-STORE itself after each
    primitive)."""
    assoc = Association(AE(), "acceptor")
    if direct:
        assoc.dimse.__class__ = inline.StoreDIMSE
    for p_data in p_datas:
        assoc.dimse.receive_primitive(p_data)
        if taken is not None:
            taken.append(getattr(assoc.dimse, "_incoming", None) is not None)
    queued = []
    while not assoc.dimse.msg_queue.empty():
        context_id, primitive = assoc.dimse.msg_queue.get()
        data = primitive.DataSet.getvalue() if getattr(primitive, "DataSet", None) else None
        queued.append(
            (
                context_id,
                type(primitive).__name__,
                primitive.MessageID,
                primitive.MessageIDBeingRespondedTo,
                getattr(primitive, "Priority", None),
                primitive.AffectedSOPClassUID,
                primitive.AffectedSOPInstanceUID,
                getattr(primitive, "MoveOriginatorMessageID", None),
                getattr(primitive, "MoveOriginatorApplicationEntityTitle", None),
                data,
            )
        )
    return queued


def _store_request(**values) -> C_STORE:
    request = _request(message_id=values.pop("message_id", 5))
    request.DataSet = BytesIO(encode(_instance(), False, True) + b"\0" * 40000)
    for keyword, value in values.items():
        setattr(request, keyword, value)
    return request


@pytest.mark.parametrize(
    ("make", "direct"),
    [
        (lambda: _p_datas(_store_request()), True),
        (lambda: _p_datas(_store_request(message_id=0xFFFF, Priority=1)), True),
        (lambda: _p_datas(_store_request(MoveOriginatorMessageID=12)), True),
        (lambda: _p_datas(_store_request(MoveOriginatorApplicationEntityTitle="MOVER")), False),
        (lambda: _p_datas(_store_request(), max_pdu=4096), True),  # many data fragments
        (lambda: _p_datas(_store_request(AffectedSOPInstanceUID="1.2.3.4")), True),  # padded
        (lambda: _p_datas(_store_request()) + _p_datas(_store_request(message_id=6)), True),
        (lambda: _p_datas(_request()), False),  # a C-STORE-RQ without a data set
        (lambda: _p_datas(_stored_response()), False),
    ],
    ids=[
        "store",
        "priority",
        "move-originator-id",
        "move-originator-ae",
        "fragments",
        "odd-uid",
        "two",
        "no-data-set",
        "response",
    ],
)
def test_requests_are_received_as_pynetdicom_receives_them(no_dimse_logging, make, direct):
    p_datas = make()
    taken: list[bool] = []
    assert _received(p_datas, direct=True, taken=taken) == _received(p_datas, direct=False)
    assert any(taken) is direct


def _stored_response() -> C_STORE:
    answer = C_STORE()
    answer.MessageIDBeingRespondedTo = 5
    answer.AffectedSOPClassUID = CTImageStorage
    answer.AffectedSOPInstanceUID = generate_uid()
    answer.Status = 0
    return answer


def test_a_whole_message_in_one_p_data_is_received_too(no_dimse_logging):
    request = _store_request()
    first, *rest = _p_datas(request)
    merged = P_DATA()
    merged.presentation_data_value_list = [
        list(pdv) for p_data in (first, *rest) for pdv in p_data.presentation_data_value_list
    ]
    assert _received([merged], direct=True) == _received([first, *rest], direct=False)


@pytest.mark.parametrize(
    "command",
    [
        b"",
        b"\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00",  # truncated
        b"\x08\x00\x00\x00\x02\x00\x00\x00ab",  # not group 0000
    ],
)
def test_other_command_sets_are_left_to_pynetdicom(command):
    assert inline.store_command(memoryview(command)) is None


def test_uids_pynetdicom_might_read_otherwise_are_left_to_it():
    p_data = _p_datas(_store_request())[0]
    ((_, pdv),) = p_data.presentation_data_value_list
    command = pdv[1:]
    assert inline.store_command(memoryview(command)) is not None
    assert inline.store_command(memoryview(command.replace(b"1.2.840", b"1.2 840"))) is None
    assert inline.store_command(memoryview(command.replace(b"1.2.840", b"1.2.8x0"))) is None


def test_a_command_among_the_data_ends_the_association(no_dimse_logging):
    request_p_datas = _p_datas(_store_request(), max_pdu=4096)
    echo = _p_datas(_echo_request())
    assoc = Association(AE(), "acceptor")
    assoc.dimse.__class__ = inline.StoreDIMSE
    for p_data in [*request_p_datas[:2], *echo]:
        assoc.dimse.receive_primitive(p_data)
    assert assoc.dimse.msg_queue.empty()
    assert assoc.dul.event_queue.get(block=False) == "Evt19"  # A-P-ABORT, as pynetdicom does


def _echo_request():
    echo = C_ECHO()
    echo.MessageID = 9
    echo.AffectedSOPClassUID = Verification
    return echo
