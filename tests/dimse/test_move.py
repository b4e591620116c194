"""C-MOVE (PS3.4 §C.4.2): a registered node asks Lightbox to send a study to a registered
destination (dcmtk's storescp here); unknown destinations get A801H, strangers 0124H."""

import subprocess
import time
from contextlib import contextmanager

import pydicom

from ..integration.helpers import free_port, wait_until
from .conftest import needs_dcmtk
from .peers import dcmtk, new_instance

pytestmark = needs_dcmtk


def store_sample(site, tmp_path) -> pydicom.Dataset:
    ds = new_instance("CT_small.dcm")
    path = tmp_path / "ct.dcm"
    ds.save_as(path)
    result = dcmtk("storescu", site.port, files=(str(path),))
    assert "Store Response (Success)" in result.stderr + result.stdout, result.stderr
    site.wait_rows("select id from archive_instance", 1)
    return ds


def movescu(site, destination: str, study_instance_uid: str, calling_ae: str = "VIEWER"):
    return dcmtk(
        "movescu",
        site.port,
        "-aet",
        calling_ae,
        "-aem",
        destination,
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study_instance_uid}",
    )


@contextmanager
def destination(site, tmp_path):
    """dcmtk's storescp, registered as the node DEST; yields the folder it writes to."""
    port = free_port()
    out = tmp_path / "received"
    out.mkdir()
    storescp = subprocess.Popen(
        ["storescp", "-aet", "DEST", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        site.manage("dicomnode", "add", "DEST", "127.0.0.1", str(port))
        yield out
    finally:
        storescp.terminate()
        storescp.wait(timeout=10)


def test_it_sends_a_study_to_a_registered_destination(embedded_site, tmp_path):
    embedded_site.add_node("VIEWER", "127.0.0.1")
    embedded_site.start_worker()
    embedded_site.start_receiver()
    with destination(embedded_site, tmp_path) as out:
        ds = store_sample(embedded_site, tmp_path)

        result = movescu(embedded_site, "DEST", ds.StudyInstanceUID)

        assert result.returncode == 0, result.stderr
        assert "Final Move Response (Success)" in result.stderr, result.stderr
        files = wait_until(lambda: list(out.iterdir()), 10, lambda: "storescp got nothing")
        assert pydicom.dcmread(files[0]).SOPInstanceUID == ds.SOPInstanceUID


def test_it_refuses_an_unknown_destination(embedded_site, tmp_path):
    embedded_site.add_node("VIEWER", "127.0.0.1")
    embedded_site.start_worker()
    embedded_site.start_receiver()
    ds = store_sample(embedded_site, tmp_path)

    result = movescu(embedded_site, "NOWHERE", ds.StudyInstanceUID)

    assert "MoveDestinationUnknown" in result.stderr or "a801" in result.stderr.lower(), (
        result.stderr
    )


def test_it_refuses_a_move_from_an_unregistered_ae(embedded_site, tmp_path):
    embedded_site.start_worker()
    embedded_site.start_receiver()
    with destination(embedded_site, tmp_path) as out:
        ds = store_sample(embedded_site, tmp_path)

        result = movescu(embedded_site, "DEST", ds.StudyInstanceUID, calling_ae="STRANGER")

        assert "0x0124" in result.stderr.lower() or "0x124" in result.stderr.lower(), result.stderr
        time.sleep(0.5)
        assert not list(out.iterdir())
