"""A peer that aborts in the middle of a transfer (PS3.8 §7.3 A-ABORT) leaves nothing of the
unfinished instance behind, and everything acknowledged before is indexed."""

import socket
import struct

from pynetdicom import evt
from pynetdicom.pdu import P_DATA_TF

from ..integration.helpers import wait_until
from .peers import AE_TITLE, client, new_instance

# A-ABORT PDU (PS3.8 §9.3.8): type 07H, length 4, reserved, reserved, source 0 (service
# user), reason 0.
A_ABORT = struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, 0, 0)


def test_it_keeps_nothing_of_an_instance_aborted_mid_transfer(embedded_site):
    embedded_site.start_worker()
    # Small PDUs: the second instance takes several P-DATA-TF PDUs to arrive.
    receiver = embedded_site.start_receiver(LIGHTBOX_DICOM_MAX_PDU="16384")
    acknowledged, aborted = new_instance(), new_instance()
    sent = {"pdus": 0, "counting": False}

    def abort_after_two_pdus(event) -> None:
        if sent["counting"] and isinstance(event.pdu, P_DATA_TF):
            sent["pdus"] += 1
            if sent["pdus"] == 2:
                raw = event.assoc.dul.socket.socket
                raw.sendall(A_ABORT)
                raw.shutdown(socket.SHUT_RDWR)

    assoc = client().associate(
        "127.0.0.1",
        embedded_site.port,
        ae_title=AE_TITLE,
        evt_handlers=[(evt.EVT_PDU_SENT, abort_after_two_pdus)],
    )
    assert assoc.is_established
    assert assoc.send_c_store(acknowledged).Status == 0x0000
    sent["counting"] = True
    try:
        assoc.send_c_store(aborted)
    except Exception:  # noqa: S110 - the connection is gone, as intended
        pass
    assoc.abort()

    receiver.wait_for_output("aborted after")
    states = embedded_site.wait_rows(
        "select sop_instance_uid, state from archive_ingestrecord where state = 'stored'", 1
    )
    assert states == [(acknowledged.SOPInstanceUID, "stored")]
    assert len(embedded_site.rows("select id from archive_ingestrecord")) == 1
    # Nothing left in the spool, not even a half-written temporary (spool/tmp).
    spool = embedded_site.data_dir / "spool"
    wait_until(
        lambda: not [p for p in spool.rglob("*") if p.is_file()],
        10,
        lambda: f"left in the spool: {list(spool.rglob('*'))}",
    )
    ends = embedded_site.rows(
        "select outcome, detail from accounts_auditevent where event_type = 'dicom.association'"
    )
    assert [outcome for outcome, _ in ends] == ["failure"]
