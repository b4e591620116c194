"""Decode Pixel Data once, into a form the browser can stream frame by frame.

Native little-endian greyscale whose stored values are already clean is never copied:
`Pixels.offset` points into the original file and frames are served straight from it.
Everything else (compressed, big endian, colour, palette, dirty high bits) is decoded
with pydicom's decoders into one little-endian array.

Imports no Django.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.encaps import generate_frames
from pydicom.filereader import read_dataset
from pydicom.pixels import apply_color_lut, convert_color_space, get_decoder
from pydicom.pixels.utils import get_expected_length, get_j2k_parameters
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
)

from backend.imaging.dicomfile import Limits, ParsedFile

# Transfer syntaxes whose Pixel Data value is the little-endian frames themselves
# (PS3.5 §A.1, §A.2), the only ones a frame can be served from without decoding.
NATIVE_LITTLE_ENDIAN = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian})

_FLOAT_PIXEL_DATA = 0x7FE00008
_DOUBLE_FLOAT_PIXEL_DATA = 0x7FE00009
_GREYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})
_YBR = frozenset({"YBR_FULL", "YBR_FULL_422"})


class PixelDataError(Exception):
    """Header is fine, pixels are not usable: the instance is indexed but marked not viewable.

    str(exc) is the reason."""


@dataclass(frozen=True)
class FrameLayout:
    """Shape and type of every frame as served to the viewer."""

    rows: int
    columns: int
    frames: int
    samples: int  # 1 (greyscale) or 3 (RGB, interleaved, 8-bit)
    dtype: str  # little-endian numpy dtype string, e.g. '<u2'
    photometric: str  # 'MONOCHROME1', 'MONOCHROME2' or 'RGB'

    @property
    def frame_bytes(self) -> int:
        """Bytes in one frame."""
        return self.rows * self.columns * self.samples * np.dtype(self.dtype).itemsize

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """numpy shape of one frame: (rows, columns) or (rows, columns, 3)."""
        if self.samples == 1:
            return (self.rows, self.columns)
        return (self.rows, self.columns, self.samples)


@dataclass
class Pixels:
    """Decoded pixels: either a location in the original file or an in-memory array."""

    layout: FrameLayout
    offset: int | None
    array: np.ndarray | None
    min_value: float
    max_value: float


@dataclass(frozen=True)
class _ImagePixel:
    """The Image Pixel module attributes that describe Pixel Data (PS3.3 C.7.6.3)."""

    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str


def decode_pixels(
    parsed: ParsedFile,
    path: str | os.PathLike,
    limits: Limits = Limits(),  # noqa: B008
) -> Pixels:
    """Decode the pixels of a file already read by `read_dicom`.

    Raises PixelDataError with a short reason when the pixels are unusable. Benign pixel
    defects that pydicom works around (e.g. a Pixel Representation that disagrees with
    the JPEG 2000 codestream) are appended to `parsed.warnings`.
    """
    if not parsed.has_pixel_data:
        raise PixelDataError("no Pixel Data")
    image = _image_pixel(parsed.dataset, parsed.pixel_data_tag)
    _check_limits(image, limits)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pixels = _decode(parsed, path, image)
        parsed.warnings.extend(_decoder_warnings(caught, parsed.warnings))
        return pixels
    except PixelDataError:
        raise
    except (MemoryError, RecursionError) as exc:
        raise PixelDataError(f"{_ts_name(parsed)}: {type(exc).__name__} while decoding") from None
    except Exception as exc:  # decoders raise anything from ValueError to RuntimeError
        raise PixelDataError(f"cannot decode {_ts_name(parsed)}: {_short(exc)}") from None


def frame_array(pixels: Pixels, path: str | os.PathLike, index: int) -> np.ndarray:
    """Return frame `index` (0-based) as an array of shape `pixels.layout.frame_shape`."""
    layout = pixels.layout
    if not 0 <= index < layout.frames:
        raise IndexError(f"frame {index} out of range 0..{layout.frames - 1}")
    if pixels.array is not None:
        return pixels.array[index]
    assert pixels.offset is not None
    count = layout.frame_bytes // np.dtype(layout.dtype).itemsize
    start = pixels.offset + index * layout.frame_bytes
    frame = np.fromfile(path, dtype=layout.dtype, count=count, offset=start)
    return frame.reshape(layout.frame_shape)


def _image_pixel(ds: pydicom.Dataset, pixel_tag: int | None) -> _ImagePixel:
    """Read and sanity-check the Image Pixel module (PS3.3 C.7.6.3)."""
    rows = _int_attr(ds, "Rows", required=True)
    columns = _int_attr(ds, "Columns", required=True)
    # Float and Double Float Pixel Data have no Bits Stored (PS3.3 C.7.6.24).
    float_bits = {_FLOAT_PIXEL_DATA: 32, _DOUBLE_FLOAT_PIXEL_DATA: 64}.get(pixel_tag or 0)
    bits_allocated = float_bits or _int_attr(ds, "BitsAllocated", required=True)
    image = _ImagePixel(
        rows=rows,
        columns=columns,
        frames=_int_attr(ds, "NumberOfFrames", default=1) or 1,
        samples=_int_attr(ds, "SamplesPerPixel", default=1),
        bits_allocated=bits_allocated,
        bits_stored=float_bits or _int_attr(ds, "BitsStored", default=bits_allocated),
        pixel_representation=_int_attr(ds, "PixelRepresentation", default=0),
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip(),
    )
    if min(rows, columns, image.frames) < 1:
        raise PixelDataError(f"empty image: {rows}x{columns}, {image.frames} frames")
    if image.samples not in (1, 3):
        raise PixelDataError(f"unsupported SamplesPerPixel {image.samples}")
    if not 1 <= image.bits_stored <= image.bits_allocated:
        raise PixelDataError(f"BitsStored {image.bits_stored} not in 1..{image.bits_allocated}")
    return image


def _int_attr(
    ds: pydicom.Dataset, keyword: str, *, required: bool = False, default: int = 0
) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        if required:
            raise PixelDataError(f"missing {keyword}")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PixelDataError(f"invalid {keyword} {str(value)[:30]!r}") from None


def _check_limits(image: _ImagePixel, limits: Limits) -> None:
    """Refuse before allocating anything: a tiny hostile file can claim 65535x65535."""
    if image.frames > limits.max_frames:
        raise PixelDataError(f"{image.frames} frames exceeds the limit of {limits.max_frames}")
    # Decoders work at the stored sample size; palette output is 3 samples of 8 bits.
    sample_bytes = max(1, (image.bits_allocated + 7) // 8)
    samples = 3 if image.photometric == "PALETTE COLOR" else image.samples
    size = image.rows * image.columns * image.frames * samples * sample_bytes
    if size > limits.max_pixel_bytes:
        raise PixelDataError(
            f"decoded size {size} bytes ({image.rows}x{image.columns}x{image.frames}) "
            f"exceeds the limit of {limits.max_pixel_bytes}"
        )


def _decode(parsed: ParsedFile, path: str | os.PathLike, image: _ImagePixel) -> Pixels:
    if _servable_from_file(parsed, image):
        # One greyscale sample of whole bytes per pixel: the length needs none of pydicom's
        # rules (and no copy of the Image Pixel module to apply them to).
        size = image.rows * image.columns * image.frames * image.bits_allocated // 8
        _check_length(parsed, size)
        pixels = _native_pixels(parsed, path, image)
        if pixels is not None:
            return pixels
    ds = parsed.dataset.group_dataset(0x0028)
    ds.file_meta = parsed.dataset.file_meta
    if parsed.pixel_data_offset is not None:
        _check_length(parsed, get_expected_length(ds, "bytes"))
    tag = parsed.pixel_data_tag or 0x7FE00010
    ds[tag] = _load_pixel_element(parsed, path, tag)
    return _decoded_pixels(parsed, ds, image)


def _load_pixel_element(parsed: ParsedFile, path: str | os.PathLike, tag: int) -> DataElement:
    """Read the pixel element from the file (read_dicom left it out of the header)."""
    if parsed.pixel_element_offset is None:
        # No file offset exists inside a deflated stream (PS3.5 §A.5): inflate again.
        return pydicom.dcmread(path, specific_tags=[tag])[tag]
    ts = UID(parsed.transfer_syntax_uid)
    with open(path, "rb") as fp:
        fp.seek(parsed.pixel_element_offset)
        elements = read_dataset(fp, ts.is_implicit_VR, ts.is_little_endian)
    if tag not in elements:
        # pydicom drops an undefined-length value whose Sequence Delimitation Item never
        # comes (PS3.5 §A.4): the file ends inside the encapsulated Pixel Data.
        raise PixelDataError("encapsulated Pixel Data truncated: no Sequence Delimitation Item")
    return elements[tag]


def _check_length(parsed: ParsedFile, expected: int) -> None:
    """A native value shorter than Rows x Columns x frames x samples is unusable."""
    present = parsed.pixel_data_length or 0
    if present < expected:
        raise PixelDataError(f"Pixel Data has {present} bytes, {expected} expected")


def _servable_from_file(parsed: ParsedFile, image: _ImagePixel) -> bool:
    return (
        parsed.pixel_data_offset is not None
        and parsed.transfer_syntax_uid in NATIVE_LITTLE_ENDIAN
        and image.samples == 1
        and image.photometric in _GREYSCALE
        and image.bits_allocated in (8, 16, 32, 64)
        and (image.bits_allocated != 64 or parsed.pixel_data_tag == _DOUBLE_FLOAT_PIXEL_DATA)
    )


def _native_dtype(parsed: ParsedFile, image: _ImagePixel) -> np.dtype:
    if parsed.pixel_data_tag in (_FLOAT_PIXEL_DATA, _DOUBLE_FLOAT_PIXEL_DATA):
        return np.dtype(f"<f{image.bits_allocated // 8}")
    kind = "i" if image.pixel_representation == 1 else "u"
    return np.dtype(f"<{kind}{image.bits_allocated // 8}")


def _native_pixels(
    parsed: ParsedFile, path: str | os.PathLike, image: _ImagePixel
) -> Pixels | None:
    """Serve from the original file when its stored values are clean, else return None.

    Clean means every value already fits Bits Stored as the Pixel Representation says
    (PS3.5 §8.1.1): unsigned values below 2**BitsStored, signed values sign-extended. Then
    min/max over the raw little-endian words equals min/max over the stored values.
    """
    dtype = _native_dtype(parsed, image)
    count = image.rows * image.columns * image.frames
    assert parsed.pixel_data_offset is not None
    values = np.fromfile(path, dtype=dtype, count=count, offset=parsed.pixel_data_offset)
    if values.size < count:
        raise PixelDataError(f"Pixel Data has {values.size} values, {count} expected")
    low, high = _min_max(values)
    if dtype.kind in "iu" and not _fits_bits_stored(low, high, image):
        return None
    layout = _layout(image, dtype.str, image.photometric)
    return Pixels(layout, parsed.pixel_data_offset, None, low, high)


def _fits_bits_stored(low: float, high: float, image: _ImagePixel) -> bool:
    bits = image.bits_stored
    if image.pixel_representation == 1:
        return -(1 << (bits - 1)) <= low and high < (1 << (bits - 1))
    return high < (1 << bits)


def _decoded_pixels(parsed: ParsedFile, ds: pydicom.Dataset, image: _ImagePixel) -> Pixels:
    """Decode with pydicom, then normalise to little-endian greyscale or 8-bit RGB."""
    decoder = get_decoder(parsed.transfer_syntax_uid)
    parsed.warnings.extend(_codestream_defects(parsed, ds, image))
    # as_rgb converts YBR_FULL/YBR_FULL_422 to RGB unless the codec already did; the
    # returned overrides say which Photometric Interpretation the array really has.
    arr, overrides = decoder.as_array(ds, as_rgb=True)  # type: ignore[arg-type]  # **kwargs
    photometric = str(overrides.get("photometric_interpretation", image.photometric))
    arr = arr.reshape(image.frames, image.rows, image.columns, -1)
    arr, photometric = _to_viewable(arr, photometric, ds, image)
    if arr.shape[-1] == 1:
        arr = arr[..., 0]
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    low, high = _min_max(arr)
    return Pixels(_layout(image, arr.dtype.str, photometric), None, arr, low, high)


def _codestream_defects(parsed: ParsedFile, ds: pydicom.Dataset, image: _ImagePixel) -> list[str]:
    """Report a JPEG 2000 codestream whose signedness contradicts Pixel Representation.

    pydicom trusts the header and corrects the sign (the values then match the header),
    so this is benign, but the writer was wrong and the archive should say so.
    """
    if UID(parsed.transfer_syntax_uid) not in JPEG2000TransferSyntaxes:
        return []
    value = ds[parsed.pixel_data_tag or 0x7FE00010].value
    first = next(generate_frames(value, number_of_frames=image.frames), b"")
    is_signed = get_j2k_parameters(first).get("is_signed")
    if is_signed is None or is_signed == bool(image.pixel_representation):
        return []
    kind = "signed" if is_signed else "unsigned"
    return [
        f"PixelRepresentation {image.pixel_representation} but the JPEG 2000 codestream "
        f"is {kind}; values follow the header"
    ]


def _to_viewable(
    arr: np.ndarray, photometric: str, ds: pydicom.Dataset, image: _ImagePixel
) -> tuple[np.ndarray, str]:
    """Convert colour to 8-bit interleaved RGB (PS3.3 C.7.6.3.1.2); greyscale is kept."""
    if photometric in _GREYSCALE and arr.shape[-1] == 1:
        return arr, photometric
    if photometric == "PALETTE COLOR":
        return _palette_to_rgb(arr[..., 0], ds), "RGB"
    if photometric in _YBR:
        arr = convert_color_space(arr, photometric, "RGB")
        photometric = "RGB"
    if photometric == "RGB" and arr.shape[-1] == 3:
        return _rgb_to_8_bits(arr, image.bits_stored), "RGB"
    raise PixelDataError(f"unsupported PhotometricInterpretation {photometric}")


def _palette_to_rgb(arr: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Apply the Palette Color Lookup Table (PS3.3 C.7.6.3.1.5), scaled to 8 bits."""
    rgb = apply_color_lut(arr, ds)
    if rgb.dtype.itemsize == 1:
        return rgb.astype(np.uint8, copy=False)
    # C.7.6.3.1.5 notes that some writers store 8-bit entries in 16-bit words; only
    # scale down when the table really uses the high byte.
    if rgb.size and int(rgb.max()) < 256:
        return rgb.astype(np.uint8)
    return (rgb >> 8).astype(np.uint8)


def _rgb_to_8_bits(arr: np.ndarray, bits_stored: int) -> np.ndarray:
    """The viewer takes 8-bit RGB; deeper colour keeps its most significant bits."""
    if arr.dtype.itemsize == 1:
        return arr.astype(np.uint8, copy=False)
    shift = max(0, min(bits_stored, arr.dtype.itemsize * 8) - 8)
    return (arr >> shift).astype(np.uint8)


def _layout(image: _ImagePixel, dtype: str, photometric: str) -> FrameLayout:
    samples = 1 if photometric in _GREYSCALE else 3
    return FrameLayout(image.rows, image.columns, image.frames, samples, dtype, photometric)


def _min_max(values: np.ndarray) -> tuple[float, float]:
    if values.dtype.kind == "f":
        if np.isnan(values).all():
            return 0.0, 0.0
        return float(np.nanmin(values)), float(np.nanmax(values))
    return float(values.min()), float(values.max())


def _decoder_warnings(caught: list[warnings.WarningMessage], known: list[str]) -> list[str]:
    messages: list[str] = []
    for warning in caught:
        text = str(warning.message).split("\n", 1)[0].strip()
        if text and text not in known and text not in messages:
            messages.append(text)
    return messages


def _ts_name(parsed: ParsedFile) -> str:
    uid = UID(parsed.transfer_syntax_uid)
    return f"{uid.name} ({uid})" if uid.is_transfer_syntax else f"transfer syntax {uid}"


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
