"""render produces 8-bit JPEG/PNG of the expected size with DICOM windowing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from backend.imaging.dicomfile import read_dicom
from backend.imaging.pixels import FrameLayout, decode_pixels, frame_array
from backend.imaging.render import apply_voi_lut, render

from .helpers import bundled

GREY = FrameLayout(rows=2, columns=4, frames=1, samples=1, dtype="<u2", photometric="MONOCHROME2")
RAMP = np.array([[0, 100, 200, 300], [400, 500, 600, 1000]], dtype="<u2")


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_it_renders_a_ct_slice_downscaled_keeping_aspect():
    path = bundled("CT_small.dcm")
    parsed = read_dicom(path)
    pixels = decode_pixels(parsed, path)
    frame = frame_array(pixels, path, 0)
    ds = parsed.dataset

    data = render(
        frame,
        pixels.layout,
        rescale_slope=float(ds.RescaleSlope),
        rescale_intercept=float(ds.RescaleIntercept),
        max_size=64,
    )

    image = decode(data)
    assert (image.format, image.mode, image.size) == ("JPEG", "L", (64, 64))


def test_it_keeps_aspect_for_non_square_frames():
    frame = np.zeros((100, 300), dtype="<u2")
    layout = FrameLayout(100, 300, 1, 1, "<u2", "MONOCHROME2")

    image = decode(render(frame, layout, max_size=150, fmt="png"))

    assert (image.format, image.size) == ("PNG", (150, 50))


def test_it_inverts_monochrome1():
    monochrome1 = FrameLayout(2, 4, 1, 1, "<u2", "MONOCHROME1")

    normal = np.asarray(decode(render(RAMP, GREY, fmt="png", window_center=500, window_width=1000)))
    inverted = np.asarray(
        decode(render(RAMP, monochrome1, fmt="png", window_center=500, window_width=1000))
    )

    np.testing.assert_array_equal(inverted, 255 - normal)
    assert inverted[0, 0] == 255


def test_it_applies_the_modality_lut_before_the_window():
    # slope 2, intercept -1000: stored 500 -> 0, which is the window center.
    image = decode(
        render(
            RAMP,
            GREY,
            rescale_slope=2,
            rescale_intercept=-1000,
            window_center=0,
            window_width=400,
            fmt="png",
        )
    )

    assert np.asarray(image)[1, 1] in (127, 128)


def test_it_picks_a_window_automatically():
    image = np.asarray(decode(render(RAMP, GREY, fmt="png")))

    assert image.min() == 0
    assert image.max() == 255


def test_it_passes_rgb_through():
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    frame[..., 0] = 200
    layout = FrameLayout(8, 8, 1, 3, "|u1", "RGB")

    image = decode(render(frame, layout, fmt="png"))

    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), frame)


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        # PS3.3 C.11.2.1.2.1: c=50, w=11: ((x - 49.5) / 10 + 0.5), clipped, times 255.
        ("LINEAR", [0, 13, 140, 255, 255]),
        # C.11.2.1.3.2: c=50, w=10 spans exactly 45..55.
        ("LINEAR_EXACT", [0, 0, 128, 255, 255]),
        # C.11.2.1.3.1: 255 / (1 + exp(-4 (x - c) / w)); 45 -> 255 / (1 + e^2) = 30.
        ("SIGMOID", [0, 30, 128, 225, 255]),
    ],
)
def test_it_applies_the_voi_lut_function(function, expected):
    width = 11 if function == "LINEAR" else 10
    values = np.array([0.0, 45.0, 50.0, 55.0, 100.0])

    assert apply_voi_lut(values, 50, width, function).tolist() == expected


def test_it_refuses_an_unknown_format():
    with pytest.raises(ValueError, match="unsupported format"):
        render(RAMP, GREY, fmt="gif")
