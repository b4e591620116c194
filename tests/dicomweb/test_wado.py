# ruff: noqa: F811 - the w_ fixtures are imported from fixtures.py and named as arguments
"""WADO-RS (PS3.18 §10.4): instances, metadata, frames, rendered images, thumbnails and
bulk data, through the Django test client against samples ingested by the real services."""

import gzip
import io
import json

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from backend.accounts.tokens import create_token
from backend.archive.derive import THUMBNAIL_SIZE

from .fixtures import (  # noqa: F401
    Sample,
    body_of,
    multipart,
    w_client,
    w_ingest,
    w_user,
)

pytestmark = pytest.mark.django_db(transaction=True)

DICOM = 'multipart/related; type="application/dicom"'
AS_STORED = f"{DICOM}; transfer-syntax=*"
OCTETS = 'multipart/related; type="application/octet-stream"'
# Every WADO-RS resource, for the access tests.
ENDPOINTS = [
    "{study}",
    "{study}/metadata",
    "{study}/rendered",
    "{study}/thumbnail",
    "{series}",
    "{series}/metadata",
    "{series}/rendered",
    "{series}/thumbnail",
    "{instance}",
    "{instance}/metadata",
    "{instance}/rendered",
    "{instance}/thumbnail",
    "{instance}/frames/1",
    "{instance}/frames/1/rendered",
    "{instance}/frames/1/thumbnail",
    "{instance}/bulkdata/7FE00010",
]


@pytest.fixture
def w_ct(w_ingest) -> list[Sample]:
    """CT_small, a second image in its series, and a third image in a second series."""
    first = w_ingest("CT_small.dcm")
    second = w_ingest("CT_small.dcm", SOPInstanceUID="new-uid", InstanceNumber=2)
    other_series = w_ingest(
        "CT_small.dcm", SeriesInstanceUID="new-uid", SOPInstanceUID="new-uid", SeriesNumber=2
    )
    return [first, second, other_series]


@pytest.fixture
def w_rgb2(w_ingest) -> Sample:
    """A two-frame RLE RGB instance (it shares its SOP Instance UID with SC_rgb_rle.dcm)."""
    return w_ingest("SC_rgb_rle_2frame.dcm")


def sop_uids(parts) -> list[str]:
    return [pydicom.dcmread(io.BytesIO(part.body)).SOPInstanceUID for part in parts]


def image(response) -> Image.Image:
    return Image.open(io.BytesIO(body_of(response)))


def little_endian(pixels: np.ndarray) -> bytes:
    return pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()


def url(template: str, sample: Sample) -> str:
    return template.format(study=sample.study, series=sample.series, instance=sample.instance)


# Access


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_refuses_anonymous_requests(client, w_ct, endpoint):
    response = client.get(url(endpoint, w_ct[0]))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_refuses_a_token_without_the_read_scope(client, w_user, w_ct, endpoint):
    _, token = create_token(w_user, "uploader", ["write"])
    response = client.get(url(endpoint, w_ct[0]), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_answers_a_reader(client, w_user, w_ct, endpoint):
    _, token = create_token(w_user, "viewer", ["read"])
    response = client.get(url(endpoint, w_ct[0]), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    body_of(response)


@pytest.mark.parametrize(
    "path",
    [
        "/dicomweb/studies/{unknown}",
        "/dicomweb/studies/{unknown}/metadata",
        "/dicomweb/studies/{unknown}/rendered",
        "/dicomweb/studies/{unknown}/thumbnail",
        "/dicomweb/studies/{study}/series/{unknown}",
        "/dicomweb/studies/{study}/series/{unknown}/metadata",
        "/dicomweb/studies/{study}/series/{unknown}/rendered",
        "/dicomweb/studies/{study}/series/{unknown}/thumbnail",
        "/dicomweb/studies/{study}/series/{series}/instances/{unknown}",
        "/dicomweb/studies/{study}/series/{series}/instances/{unknown}/metadata",
        "/dicomweb/studies/{study}/series/{series}/instances/{unknown}/rendered",
        "/dicomweb/studies/{study}/series/{series}/instances/{unknown}/frames/1",
        "/dicomweb/studies/{study}/series/{series}/instances/{unknown}/bulkdata/7FE00010",
        # A known instance under the wrong study or series is not found either.
        "/dicomweb/studies/{unknown}/series/{series}/instances/{instance}",
        "/dicomweb/studies/{study}/series/{unknown}/instances/{instance}/metadata",
    ],
)
def test_it_answers_404_for_unknown_uids(w_client, w_ct, path):
    study, series, instance = w_ct[0].uids
    address = path.format(unknown=generate_uid(), study=study, series=series, instance=instance)
    response = w_client.get(address, HTTP_ACCEPT="*/*")
    assert response.status_code == 404
    assert "error" in response.json()


# Instances (§10.4.1.1.1)


def test_it_retrieves_a_study_as_multipart_dicom(w_client, w_ct):
    response = w_client.get(w_ct[0].study, HTTP_ACCEPT=AS_STORED)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(DICOM + "; boundary=")
    parts = multipart(response)
    assert sorted(sop_uids(parts)) == sorted(s.ds.SOPInstanceUID for s in w_ct)
    for part in parts:
        assert part.content_type == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
        uid = pydicom.dcmread(io.BytesIO(part.body)).SOPInstanceUID
        assert part.headers["content-location"].endswith(f"/instances/{uid}")


def test_it_retrieves_a_series(w_client, w_ct):
    parts = multipart(w_client.get(w_ct[0].series, HTTP_ACCEPT=AS_STORED))
    assert sorted(sop_uids(parts)) == sorted(s.ds.SOPInstanceUID for s in w_ct[:2])


def test_it_retrieves_one_instance(w_client, w_ct):
    [part] = multipart(w_client.get(w_ct[2].instance, HTTP_ACCEPT=AS_STORED))
    assert part.body == w_ct[2].path.read_bytes()
    assert part.headers["content-location"] == f"http://testserver{w_ct[2].instance}"


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_implicit.dcm",  # Implicit VR: still as stored when asked for "*"
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "SC_rgb_rle.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEG-lossy.dcm",
    ],
)
def test_it_sends_the_stored_bytes_for_any_transfer_syntax(w_client, w_ingest, name):
    sample = w_ingest(name)
    [part] = multipart(w_client.get(sample.instance, HTTP_ACCEPT=AS_STORED))
    assert part.body == sample.path.read_bytes()
    stored = sample.ds.file_meta.TransferSyntaxUID
    assert part.content_type == f"application/dicom; transfer-syntax={stored}"


def test_it_sends_the_stored_bytes_when_the_stored_syntax_is_asked_for(w_client, w_ingest):
    j2k = w_ingest("JPEG2000.dcm")
    accept = f"{DICOM}; transfer-syntax={j2k.ds.file_meta.TransferSyntaxUID}"
    [part] = multipart(w_client.get(j2k.instance, HTTP_ACCEPT=accept))
    assert part.body == j2k.path.read_bytes()


@pytest.mark.parametrize(
    "name", ["JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_rle.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
@pytest.mark.parametrize("accept", [DICOM, f"{DICOM}; transfer-syntax={ExplicitVRLittleEndian}"])
def test_it_decodes_to_explicit_vr_little_endian_by_default(w_client, w_ingest, name, accept):
    """PS3.18 Table 8.7.3-2: without a transfer-syntax parameter, Explicit VR Little Endian."""
    sample = w_ingest(name)
    [part] = multipart(w_client.get(sample.instance, HTTP_ACCEPT=accept))
    assert part.content_type == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
    ds = pydicom.dcmread(io.BytesIO(part.body))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPInstanceUID == sample.ds.SOPInstanceUID  # lossless decoding: same instance
    assert np.array_equal(ds.pixel_array, sample.ds.pixel_array)


@pytest.mark.parametrize("accept", [None, "*/*"])
def test_it_decodes_by_default_without_a_multipart_accept(w_client, w_ingest, accept):
    j2k = w_ingest("JPEG2000.dcm")
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    [part] = multipart(w_client.get(j2k.instance, **headers))
    assert part.content_type == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"


def test_it_refuses_to_decode_what_it_cannot_decode(w_client, w_ingest):
    lossy = w_ingest("JPEG-lossy.dcm")
    response = w_client.get(lossy.instance, HTTP_ACCEPT=DICOM)
    assert response.status_code == 406
    body_of(response)


@pytest.mark.filterwarnings("ignore:Expected explicit VR, but found implicit VR")
def test_it_decodes_a_data_set_encoded_unlike_its_transfer_syntax(w_client, w_ingest):
    sample = w_ingest("SC_rgb_jpeg.dcm")
    [part] = multipart(w_client.get(sample.instance, HTTP_ACCEPT=DICOM))
    ds = pydicom.dcmread(io.BytesIO(part.body))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(ds.pixel_array, sample.ds.pixel_array)


def test_it_refuses_a_compressed_syntax_the_instance_is_not_stored_in(w_client, w_ingest):
    rle = w_ingest("MR_small_RLE.dcm")
    jpeg_baseline = "1.2.840.10008.1.2.4.50"
    response = w_client.get(rle.instance, HTTP_ACCEPT=f"{DICOM}; transfer-syntax={jpeg_baseline}")
    assert response.status_code == 406
    # The whole study is refused the same way when one instance cannot be sent.
    response = w_client.get(rle.study, HTTP_ACCEPT=f"{DICOM}; transfer-syntax={jpeg_baseline}")
    assert response.status_code == 406


def test_it_refuses_implicit_vr_little_endian(w_client, w_ct):
    accept = f"{DICOM}; transfer-syntax=1.2.840.10008.1.2"
    assert w_client.get(w_ct[0].instance, HTTP_ACCEPT=accept).status_code == 406


def test_it_refuses_an_accept_without_dicom_parts(w_client, w_ct):
    assert w_client.get(w_ct[0].instance, HTTP_ACCEPT="image/jpeg").status_code == 406


# Metadata (§10.4.1.1.2)


def test_it_retrieves_instance_metadata_with_bulk_data_uris(w_client, w_ct):
    ct = w_ct[0]
    response = w_client.get(ct.instance + "/metadata")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    [document] = json.loads(body_of(response))
    assert document["00080018"] == {"vr": "UI", "Value": [ct.ds.SOPInstanceUID]}
    assert document["00100010"]["Value"][0]["Alphabetic"] == str(ct.ds.PatientName)
    assert document["7FE00010"]["BulkDataURI"] == f"{ct.instance}/bulkdata/7FE00010"
    assert "InlineBinary" not in document["7FE00010"]
    # A private OB value of 2068 bytes is bulk data too (over 1024 bytes).
    assert document["00431029"]["BulkDataURI"] == f"{ct.instance}/bulkdata/00431029"


def test_it_retrieves_series_metadata(w_client, w_ct):
    documents = json.loads(body_of(w_client.get(w_ct[0].series + "/metadata")))
    uids = [d["00080018"]["Value"][0] for d in documents]
    assert sorted(uids) == sorted(s.ds.SOPInstanceUID for s in w_ct[:2])


def test_it_retrieves_study_metadata_across_series(w_client, w_ct):
    response = w_client.get(w_ct[0].study + "/metadata", HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200
    documents = json.loads(body_of(response))
    uids = [d["00080018"]["Value"][0] for d in documents]
    assert sorted(uids) == sorted(s.ds.SOPInstanceUID for s in w_ct)


def test_it_gzips_series_metadata_when_the_client_accepts_it(w_client, w_ct):
    plain = w_client.get(w_ct[0].series + "/metadata")
    compressed = w_client.get(w_ct[0].series + "/metadata", HTTP_ACCEPT_ENCODING="gzip, br")
    assert "Content-Encoding" not in plain
    assert compressed["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in compressed["Vary"]
    assert json.loads(gzip.decompress(body_of(compressed))) == json.loads(body_of(plain))


def test_it_refuses_metadata_in_another_media_type(w_client, w_ct):
    response = w_client.get(w_ct[0].instance + "/metadata", HTTP_ACCEPT="application/dicom")
    assert response.status_code == 406


# Frames (§10.4.1.1.3)


def test_it_retrieves_an_uncompressed_frame(w_client, w_ct):
    response = w_client.get(w_ct[0].instance + "/frames/1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith(f"{OCTETS}; boundary=")
    [part] = multipart(response)
    assert part.content_type == (
        f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
    )
    assert part.body == w_ct[0].ds.PixelData


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_rle.dcm"])
def test_it_decodes_the_frames_of_a_compressed_instance(w_client, w_ingest, name):
    sample = w_ingest(name)
    [part] = multipart(w_client.get(sample.instance + "/frames/1", HTTP_ACCEPT=OCTETS))
    assert part.body == little_endian(sample.ds.pixel_array)


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("JPEG2000.dcm", "image/jp2"),
        ("MR_small_RLE.dcm", "image/dicom-rle"),
        ("MR_small_jpeg_ls_lossless.dcm", "image/jls"),
        ("JPEG-lossy.dcm", "image/jpeg"),
    ],
)
def test_it_retrieves_a_frame_as_stored(w_client, w_ingest, name, media_type):
    sample = w_ingest(name)
    stored = sample.ds.file_meta.TransferSyntaxUID
    expected = get_frame(sample.ds.PixelData, 0, number_of_frames=1)
    for accept in (
        f'multipart/related; type="{media_type}"',
        f'multipart/related; type="{media_type}"; transfer-syntax={stored}',
        f"{OCTETS}; transfer-syntax=*",
    ):
        response = w_client.get(sample.instance + "/frames/1", HTTP_ACCEPT=accept)
        assert response.status_code == 200, accept
        [part] = multipart(response)
        assert part.content_type == f"{media_type}; transfer-syntax={stored}", accept
        assert part.body == expected, accept


def test_it_retrieves_several_frames_of_a_multiframe_instance(w_client, w_rgb2):
    pixels = w_rgb2.ds.pixel_array
    parts = multipart(w_client.get(w_rgb2.instance + "/frames/1,2"))
    assert [p.body for p in parts] == [pixels[0].tobytes(), pixels[1].tobytes()]
    # In the order asked for.
    parts = multipart(w_client.get(w_rgb2.instance + "/frames/2,1"))
    assert [p.body for p in parts] == [pixels[1].tobytes(), pixels[0].tobytes()]


def test_it_retrieves_several_frames_as_stored(w_client, w_rgb2):
    accept = 'multipart/related; type="image/dicom-rle"'
    parts = multipart(w_client.get(w_rgb2.instance + "/frames/1,2", HTTP_ACCEPT=accept))
    assert [p.body for p in parts] == [
        get_frame(w_rgb2.ds.PixelData, index, number_of_frames=2) for index in (0, 1)
    ]


@pytest.mark.parametrize("frames", ["3", "1,3", "99999"])
def test_it_answers_404_for_a_frame_out_of_range(w_client, w_rgb2, frames):
    assert w_client.get(f"{w_rgb2.instance}/frames/{frames}").status_code == 404


def test_it_refuses_a_compression_the_frames_are_not_stored_in(w_client, w_ingest):
    rle = w_ingest("MR_small_RLE.dcm")
    response = w_client.get(
        rle.instance + "/frames/1", HTTP_ACCEPT='multipart/related; type="image/jp2"'
    )
    assert response.status_code == 406


# Rendered (§10.4.1.1.4)


def test_it_renders_an_instance_as_jpeg_by_default(w_client, w_ct):
    response = w_client.get(w_ct[0].instance + "/rendered")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    rendered = image(response)
    assert rendered.format == "JPEG" and rendered.size == (128, 128)


def test_it_renders_an_instance_as_png(w_client, w_ct):
    response = w_client.get(w_ct[0].instance + "/rendered", HTTP_ACCEPT="image/png")
    assert response["Content-Type"] == "image/png"
    assert image(response).format == "PNG"


def test_it_renders_a_frame_of_a_multiframe_instance(w_client, w_rgb2):
    response = w_client.get(w_rgb2.instance + "/frames/2/rendered", HTTP_ACCEPT="image/png")
    rendered = image(response)
    assert rendered.size == (w_rgb2.ds.Columns, w_rgb2.ds.Rows)
    # PNG is lossless and an RGB frame passes through unchanged.
    assert np.array_equal(np.asarray(rendered.convert("RGB")), w_rgb2.ds.pixel_array[1])


def test_it_renders_one_frame_at_a_time(w_client, w_rgb2):
    assert w_client.get(w_rgb2.instance + "/frames/1,2/rendered").status_code == 400


def test_it_renders_a_study_and_a_series_as_multipart_images(w_client, w_ct):
    study = w_client.get(w_ct[0].study + "/rendered")
    assert study["Content-Type"].startswith('multipart/related; type="image/jpeg"; boundary=')
    parts = multipart(study)
    assert len(parts) == 3
    for part in parts:
        assert part.content_type == "image/jpeg"
        assert Image.open(io.BytesIO(part.body)).format == "JPEG"
    series = multipart(w_client.get(w_ct[0].series + "/rendered", HTTP_ACCEPT="image/png"))
    assert len(series) == 2
    assert {Image.open(io.BytesIO(part.body)).format for part in series} == {"PNG"}


def expected_linear(ds: pydicom.Dataset, center: float, width: float) -> np.ndarray:
    """PS3.3 §C.11.2.1.2.1, after the Modality LUT, to 8 bits."""
    x = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255
    y[x <= center - 0.5 - (width - 1) / 2] = 0
    y[x > center - 0.5 + (width - 1) / 2] = 255
    return y


def expected_sigmoid(ds: pydicom.Dataset, center: float, width: float) -> np.ndarray:
    """PS3.3 §C.11.2.1.3.1."""
    x = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return 255 / (1 + np.exp(-4 * (x - center) / width))


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("40,400", lambda ds: expected_linear(ds, 40, 400)),
        ("100,300,linear", lambda ds: expected_linear(ds, 100, 300)),
        ("40,400,sigmoid", lambda ds: expected_sigmoid(ds, 40, 400)),
        ("-100000,10", lambda ds: np.full(ds.pixel_array.shape, 255.0)),
        ("100000,10", lambda ds: np.zeros(ds.pixel_array.shape)),
    ],
)
def test_it_applies_the_window(w_client, w_ct, window, expected):
    ct = w_ct[0]
    response = w_client.get(ct.instance + "/rendered", {"window": window}, HTTP_ACCEPT="image/png")
    grey = np.asarray(image(response).convert("L"), dtype=float)
    assert np.abs(grey - expected(ct.ds)).max() <= 1


def test_it_applies_a_linear_exact_window(w_client, w_ct):
    response = w_client.get(w_ct[0].instance + "/rendered", {"window": "40,400,linear-exact"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("viewport", "size"),
    [("64,64", (64, 64)), ("64,32", (32, 32)), ("300,200", (200, 200)), ("1,50", (1, 1))],
)
def test_it_fits_the_image_in_the_viewport(w_client, w_ct, viewport, size):
    response = w_client.get(w_ct[0].instance + "/rendered", {"viewport": viewport})
    assert image(response).size == size


def test_it_renders_the_region_of_the_viewport(w_client, w_ct):
    url = w_ct[0].instance + "/rendered"
    window = {"window": "40,400"}
    whole = np.asarray(image(w_client.get(url, window, HTTP_ACCEPT="image/png")))
    region = w_client.get(url, {**window, "viewport": "64,32,10,20,64,32"}, HTTP_ACCEPT="image/png")
    assert np.array_equal(np.asarray(image(region)), whole[20:52, 10:74])


def test_it_fits_a_non_square_frame_in_the_viewport(w_client, w_ingest):
    j2k = w_ingest("JPEG2000.dcm")  # 256 columns by 1024 rows
    response = w_client.get(j2k.instance + "/rendered", {"viewport": "100,100"})
    assert image(response).size == (25, 100)


def test_it_sets_the_jpeg_quality(w_client, w_ct):
    url = w_ct[0].instance + "/rendered"
    low = body_of(w_client.get(url, {"quality": "5"}))
    high = body_of(w_client.get(url, {"quality": "100"}))
    assert len(low) < len(high)


@pytest.mark.parametrize(
    "params",
    [
        {"window": "40"},
        {"window": "40,0"},
        {"window": "a,b"},
        {"window": "40,400,cubic"},
        {"viewport": "0,10"},
        {"viewport": "10"},
        {"quality": "0"},
        {"quality": "101"},
    ],
)
def test_it_refuses_bad_rendering_parameters(w_client, w_ct, params):
    assert w_client.get(w_ct[0].instance + "/rendered", params).status_code == 400


def test_it_renders_only_images(w_client, w_ct):
    url = w_ct[0].instance + "/rendered"
    assert w_client.get(url, HTTP_ACCEPT="application/dicom").status_code == 406


# Thumbnails (§10.4.1.1.6)


@pytest.mark.parametrize(
    "path",
    [
        lambda s: s.study + "/thumbnail",
        lambda s: s.series + "/thumbnail",
        lambda s: s.instance + "/thumbnail",
        lambda s: s.instance + "/frames/2/thumbnail",
    ],
)
def test_it_sends_thumbnails_at_every_level(w_client, w_ingest, path):
    big = w_ingest("JPEG2000.dcm")  # 256 x 1024: a thumbnail is smaller
    frames = w_ingest("SC_rgb_rle_2frame.dcm", StudyInstanceUID=big.ds.StudyInstanceUID)
    sample = frames if "frames" in path(frames) else big
    response = w_client.get(path(sample))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    thumbnail = image(response)
    assert thumbnail.format == "JPEG"
    assert max(thumbnail.size) <= THUMBNAIL_SIZE


def test_it_sends_a_series_thumbnail_as_png(w_client, w_ct):
    response = w_client.get(w_ct[0].series + "/thumbnail", HTTP_ACCEPT="image/png")
    assert image(response).format == "PNG"


# Bulk data (§10.4.1.1.5)


def test_it_sends_the_pixel_data_as_bulk_data(w_client, w_ct):
    response = w_client.get(w_ct[0].instance + "/bulkdata/7FE00010")
    assert response.status_code == 200
    assert response["Content-Type"].startswith(OCTETS)
    [part] = multipart(response)
    assert part.body == w_ct[0].ds.PixelData


def test_it_sends_compressed_pixel_data_decoded(w_client, w_rgb2):
    [part] = multipart(w_client.get(w_rgb2.instance + "/bulkdata/7FE00010"))
    assert part.body == w_rgb2.ds.pixel_array.tobytes()


def test_it_sends_the_bulk_data_the_metadata_points_to(w_client, w_ct):
    ct = w_ct[0]
    [document] = json.loads(body_of(w_client.get(ct.instance + "/metadata")))
    [part] = multipart(w_client.get(document["00431029"]["BulkDataURI"]))
    assert part.body == ct.ds[0x00431029].value
    assert len(part.body) > 1024


def test_it_sends_overlay_data_as_bulk_data(w_client, w_ingest):
    overlay = w_ingest("examples_overlay.dcm")
    [part] = multipart(w_client.get(overlay.instance + "/bulkdata/60003000"))
    assert part.body == overlay.ds[0x60003000].value


def test_it_sends_the_bulk_data_of_a_sequence_item(w_client, w_ingest):
    icon = Dataset()
    icon.Rows, icon.Columns, icon.BitsAllocated = 40, 50, 8
    icon.PixelData = bytes(range(250)) * 8
    sample = w_ingest("CT_small.dcm", SOPInstanceUID="new-uid", IconImageSequence=[icon])
    [document] = json.loads(body_of(w_client.get(sample.instance + "/metadata")))
    uri = document["00880200"]["Value"][0]["7FE00010"]["BulkDataURI"]
    assert uri == f"{sample.instance}/bulkdata/00880200/0/7FE00010"
    [part] = multipart(w_client.get(uri))
    assert part.body == icon.PixelData  # the icon's, not the image's
    assert w_client.get(f"{sample.instance}/bulkdata/00880200/1/7FE00010").status_code == 404


@pytest.mark.parametrize(
    ("tag", "status"),
    [
        ("00100010", 404),
        ("7FE0001", 400),
        ("zz", 400),
        ("00880200/0/7FE00010", 404),  # no such sequence
        ("00100010/0/00100020", 404),  # not a sequence
        ("00880200/0", 400),
        ("00880200//7FE00010", 400),
        ("00880200/x/7FE00010", 400),
        ("00880200/\u00b2/7FE00010", 400),  # a digit to str.isdigit, not to int()
        ("/".join(["00880200/0"] * 9 + ["7FE00010"]), 400),  # deeper than anyone nests
    ],
)
def test_it_answers_for_a_tag_without_bulk_data(w_client, w_ct, tag, status):
    assert w_client.get(f"{w_ct[0].instance}/bulkdata/{tag}").status_code == status
