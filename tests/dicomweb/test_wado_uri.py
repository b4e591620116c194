# ruff: noqa: F811 - the w_ fixtures are imported from fixtures.py and named as arguments
"""WADO-URI (PS3.18 §9): /wado?requestType=WADO&studyUID=&seriesUID=&objectUID=, as a DICOM
file or a rendered JPEG or PNG."""

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from backend.accounts.tokens import create_token

from .fixtures import Sample, w_client, w_ingest, w_user  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def w_ct(w_ingest) -> Sample:
    return w_ingest("CT_small.dcm")


def params(sample: Sample, **extra) -> dict:
    study, series, instance = sample.uids
    return {
        "requestType": "WADO",
        "studyUID": study,
        "seriesUID": series,
        "objectUID": instance,
        **extra,
    }


def image(response) -> Image.Image:
    assert response.status_code == 200, response.content[:200]
    return Image.open(io.BytesIO(response.content))


# Access


def test_it_refuses_anonymous_requests(client, w_ct):
    response = client.get("/wado", params(w_ct))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")


def test_it_refuses_a_token_without_the_read_scope(client, w_user, w_ct):
    _, token = create_token(w_user, "uploader", ["write"])
    response = client.get("/wado", params(w_ct), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403


def test_it_answers_a_reader_token(client, w_user, w_ct):
    _, token = create_token(w_user, "viewer", ["read"])
    response = client.get("/wado", params(w_ct), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200


# Retrieve DICOM Instance (§9.4.1.1)


def test_it_sends_the_stored_file(w_client, w_ct):
    response = w_client.get("/wado", params(w_ct, contentType="application/dicom"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom"
    assert response.content == w_ct.path.read_bytes()
    filename = f"{w_ct.ds.SOPInstanceUID}.dcm"
    assert response["Content-Disposition"] == f'attachment; filename="{filename}"'


def test_it_sends_the_stored_file_in_its_own_transfer_syntax(w_client, w_ingest):
    j2k = w_ingest("JPEG2000.dcm")
    query = params(
        j2k, contentType="application/dicom", transferSyntax=j2k.ds.file_meta.TransferSyntaxUID
    )
    assert w_client.get("/wado", query).content == j2k.path.read_bytes()


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_rle.dcm"])
def test_it_decodes_to_the_transfer_syntax_asked_for(w_client, w_ingest, name):
    sample = w_ingest(name)
    query = params(sample, contentType="application/dicom", transferSyntax=ExplicitVRLittleEndian)
    ds = pydicom.dcmread(io.BytesIO(w_client.get("/wado", query).content))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPInstanceUID == sample.ds.SOPInstanceUID
    assert np.array_equal(ds.pixel_array, sample.ds.pixel_array)


def test_it_decodes_to_explicit_vr_little_endian_by_default(w_client, w_ingest):
    j2k = w_ingest("JPEG2000.dcm")
    response = w_client.get("/wado", params(j2k, contentType="application/dicom"))
    ds = pydicom.dcmread(io.BytesIO(response.content))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_it_refuses_to_decode_what_it_cannot_decode(w_client, w_ingest):
    lossy = w_ingest("JPEG-lossy.dcm")
    query = params(lossy, contentType="application/dicom", transferSyntax=ExplicitVRLittleEndian)
    assert w_client.get("/wado", query).status_code == 406


def test_it_refuses_a_transfer_syntax_it_cannot_produce(w_client, w_ct):
    jpeg_baseline = "1.2.840.10008.1.2.4.50"
    query = params(w_ct, contentType="application/dicom", transferSyntax=jpeg_baseline)
    assert w_client.get("/wado", query).status_code == 406


# Retrieve Rendered Instance (§9.4.1.2)


def test_it_renders_a_jpeg_by_default(w_client, w_ct):
    response = w_client.get("/wado", params(w_ct))
    assert response["Content-Type"] == "image/jpeg"
    rendered = image(response)
    assert rendered.format == "JPEG" and rendered.size == (128, 128)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("image/png", "PNG"),
        ("image/jpeg", "JPEG"),
        ("image/png,image/jpeg", "PNG"),
        ("image/gif,image/png", "PNG"),
        ("image/*", "JPEG"),
    ],
)
def test_it_renders_the_content_type_asked_for(w_client, w_ct, content_type, expected):
    assert image(w_client.get("/wado", params(w_ct, contentType=content_type))).format == expected


def test_it_renders_the_frame_asked_for(w_client, w_ingest):
    rgb2 = w_ingest("SC_rgb_rle_2frame.dcm")
    response = w_client.get("/wado", params(rgb2, contentType="image/png", frameNumber="2"))
    # PNG is lossless and an RGB frame passes through unchanged.
    assert np.array_equal(np.asarray(image(response).convert("RGB")), rgb2.ds.pixel_array[1])


def test_it_applies_the_window(w_client, w_ct):
    center, width = 40.0, 400.0
    query = params(w_ct, contentType="image/png", windowCenter="40", windowWidth="400")
    grey = np.asarray(image(w_client.get("/wado", query)).convert("L"), dtype=float)
    # PS3.3 §C.11.2.1.2.1 after the Modality LUT.
    x = w_ct.ds.pixel_array * float(w_ct.ds.RescaleSlope) + float(w_ct.ds.RescaleIntercept)
    expected = np.clip(((x - (center - 0.5)) / (width - 1) + 0.5) * 255, 0, 255)
    assert np.abs(grey - expected).max() <= 1


@pytest.mark.parametrize(
    ("name", "extra", "size"),
    [
        ("CT_small.dcm", {"rows": "64"}, (64, 64)),
        ("CT_small.dcm", {"columns": "32"}, (32, 32)),
        ("CT_small.dcm", {"rows": "64", "columns": "32"}, (32, 32)),
        ("JPEG2000.dcm", {"rows": "100"}, (25, 100)),  # 256 columns, 1024 rows
        ("JPEG2000.dcm", {"columns": "64"}, (64, 256)),
    ],
)
def test_it_fits_the_rows_and_columns_asked_for(w_client, w_ingest, name, extra, size):
    sample = w_ingest(name)
    assert image(w_client.get("/wado", params(sample, **extra))).size == size


def test_it_sets_the_image_quality(w_client, w_ct):
    low = w_client.get("/wado", params(w_ct, imageQuality="5")).content
    high = w_client.get("/wado", params(w_ct, imageQuality="100")).content
    assert len(low) < len(high)


# Refused requests


@pytest.mark.parametrize("missing", ["studyUID", "seriesUID", "objectUID"])
def test_it_needs_all_three_uids(w_client, w_ct, missing):
    query = params(w_ct)
    del query[missing]
    assert w_client.get("/wado", query).status_code == 400
    assert w_client.get("/wado", {**query, missing: ""}).status_code == 400


@pytest.mark.parametrize("request_type", [None, "", "wado", "WADO-RS"])
def test_it_needs_request_type_wado(w_client, w_ct, request_type):
    query = params(w_ct)
    del query["requestType"]
    if request_type is not None:
        query["requestType"] = request_type
    assert w_client.get("/wado", query).status_code == 400


@pytest.mark.parametrize("unknown", ["studyUID", "seriesUID", "objectUID"])
def test_it_answers_404_for_an_unknown_object(w_client, w_ct, unknown):
    query = params(w_ct, **{unknown: generate_uid()})
    assert w_client.get("/wado", query).status_code == 404
    query = params(w_ct, contentType="application/dicom", **{unknown: generate_uid()})
    assert w_client.get("/wado", query).status_code == 404


@pytest.mark.parametrize("content_type", ["text/html", "image/gif", "application/pdf"])
def test_it_refuses_an_unsupported_content_type(w_client, w_ct, content_type):
    assert w_client.get("/wado", params(w_ct, contentType=content_type)).status_code == 406


@pytest.mark.parametrize(
    "extra",
    [
        {"windowCenter": "40"},
        {"windowWidth": "400"},
        {"windowCenter": "a", "windowWidth": "400"},
        {"rows": "0"},
        {"columns": "x"},
        {"imageQuality": "101"},
        {"frameNumber": "a"},
    ],
)
def test_it_refuses_bad_rendering_parameters(w_client, w_ct, extra):
    assert w_client.get("/wado", params(w_ct, **extra)).status_code == 400


def test_it_answers_post_with_405(w_client, w_ct):
    assert w_client.post("/wado", params(w_ct)).status_code == 405
