"""The Python dicomweb-client library against a live server (uvicorn, a real worker,
SQLite and the embedded broker): store, search and retrieve, byte for byte."""

import io
import sys
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from ..conftest import pydicom_file
from ..integration.helpers import WORKER_COMMAND, wait_until
from ..integration.test_embedded import PASSWORD, Embedded, _answers

dicomweb_client = pytest.importorskip("dicomweb_client")
pytestmark = pytest.mark.integration

FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    site = Embedded(tmp_path_factory.mktemp("dicomweb"))
    site.check("migrate", "--noinput")
    site.check(
        "createsuperuser",
        "--noinput",
        "--username=reader",
        "--email=r@example.org",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    site.token = site.check("apitoken", "create", "reader", "--name", "tests").strip()
    worker = site.start("worker", [*WORKER_COMMAND, "--loglevel=INFO"])
    web = site.start(
        "web",
        [sys.executable, "-m", "uvicorn", "backend.asgi:application"]
        + ["--host", "127.0.0.1", "--port", str(site.port), "--lifespan", "off"],
    )
    try:
        worker.wait_for_output(" ready.")
        wait_until(lambda: _answers(site.url), 30, lambda: f"web server: {web.output()}")
        yield site
    finally:
        web.stop()
        worker.stop()


def client(site, **headers) -> "dicomweb_client.DICOMwebClient":
    return dicomweb_client.DICOMwebClient(
        url=f"{site.url}/dicomweb",
        headers={"Authorization": f"Bearer {site.token}", **headers},
    )


@pytest.fixture(scope="module")
def stored(server) -> dict[str, pydicom.Dataset]:
    """The sample files stored with STOW-RS and indexed by the worker."""
    datasets = {name: pydicom.dcmread(pydicom_file(name)) for name in FILES}
    response = client(server).store_instances(list(datasets.values()))
    assert "FailedSOPSequence" not in response
    assert len(response.ReferencedSOPSequence) == len(FILES)
    wait_until(lambda: _all_found(server, datasets.values()), 60, lambda: "not indexed in time")
    return datasets


def _all_found(site, datasets) -> bool:
    import requests

    for ds in datasets:
        try:
            found = client(site).search_for_instances(
                study_instance_uid=ds.StudyInstanceUID,
                search_filters={"SOPInstanceUID": ds.SOPInstanceUID},
            )
        except requests.HTTPError:  # 404 until the study is indexed
            return False
        if not found:
            return False
    return True


def test_it_finds_the_stored_studies(server, stored):
    ct = stored["CT_small.dcm"]
    studies = client(server).search_for_studies(search_filters={"PatientID": ct.PatientID})
    assert [s["0020000D"]["Value"][0] for s in studies] == [ct.StudyInstanceUID]
    assert studies[0]["00100010"]["Value"][0]["Alphabetic"] == str(ct.PatientName)


def test_it_returns_instances_byte_for_byte(server, stored):
    for name, ds in stored.items():
        back = client(server).retrieve_instance(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        )
        out = io.BytesIO()
        back.save_as(out, enforce_file_format=True)
        assert out.getvalue() == Path(pydicom_file(name)).read_bytes(), name


def test_it_retrieves_metadata_with_bulk_data_uris(server, stored):
    ct = stored["CT_small.dcm"]
    metadata = client(server).retrieve_series_metadata(ct.StudyInstanceUID, ct.SeriesInstanceUID)
    assert metadata[0]["00080018"]["Value"] == [ct.SOPInstanceUID]
    uri = metadata[0]["7FE00010"]["BulkDataURI"]
    pixels = client(server).retrieve_bulkdata(f"{server.url}{uri}")
    assert pixels[0] == ct.pixel_array.astype("<i2").tobytes()


def test_it_retrieves_frames_uncompressed_and_as_stored(server, stored):
    ct, j2k = stored["CT_small.dcm"], stored["JPEG2000.dcm"]
    (frame,) = client(server).retrieve_instance_frames(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID, frame_numbers=[1]
    )
    assert frame == ct.PixelData
    (codestream,) = client(server).retrieve_instance_frames(
        j2k.StudyInstanceUID,
        j2k.SeriesInstanceUID,
        j2k.SOPInstanceUID,
        frame_numbers=[1],
        media_types=(("image/jp2", j2k.file_meta.TransferSyntaxUID),),
    )
    assert codestream == pydicom.encaps.get_frame(j2k.PixelData, 0, number_of_frames=1)


def test_it_renders_frames_as_jpeg_and_png(server, stored):
    rgb = stored["SC_rgb_rle_2frame.dcm"]
    uids = (rgb.StudyInstanceUID, rgb.SeriesInstanceUID, rgb.SOPInstanceUID)
    jpeg = client(server).retrieve_instance_frames_rendered(*uids, frame_numbers=[2])
    png = client(server).retrieve_instance_frames_rendered(
        *uids, frame_numbers=[2], media_types=("image/png",)
    )
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (rgb.Columns, rgb.Rows)
    # PNG is lossless: the second frame's pixels come back as they are.
    assert (pydicom_array(image) == rgb.pixel_array[1]).all()


def pydicom_array(image):
    import numpy as np

    return np.asarray(image.convert("RGB"))


def test_it_refuses_a_request_without_credentials(server):
    import requests

    response = requests.get(f"{server.url}/dicomweb/studies", timeout=10)
    assert response.status_code == 401
    assert "Basic" in response.headers["WWW-Authenticate"]


def test_it_accepts_basic_credentials(server, stored):
    import requests

    url = f"{server.url}/dicomweb/studies"
    for _ in range(2):  # the second is answered from the remembered check
        response = requests.get(url, auth=("reader", PASSWORD), timeout=10)
        assert response.status_code == 200 and len(response.json()) >= len(FILES) - 1
    wrong = requests.get(url, auth=("reader", PASSWORD + "x"), timeout=10)
    assert wrong.status_code == 401
