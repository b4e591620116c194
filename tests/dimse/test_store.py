"""C-STORE (Storage, PS3.4 Annex B): files sent by real peers are made durable before
Success, indexed by a real worker, and kept byte for byte as sent."""

import threading
from pathlib import Path

import pydicom
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.uid import JPEG2000
from pynetdicom import _config

from backend.nodes.transport import LightboxAE
from worker.dimse.handlers import IMPLEMENTATION_CLASS_UID

from ..conftest import pydicom_file
from .conftest import needs_dcmtk
from .peers import AE_TITLE, client, dcmtk, new_instance

pytestmark = needs_dcmtk

# pydicom samples and the storescu option that proposes their transfer syntax.
SAMPLES = {
    "CT_small.dcm": "-x=",  # Explicit VR Little Endian
    "MR_small_implicit.dcm": "-xi",  # Implicit VR Little Endian
    "MR_small_bigendian.dcm": "-xb",  # Explicit VR Big Endian (retired, still accepted)
    "JPEG2000.dcm": "-xw",  # JPEG 2000
    "SC_rgb_rle_2frame.dcm": "-xr",  # RLE Lossless
    "MR_small_jpeg_ls_lossless.dcm": "-xt",  # JPEG-LS Lossless
}


def data_set_bytes(file_bytes: bytes) -> bytes:
    """The data set of a Part 10 file: what follows the File Meta Information (PS3.10 §7.1),
    whose length is given by its group length element at offset 132."""
    assert file_bytes[128:132] == b"DICM"
    group_length = int.from_bytes(file_bytes[140:144], "little")
    return file_bytes[144 + group_length :]


def stored_file(site, sop_instance_uid: str) -> bytes:
    keys = dict(site.rows("select sop_instance_uid, object_key from archive_instance"))
    object_key = keys[sop_instance_uid]
    area, digest = object_key.split("/")
    return (site.data_dir / "store" / area / digest[:2] / digest[2:4] / digest).read_bytes()


def samples(tmp_path) -> dict[str, str]:
    """The samples as new instances (several share an SOP Instance UID): path -> option."""
    paths = {}
    for name, proposal in SAMPLES.items():
        path = tmp_path / name
        new_instance(name).save_as(path)
        paths[str(path)] = proposal
    return paths


def test_it_indexes_what_storescu_sends_in_every_transfer_syntax(site, tmp_path):
    site.start_worker()
    site.start_receiver()
    files = samples(tmp_path)

    for path, proposal in files.items():
        result = dcmtk("storescu", site.port, proposal, files=(path,))
        assert result.returncode == 0, f"{path}: {result.stdout}{result.stderr}"
        assert "Received Store Response (Success)" in result.stderr + result.stdout, path

    rows = site.wait_rows(
        "select state from archive_ingestrecord where state != 'pending'", len(files)
    )
    assert {state for (state,) in rows} == {"stored"}
    for path in files:
        original = pydicom.dcmread(path)
        kept = pydicom.dcmread(DicomBytesIO(stored_file(site, original.SOPInstanceUID)))
        # Kept as received: same transfer syntax, compressed pixel data untouched.
        assert kept.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID, path
        assert kept.PixelData == original.PixelData, path
        assert kept.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    sources = site.rows("select distinct source, source_detail from archive_ingestrecord")
    assert sources == [("dimse", "STORESCU@127.0.0.1")]
    viewable = site.rows("select viewable, not_viewable_reason from archive_instance")
    assert all(flag for flag, _ in viewable), viewable


def test_it_keeps_the_data_set_byte_for_byte(embedded_site, tmp_path, monkeypatch):
    # pynetdicom sends a file's data set from disk as it is, without decoding it.
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    embedded_site.start_worker()
    embedded_site.start_receiver()
    files = samples(tmp_path)
    ae = LightboxAE("PYNETDICOM")  # as peers.client() says why
    for path in files:
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)

    assoc = ae.associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE)
    assert assoc.is_established
    statuses = [assoc.send_c_store(path).Status for path in files]
    assoc.release()

    assert statuses == [0x0000] * len(files)
    embedded_site.wait_rows(
        "select state from archive_ingestrecord where state = 'stored'", len(files)
    )
    for path in files:
        sent = Path(path).read_bytes()
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert data_set_bytes(stored_file(embedded_site, uid)) == data_set_bytes(sent), path


def bad_codestream(tmp_path) -> Path:
    """A JPEG 2000 instance whose codestream is cut short after its main header."""
    ds = new_instance("JPEG2000.dcm")
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 40])
    path = tmp_path / "bad-codestream.dcm"
    ds.save_as(path)
    assert ds.file_meta.TransferSyntaxUID == JPEG2000
    return path


def test_it_stores_a_bad_codestream_and_flags_it_not_viewable(embedded_site, tmp_path):
    embedded_site.start_worker()
    embedded_site.start_receiver()

    result = dcmtk("storescu", embedded_site.port, "-xw", files=(str(bad_codestream(tmp_path)),))

    assert "Received Store Response (Success)" in result.stderr + result.stdout, result.stderr
    [(viewable, reason)] = embedded_site.wait_rows(
        "select viewable, not_viewable_reason from archive_instance", 1
    )
    assert not viewable and reason


def test_it_refuses_stores_from_unknown_aes_when_told_to(embedded_site, tmp_path):
    embedded_site.add_node("MODALITY", "127.0.0.1")
    embedded_site.start_receiver(LIGHTBOX_DICOM_ACCEPT_ANY_STORE="0")
    path = str(pydicom_file("CT_small.dcm"))

    stranger = dcmtk("storescu", embedded_site.port, "-aet", "STRANGER", files=(path,))
    known = dcmtk("storescu", embedded_site.port, "-aet", "MODALITY", files=(path,))

    # 0124H Refused: Not Authorized (PS3.7 §C.5); dcmtk prints it as an unknown status.
    assert "Store Response (Unknown Status: 0x124)" in stranger.stderr, stranger.stderr
    assert "Received Store Response (Success)" in known.stderr + known.stdout, known.stderr
    # Records follow the acknowledgement within a moment (RecordingProcess).
    assert embedded_site.wait_rows("select source_detail from archive_ingestrecord", 1) == [
        ("MODALITY@127.0.0.1",)
    ]
    refusals = embedded_site.rows(
        "select calling_ae from accounts_auditevent where event_type = 'dicom.rejected'"
    )
    assert refusals == [("STRANGER",)]


def test_it_serves_eight_simultaneous_associations(embedded_site):
    embedded_site.start_receiver()
    statuses: list[int] = []
    ready = threading.Barrier(8)

    def send() -> None:
        assoc = client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE)
        assert assoc.is_established
        ready.wait(timeout=20)  # all eight associations are open at once
        statuses.extend(assoc.send_c_store(new_instance()).Status for _ in range(3))
        assoc.release()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert statuses == [0x0000] * 24
    # Records follow the acknowledgements within a moment (RecordingProcess).
    assert len(embedded_site.wait_rows("select id from archive_ingestrecord", 24)) == 24
