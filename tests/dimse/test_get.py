"""C-GET (PS3.4 §C.4.3): a registered node retrieves over its own association with dcmtk's
getscu; instances leave as stored when the peer takes their transfer syntax, decoded
otherwise; everyone else gets 0124H."""

import numpy
import pydicom

from ..conftest import pydicom_file
from .conftest import needs_dcmtk
from .peers import dcmtk, new_instance

pytestmark = needs_dcmtk

SAMPLES = {"CT_small.dcm": "-x=", "JPEG2000.dcm": "-xw"}


def store_samples(site, tmp_path) -> dict[str, pydicom.Dataset]:
    """The samples stored and indexed, under new SOP Instance UIDs: UID -> data set."""
    stored = {}
    for name, proposal in SAMPLES.items():
        ds = new_instance(name)
        path = tmp_path / name
        ds.save_as(path)
        result = dcmtk("storescu", site.port, proposal, files=(str(path),))
        assert "Store Response (Success)" in result.stderr + result.stdout, result.stderr
        stored[ds.SOPInstanceUID] = ds
    site.wait_rows("select id from archive_instance", len(stored))
    return stored


def getscu(site, out, study_instance_uid: str, *options: str):
    out.mkdir()
    return dcmtk(
        "getscu",
        site.port,
        "-aet",
        "VIEWER",
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study_instance_uid}",
        "-od",
        str(out),
        *options,
    )


def received(out) -> dict[str, pydicom.Dataset]:
    files = [pydicom.dcmread(path) for path in out.iterdir()]
    return {ds.SOPInstanceUID: ds for ds in files}


def test_it_sends_a_study_as_stored_when_the_transfer_syntax_is_accepted(embedded_site, tmp_path):
    embedded_site.add_node("VIEWER", "127.0.0.1")
    embedded_site.start_worker()
    embedded_site.start_receiver()
    stored = store_samples(embedded_site, tmp_path)
    ct = next(ds for ds in stored.values() if not ds.file_meta.TransferSyntaxUID.is_compressed)

    result = getscu(embedded_site, tmp_path / "out", ct.StudyInstanceUID)

    assert result.returncode == 0, result.stderr
    files = received(tmp_path / "out")
    assert set(files) == {ct.SOPInstanceUID}, result.stderr
    got = files[ct.SOPInstanceUID]
    assert got.file_meta.TransferSyntaxUID == ct.file_meta.TransferSyntaxUID
    assert got.PixelData == ct.PixelData
    [(detail,)] = embedded_site.wait_rows(
        "select detail from accounts_auditevent where event_type = 'dicom.get'", 1
    )
    assert '"completed": 1' in detail and ct.StudyInstanceUID in detail


def test_it_decodes_for_a_peer_that_takes_only_uncompressed(embedded_site, tmp_path):
    embedded_site.add_node("VIEWER", "127.0.0.1")
    embedded_site.start_worker()
    embedded_site.start_receiver()
    stored = store_samples(embedded_site, tmp_path)
    j2k = next(ds for ds in stored.values() if ds.file_meta.TransferSyntaxUID.is_compressed)

    result = getscu(embedded_site, tmp_path / "out", j2k.StudyInstanceUID)  # +x= (default)

    assert result.returncode == 0, result.stderr
    got = received(tmp_path / "out")[j2k.SOPInstanceUID]
    assert not got.file_meta.TransferSyntaxUID.is_compressed
    original = pydicom.dcmread(pydicom_file("JPEG2000.dcm")).pixel_array
    assert numpy.array_equal(got.pixel_array, original)


def test_it_refuses_c_get_from_an_unregistered_ae(embedded_site, tmp_path):
    embedded_site.add_node("NORETRIEVE", "127.0.0.1", "--no-retrieve")
    embedded_site.start_receiver()

    stranger = getscu(embedded_site, tmp_path / "a", "1.2.3")
    result = dcmtk(
        "getscu",
        embedded_site.port,
        "-aet",
        "NORETRIEVE",
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "StudyInstanceUID=1.2.3",
        "-od",
        str(tmp_path),
    )

    for output in (stranger.stderr, result.stderr):
        assert "0x0124" in output.lower() or "0x124" in output.lower(), output
        assert_released(output)
    assert not list((tmp_path / "a").iterdir())


def assert_released(getscu_output: str) -> None:
    """The association ended with a clean release: no data set followed the final
    response (an empty Failed SOP Instance UID List made getscu abort)."""
    assert "Releasing Association" in getscu_output, getscu_output
    assert "Release Failed" not in getscu_output, getscu_output
    assert "Aborting Association" not in getscu_output, getscu_output


def test_a_retrieve_refused_for_a_missing_key_ends_with_a_clean_release(embedded_site, tmp_path):
    embedded_site.add_node("VIEWER", "127.0.0.1")
    embedded_site.start_receiver()

    result = dcmtk(
        "getscu",
        embedded_site.port,
        "-aet",
        "VIEWER",
        "-S",
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        "StudyInstanceUID=1.2.3",
        "-k",
        "SeriesInstanceUID=",
        "-od",
        str(tmp_path),
    )

    assert "Received C-GET Response (Failed: UnableToProcess)" in result.stderr, result.stderr
    assert_released(result.stderr)
