"""Render one frame to 8-bit JPEG or PNG (thumbnails and, later, DICOMweb /rendered).

Greyscale goes through the Modality LUT and then the VOI LUT (PS3.3 C.11.1, C.11.2)
before being inverted for MONOCHROME1; RGB frames are passed through.

Imports no Django.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from backend.imaging.pixels import FrameLayout

VOI_LUT_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")  # PS3.3 C.11.2.1.3
FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}

# Automatic windows ignore the extreme 0.5 % at either end, so a few hot or padding
# pixels do not wash out the image.
AUTO_WINDOW_PERCENTILES = (0.5, 99.5)
# Percentiles over a sample are close enough for a window and keep thumbnails cheap.
_AUTO_WINDOW_SAMPLE = 1 << 18


def render(
    frame: np.ndarray,
    layout: FrameLayout,
    *,
    rescale_slope: float = 1.0,
    rescale_intercept: float = 0.0,
    window_center: float | None = None,
    window_width: float | None = None,
    voi_lut_function: str = "LINEAR",
    max_size: int | None = None,
    viewport: tuple[int, int] | None = None,
    fmt: str = "jpeg",
    quality: int = 90,
) -> bytes:
    """Return `frame` (as from `frame_array`) encoded as 8-bit JPEG or PNG bytes.

    A window of None picks one from the frame's 0.5-99.5 percentiles. `max_size` bounds
    the longer side, keeping the aspect ratio; `viewport` (width, height) scales the image
    up or down to fit inside that box, keeping the aspect ratio (PS3.18 §8.3.5.1.3).
    """
    pil_format = FORMATS.get(fmt.lower())
    if pil_format is None:
        raise ValueError(f"unsupported format {fmt!r}; use one of {sorted(FORMATS)}")
    if layout.samples == 3:
        image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    else:
        values = apply_modality_lut(frame, rescale_slope, rescale_intercept)
        if window_center is None or window_width is None:
            window_center, window_width = auto_window(values)
        grey = apply_voi_lut(values, window_center, window_width, voi_lut_function)
        if layout.photometric == "MONOCHROME1":
            # PS3.3 C.7.6.3.1.2: minimum value is intended to be displayed as white.
            grey = 255 - grey
        image = Image.fromarray(grey)
    image = _fit(image, max_size)
    if viewport is not None:
        image = _fit_box(image, *viewport)
    out = io.BytesIO()
    if pil_format == "JPEG":
        image.save(out, format="JPEG", quality=quality)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def apply_modality_lut(frame: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Rescale stored values to output units (PS3.3 C.11.1.1.2): slope * x + intercept."""
    values = frame.astype(np.float64)
    if slope != 1.0:
        values *= slope
    if intercept != 0.0:
        values += intercept
    return values


def auto_window(values: np.ndarray) -> tuple[float, float]:
    """Return (center, width) covering the 0.5-99.5 percentile range of `values`."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    step = max(1, finite.size // _AUTO_WINDOW_SAMPLE)
    low, high = np.percentile(finite[::step], AUTO_WINDOW_PERCENTILES)
    width = max(float(high - low), 1.0)
    return float(low + high) / 2, width


def apply_voi_lut(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Map values to 0..255 with a VOI LUT Function (PS3.3 C.11.2.1.2, C.11.2.1.3).

    The linear functions work in one array of their own, in place (the same operations in
    the same order, so the same result): a temporary per step cost a thumbnail 40 % more."""
    function = function.upper().strip()
    if function == "SIGMOID":
        # C.11.2.1.3.1; errstate because exp overflows to inf far from the center (→ 0).
        with np.errstate(over="ignore"):
            scaled = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / max(width, 1e-9)))
    elif function == "LINEAR_EXACT":
        # C.11.2.1.3.2: width > 0, no half-pixel offset.
        width = max(width, 1e-9)
        scaled = values - center
        scaled /= width
        scaled += 0.5
    elif function == "LINEAR":
        # C.11.2.1.2.1: width >= 1, window spans [c - 0.5 - (w-1)/2, c - 0.5 + (w-1)/2].
        width = max(width, 1.0)
        scaled = values - (center - 0.5)
        scaled /= max(width - 1.0, 1e-9)
        scaled += 0.5
    else:
        raise ValueError(f"unknown VOI LUT Function {function!r}")
    np.nan_to_num(scaled, copy=False, nan=0.0)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    scaled *= 255.0
    return np.rint(scaled, out=scaled).astype(np.uint8)


def _fit(image: Image.Image, max_size: int | None) -> Image.Image:
    """Downscale so the longer side is at most `max_size`, keeping the aspect ratio."""
    if not max_size or max(image.size) <= max_size:
        return image
    scale = max_size / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _fit_box(image: Image.Image, width: int, height: int) -> Image.Image:
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR)
