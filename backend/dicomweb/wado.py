"""WADO-RS (PS3.18 §10.4): instances, metadata, frames, rendered images and bulk data.

Instances and frames leave as they are stored whenever the client accepts that: a stored
file is streamed from disk, a frame is a byte range of the prepared frames. Only when the
client asks for another transfer syntax is an instance decoded (never re-compressed lossy).
"""

import asyncio
import gzip
import io
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import pydicom
from pydicom.encaps import get_frame
from pydicom.filewriter import dcmwrite
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from backend.archive.frames import FrameUnavailable, frame_array, frame_bytes, frame_layout
from backend.archive.models import Instance, Series
from backend.archive.retrieve import dataset_for
from backend.archive.storage import get_storage
from backend.imaging.render import render

from .errors import DicomWebError
from .media import MediaRange, multipart_stream

CHUNK = 1 << 18
ANY = "*"
UNCOMPRESSED = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
# PS3.18 Table 8.7.3-2: the media type a compressed frame travels as, per transfer syntax.
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
RENDERED_TYPES = {"image/jpeg": "jpeg", "image/png": "png"}
DICOM_PART_TYPES = ("application/dicom", "application/*", "*/*")


# Instances


def accepted_syntaxes(ranges: list[MediaRange]) -> set[str]:
    """Transfer syntaxes an Accept header takes for application/dicom parts (§8.7.3.5.2);
    ANY for transfer-syntax=*. Without a transfer-syntax parameter, and for */*, the default
    is Explicit VR Little Endian (PS3.18 Table 8.7.3-2)."""
    if not ranges:
        return {ExplicitVRLittleEndian}
    syntaxes: set[str] = set()
    for media in ranges:
        if media.q == 0:
            continue
        part_type = media.params.get("type", "application/dicom")
        if media.type == "*/*":
            syntaxes.add(ExplicitVRLittleEndian)
        elif media.type == "multipart/related" and part_type in DICOM_PART_TYPES:
            syntaxes.add(media.params.get("transfer-syntax", ExplicitVRLittleEndian))
    if not syntaxes:
        raise DicomWebError(
            406, 'this resource is sent as multipart/related; type="application/dicom"'
        )
    if syntaxes == {ImplicitVRLittleEndian}:
        raise DicomWebError(
            406, "Implicit VR Little Endian is not used by web services (PS3.18 §8.7.3)"
        )
    return syntaxes


@dataclass
class OutgoingInstance:
    instance: Instance
    transfer_syntax: str  # what it leaves as
    as_stored: bool


def plan_instances(instances: list[Instance], syntaxes: set[str]) -> list[OutgoingInstance]:
    """How each instance leaves: as stored, or decoded to Explicit VR Little Endian.
    transfer-syntax=* always gets the stored file byte for byte, even one stored in
    Implicit VR (what "as stored" promises); Implicit VR is never produced otherwise
    (PS3.18 §8.7.3). 406 when an instance can be sent in none of the syntaxes the client
    takes, or would need decoding that failed at ingest."""
    planned = []
    for instance in instances:
        stored = instance.transfer_syntax_uid
        if ANY in syntaxes or (stored in syntaxes and stored != ImplicitVRLittleEndian):
            planned.append(OutgoingInstance(instance, stored, True))
            continue
        if ExplicitVRLittleEndian not in syntaxes and ANY not in syntaxes:
            raise DicomWebError(
                406,
                f"instance {instance.sop_instance_uid} is stored as {stored}; ask for it as "
                "stored (transfer-syntax=*) or uncompressed (1.2.840.10008.1.2.1)",
            )
        if UID(stored).is_compressed and not instance.viewable:
            raise DicomWebError(
                406,
                f"instance {instance.sop_instance_uid} cannot be decoded "
                f"({instance.not_viewable_reason[:200]}); ask for it as stored (transfer-syntax=*)",
            )
        planned.append(OutgoingInstance(instance, ExplicitVRLittleEndian, False))
    return planned


async def instance_parts(planned: list[OutgoingInstance], base_url: str):
    for item in planned:
        content_type = f"application/dicom; transfer-syntax={item.transfer_syntax}"
        location = f"{base_url}{_instance_path(item.instance)}"
        if item.as_stored:
            yield content_type, location, _file_chunks(item.instance.object_key)
        else:
            yield content_type, location, _transcoded(item.instance, item.transfer_syntax)


def _instance_path(instance: Instance) -> str:
    series = instance.series
    return (
        f"/studies/{series.study.study_instance_uid}/series/{series.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )


async def _file_chunks(key: str) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(get_storage().open, key)
    try:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk
    finally:
        f.close()


async def _transcoded(instance: Instance, transfer_syntax: str) -> AsyncIterator[bytes]:
    yield await asyncio.to_thread(encoded_as, instance, transfer_syntax)


def encoded_as(instance: Instance, transfer_syntax: str) -> bytes:
    """The instance as a Part 10 file in an uncompressed transfer syntax; 406 when it
    cannot be decoded."""
    try:
        ds = dataset_for(instance, [transfer_syntax])
    except Exception as exc:  # any codec failure: the client can still take it as stored
        raise DicomWebError(406, f"the instance cannot be decoded: {exc}"[:300]) from None
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


# Metadata


def series_metadata(series: Series, gzip_ok: bool) -> tuple[bytes, bool]:
    """The series' DICOM JSON array, from the document prepared at ingest when it is up to
    date; (body, body is gzip-compressed)."""
    if series.is_derived and series.metadata_key:
        prepared = get_storage().read(series.metadata_key)
        return (prepared, True) if gzip_ok else (gzip.decompress(prepared), False)
    documents = (
        Instance.objects.filter(series=series)
        .order_by("slice_index", "instance_number", "pk")
        .values_list("dicom_json", flat=True)
    )
    return json_array(documents), False


def study_metadata(series_list: Iterable[Series]) -> bytes:
    parts = []
    for series in series_list:
        body, _ = series_metadata(series, gzip_ok=False)
        if len(body) > 2:
            parts.append(body[1:-1])
    return b"[" + b",".join(parts) + b"]"


def json_array(documents: Iterable[str]) -> bytes:
    return ("[" + ",".join(documents) + "]").encode()


# Frames


def parse_frame_list(text: str, number_of_frames: int) -> list[int]:
    """1-based frame numbers (PS3.18 §10.4.1.1.4): comma-separated, each in range."""
    numbers = []
    for part in text.split(","):
        if not part.strip().isdigit() or len(part.strip()) > 9:
            raise DicomWebError(400, f"{part[:20]!r} is not a frame number")
        numbers.append(int(part))
    if len(numbers) > 10_000:
        raise DicomWebError(400, "too many frames in one request")
    missing = [n for n in numbers if not 1 <= n <= number_of_frames]
    if missing:
        raise DicomWebError(404, f"frame {missing[0]} does not exist (1..{number_of_frames})")
    return numbers


@dataclass
class FramePlan:
    content_type: str  # of each part
    compressed: bool  # the stored codestream rather than uncompressed values


def plan_frames(ranges: list[MediaRange], instance: Instance) -> FramePlan:
    """Uncompressed (application/octet-stream) or the stored codestream, per Accept
    (PS3.18 §8.7.3.3.2, Table 8.7.3-5); 406 when neither fits."""
    stored = instance.transfer_syntax_uid
    stored_type = FRAME_MEDIA_TYPES.get(stored)
    uncompressed = FramePlan(
        f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}", False
    )
    if not ranges:
        return uncompressed
    for media in ranges:
        if media.q == 0:
            continue
        if media.type == "*/*":
            return uncompressed
        if media.type != "multipart/related":
            continue
        part_type = media.params.get("type", "application/octet-stream")
        syntax = media.params.get("transfer-syntax", "")
        if part_type == "application/octet-stream":
            if syntax == ANY and stored_type:
                return FramePlan(f"{stored_type}; transfer-syntax={stored}", True)
            if syntax in ("", ANY, ExplicitVRLittleEndian):
                return uncompressed
        elif (
            stored_type
            and part_type in (stored_type, "image/*", "*/*")
            and syntax in ("", ANY, stored)
        ):
            return FramePlan(f"{stored_type}; transfer-syntax={stored}", True)
        elif part_type in ("*/*", "application/*") and syntax in ("", ANY):
            return uncompressed  # the server's choice: compressed ones matched above
    raise DicomWebError(
        406,
        "frames are available uncompressed "
        '(multipart/related; type="application/octet-stream")'
        + (f" or as stored ({stored_type}, transfer syntax {stored})" if stored_type else ""),
    )


def frame_payloads(instance: Instance, numbers: list[int], plan: FramePlan) -> list[bytes]:
    try:
        if not plan.compressed:
            return [frame_bytes(instance, n - 1) for n in numbers]
        return _stored_frames(instance, numbers)
    except FrameUnavailable as exc:
        raise DicomWebError(404, f"frame not available: {exc}") from None


def _stored_frames(instance: Instance, numbers: list[int]) -> list[bytes]:
    """Frames of the stored encapsulated pixel data (PS3.5 §A.4), as they were received."""
    with get_storage().open(instance.object_key) as f:
        ds = pydicom.dcmread(f, specific_tags=[Tag("NumberOfFrames"), Tag(0x7FE00010)])
    data = ds.get("PixelData")
    if data is None:
        raise DicomWebError(404, "the instance has no pixel data")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        return [get_frame(data, n - 1, number_of_frames=count) for n in numbers]
    except Exception as exc:  # a damaged offset table or fragment
        raise DicomWebError(404, f"the stored frame cannot be read: {exc}") from None


async def bytes_parts(content_type: str, payloads: list[bytes], location: str = ""):
    for payload in payloads:
        yield content_type, location, _once(payload)


async def _once(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


def frames_body(boundary: str, content_type: str, payloads: list[bytes], location: str = ""):
    return multipart_stream(boundary, bytes_parts(content_type, payloads, location))


# Rendered


@dataclass
class Presentation:
    """The query parameters of a rendered resource (PS3.18 §8.3.5.1)."""

    fmt: str = "jpeg"
    quality: int = 90
    window: tuple[float, float, str] | None = None
    viewport: tuple[int, int] | None = None
    region: tuple[int, int, int, int] | None = None  # sx, sy, sw, sh


def rendered_type(ranges: list[MediaRange]) -> str:
    if not ranges:
        return "image/jpeg"
    for media in ranges:
        if media.q == 0:
            continue
        if media.type in RENDERED_TYPES:
            return media.type
        if media.type in ("*/*", "image/*"):
            return "image/jpeg"
    raise DicomWebError(406, "rendered images are available as image/jpeg or image/png")


def parse_presentation(params, media_type: str) -> Presentation:
    result = Presentation(fmt=RENDERED_TYPES[media_type])
    if "quality" in params:
        result.quality = _int_in("quality", params["quality"], 1, 100)
    if "window" in params:
        result.window = _window(params["window"])
    if "viewport" in params:
        result.viewport, result.region = _viewport(params["viewport"])
    return result


def _window(text: str) -> tuple[float, float, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise DicomWebError(400, "window is center,width[,function]")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise DicomWebError(400, "window center and width must be numbers") from None
    function = parts[2].upper().replace("-", "_") if len(parts) == 3 else "LINEAR"
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID") or not width > 0:
        raise DicomWebError(400, "window function is linear, linear-exact or sigmoid; width > 0")
    if not all(abs(v) < 1e9 for v in (center, width)):
        raise DicomWebError(400, "window values out of range")
    return center, width, function


def _viewport(text: str) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 6):
        raise DicomWebError(400, "viewport is vw,vh or vw,vh,sx,sy,sw,sh")
    size = (
        _int_in("viewport width", parts[0], 1, 4096),
        _int_in("viewport height", parts[1], 1, 4096),
    )
    if len(parts) == 2:
        return size, None
    sx, sy = (_int_in("viewport sx", v, 0, 65535) for v in parts[2:4])
    sw, sh = (_int_in("viewport sw", v, 1, 65535) for v in parts[4:6])
    return size, (sx, sy, sw, sh)


def _int_in(name: str, text: str, low: int, high: int) -> int:
    text = text.strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise DicomWebError(400, f"{name} must be a whole number from {low} to {high}")
    return int(text)


def rendered(
    instance: Instance, number: int, presentation: Presentation, *, max_size=None
) -> bytes:
    """Frame `number` (1-based) as an 8-bit image: the presentation's window, else the
    file's first window, else one computed from the pixels."""
    if not instance.viewable:
        raise DicomWebError(404, f"the instance cannot be shown: {instance.not_viewable_reason}")
    try:
        frame = frame_array(instance, number - 1)
        layout = frame_layout(instance)
    except FrameUnavailable as exc:
        raise DicomWebError(404, f"frame not available: {exc}") from None
    if presentation.region is not None:
        sx, sy, sw, sh = presentation.region
        frame = frame[sy : sy + sh, sx : sx + sw]
        if frame.size == 0:
            raise DicomWebError(400, "the viewport region lies outside the image")
    center, width, function = presentation.window or (
        _first(instance.window_center),
        _first(instance.window_width),
        instance.voi_lut_function or "LINEAR",
    )
    return render(
        frame,
        layout,
        rescale_slope=instance.rescale_slope if instance.rescale_slope is not None else 1.0,
        rescale_intercept=instance.rescale_intercept or 0.0,
        window_center=center,
        window_width=width,
        voi_lut_function=function
        if function in ("LINEAR", "LINEAR_EXACT", "SIGMOID")
        else "LINEAR",
        max_size=max_size,
        viewport=presentation.viewport,
        fmt=presentation.fmt,
        quality=presentation.quality,
    )


async def rendered_parts(instances: list[Instance], presentation: Presentation, media_type: str):
    for instance in instances:
        image = await asyncio.to_thread(rendered, instance, 1, presentation)
        yield media_type, "", _once(image)


def stored_thumbnail(series: Series) -> bytes:
    return get_storage().read(series.thumbnail_key)


def middle_instance(series: Series) -> Instance:
    """The instance the prepared thumbnail shows: the middle of the viewable slices."""
    viewable = Instance.objects.filter(series=series, viewable=True).defer("dicom_json")
    count = viewable.count()
    if not count:
        raise DicomWebError(404, "nothing in the series can be shown as an image")
    return viewable.order_by("slice_index", "instance_number", "pk")[count // 2]


def _first(values) -> float | None:
    if not values:
        return None
    try:
        return float(values[0])
    except (TypeError, ValueError):
        return None


# Bulk data


MAX_BULK_DEPTH = 8  # sequences nested in a BulkDataURI's path


def bulkdata(instance: Instance, path_text: str) -> tuple[bytes, str]:
    """An element's value as bytes (§10.4.1.1.5, the targets of the BulkDataURIs in the
    metadata) with its part's content type. `path_text` is a tag, or sequence tag / item
    number / tag, as often as nested (backend/archive/dicomjson.py writes them); the
    instance's own pixel data leaves uncompressed, other values as stored."""
    path = _bulk_path(path_text)
    if path == [Tag(0x7FE00010)]:
        frames = [
            frame_payloads(instance, [n], FramePlan("", False))[0]
            for n in range(1, instance.number_of_frames + 1)
        ]
        return b"".join(
            frames
        ), f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
    with get_storage().open(instance.object_key) as f:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    dataset = ds
    for sequence, number in zip(path[:-1:2], path[1::2], strict=True):
        element = dataset.get(sequence)
        if element is None or element.VR != "SQ" or number >= len(element.value):
            raise DicomWebError(404, f"no bulk data at {path_text}")
        dataset = element.value[number]
    element = dataset.get(path[-1])
    if element is None or not isinstance(element.value, bytes | bytearray):
        raise DicomWebError(404, f"no bulk data at {path_text}")
    return bytes(element.value), f"application/octet-stream; transfer-syntax={syntax}"


def _bulk_path(text: str) -> list[int]:
    """ "00880200/0/7FE00010" -> [Tag, item number, Tag]; 400 for anything else."""
    parts = text.split("/")
    if len(parts) % 2 == 0 or len(parts) > 2 * MAX_BULK_DEPTH + 1:
        raise DicomWebError(400, f"{text[:60]!r} is not a bulk data path")
    path: list[int] = []
    for position, part in enumerate(parts):
        if position % 2:  # an item number
            if not (part.isascii() and part.isdigit()) or len(part) > 6:
                raise DicomWebError(400, f"{part[:20]!r} is not an item number")
            path.append(int(part))
        elif len(part) != 8 or not all(c in "0123456789abcdefABCDEF" for c in part):
            raise DicomWebError(400, f"{part[:20]!r} is not a tag (8 hexadecimal digits)")
        else:
            path.append(Tag(int(part, 16)))
    return path


def encoded_or_stored(item: OutgoingInstance) -> bytes:
    if item.as_stored:
        return get_storage().read(item.instance.object_key)
    return encoded_as(item.instance, item.transfer_syntax)


def uri_presentation(params, media_type: str) -> Presentation:
    """WADO-URI's rendering parameters (PS3.18 §9.1.2.1): windowCenter and windowWidth
    together, rows and columns as the largest output size, imageQuality."""
    result = Presentation(fmt=RENDERED_TYPES[media_type])
    if "imageQuality" in params:
        result.quality = _int_in("imageQuality", params["imageQuality"], 1, 100)
    if ("windowCenter" in params) != ("windowWidth" in params):
        raise DicomWebError(400, "windowCenter and windowWidth go together")
    if "windowCenter" in params:
        result.window = _window(f"{params['windowCenter']},{params['windowWidth']}")
    if "rows" in params or "columns" in params:
        rows = _int_in("rows", params.get("rows", "4096"), 1, 4096)
        columns = _int_in("columns", params.get("columns", "4096"), 1, 4096)
        result.viewport = (columns, rows)
    return result
