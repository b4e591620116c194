"""Strict reading and validation of DICOM Part 10 files.

`read_dicom` parses the header of a file completely (every value converted, so defects
surface at ingest rather than when a viewer asks for them) but never loads Pixel Data:
it only records where the Pixel Data value lives so that `backend.imaging.pixels` can
serve or decode it later.

Imports no Django: this module is shared by the DICOM receiver, STOW-RS and the workers.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import struct
import threading
import warnings
from collections.abc import Iterator, MutableSequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Generic, TypeVar, cast

import pydicom
from pydicom import config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.hooks import hooks
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    PrivateTransferSyntaxes,
)
from pydicom.valuerep import AMBIGUOUS_VR, EXPLICIT_VR_LENGTH_32, VR, PersonName

# (7FE0,0008) Float Pixel Data, (7FE0,0009) Double Float Pixel Data, (7FE0,0010) Pixel Data.
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})

# The identifying attributes every instance must have so the archive can file it
# (PS3.3 C.12.1 SOP Common, C.7.2.1 General Study, C.7.3.1 General Series).
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")

# PS3.5 §9.1: a UID is dot-separated numeric components, at most 64 characters.
_UID_SYNTAX = re.compile(r"[0-9]+(\.[0-9]+)*")
_UID_LEADING_ZERO = re.compile(r"(^|\.)0[0-9]")
_UNDEFINED_LENGTH = 0xFFFFFFFF
# Explicit VRs Pixel Data may have (PS3.5 §8.2; UN when a writer did not know better).
_PIXEL_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"UN"})
# Converted values kept for reuse (see Conversions), and the longest value worth keeping.
_REUSE_ENTRIES = 8192
_REUSE_MAX_BYTES = 1024


T = TypeVar("T")


class InvalidDicom(Exception):
    """The file cannot be indexed at all (it will be quarantined).

    str(exc) is a short human reason."""


@dataclass(frozen=True)
class Limits:
    """Resource bounds applied to every file, so a hostile file cannot exhaust a worker."""

    max_header_elements: int = 100_000
    max_sequence_depth: int = 12
    max_pixel_bytes: int = 1 << 30  # decoded size of all frames
    max_frames: int = 10_000


@dataclass
class ParsedFile:
    """A validated header plus where its Pixel Data value is; Pixel Data itself is not loaded."""

    dataset: pydicom.Dataset
    transfer_syntax_uid: str
    pixel_data_offset: int | None
    pixel_data_length: int | None
    has_pixel_data: bool
    warnings: list[str] = field(default_factory=list)
    # Tag of the pixel element found: Pixel Data, Float Pixel Data or Double Float Pixel Data.
    pixel_data_tag: int | None = None
    # File offset of that element's tag, so decode_pixels can read it without re-parsing the
    # header; None for deflated files, where no offset into the stream exists.
    pixel_element_offset: int | None = None
    # Top-level tag -> the key its value was converted under (Conversions), for values that
    # converted without a warning: the same key, the same converted value, so whatever is
    # made of the value alone can be kept by key too (dicomjson.metadata_json does).
    value_keys: dict[int, tuple] = field(default_factory=dict)


@dataclass
class _PixelElement:
    tag: int
    start: int | None  # of the element's tag
    offset: int | None  # of the value; None when encapsulated
    length: int | None  # declared; None when undefined (encapsulated)


def read_dicom(path: str | os.PathLike, limits: Limits = Limits()) -> ParsedFile:  # noqa: B008
    """Read and validate the header of the DICOM Part 10 file at `path`.

    Raises InvalidDicom when the file cannot be indexed: not Part 10, no Transfer Syntax,
    a truncated or structurally broken header, a resource limit exceeded, or a missing or
    malformed identifying UID. Non-fatal defects are returned in `ParsedFile.warnings`.
    """
    collected: list[str] = []
    try:
        # pydicom reports value defects (bad numbers, unknown charsets, EOF inside a
        # sequence) as warnings rather than exceptions; record them so they become our
        # defect list instead of log noise. catch_warnings is process-global, which is
        # fine because ingest runs one file at a time per worker process.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parsed = _read(path, limits, collected, caught)
    except InvalidDicom:
        raise
    except (MemoryError, RecursionError) as exc:
        raise InvalidDicom(
            f"header too large or too deeply nested ({type(exc).__name__})"
        ) from None
    except (InvalidDicomError, EOFError, OSError, ValueError, struct.error) as exc:
        raise InvalidDicom(_short(exc)) from None
    except Exception as exc:  # pydicom raises many types on garbage; all mean "unreadable"
        raise InvalidDicom(f"unreadable header: {type(exc).__name__}: {_short(exc)}") from None
    return parsed


def _read(
    path: str | os.PathLike,
    limits: Limits,
    defects: list[str],
    caught: list[warnings.WarningMessage],
) -> ParsedFile:
    with open(path, "rb") as fp:
        file_size = os.fstat(fp.fileno()).st_size
        if file_size < 132:
            raise InvalidDicom("not a DICOM Part 10 file: shorter than preamble and 'DICM'")
        # PS3.10 §7.1: a Part 10 file is a 128-byte preamble, "DICM", then File Meta.
        fp.seek(128)
        if fp.read(4) != b"DICM":
            raise InvalidDicom("not a DICOM Part 10 file: no 'DICM' prefix after the preamble")
        fp.seek(0)
        value_keys: dict[int, tuple] = {}
        if (read := _read_little_endian(fp, limits, value_keys, caught)) is not None:
            ds, pixel = read
            transfer_syntax_uid = _transfer_syntax(ds)
        else:
            fp.seek(0)
            value_keys.clear()
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
            transfer_syntax_uid = _transfer_syntax(ds)
            if transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
                pixel = _deflated_pixel_element(path)
            else:
                pixel = _pixel_element_at(fp, transfer_syntax_uid)
                _check_trailing(fp, pixel, file_size)
    defects.extend(_check_parse_warnings(caught))
    _check_elements(ds, limits, defects, caught, value_keys)
    defects.extend(_check_file_meta(ds))
    defects.extend(_check_uids(ds))
    if pixel is not None and pixel.length is not None and pixel.offset is not None:
        available = max(0, file_size - pixel.offset)
        if available < pixel.length:
            defects.append(
                f"Pixel Data value truncated: {available} of {pixel.length} bytes present"
            )
            pixel.length = available
    return ParsedFile(
        dataset=ds,
        transfer_syntax_uid=transfer_syntax_uid,
        pixel_data_offset=pixel.offset if pixel else None,
        pixel_data_length=pixel.length if pixel else None,
        has_pixel_data=pixel is not None,
        warnings=defects,
        pixel_data_tag=pixel.tag if pixel else None,
        pixel_element_offset=pixel.start if pixel else None,
        value_keys=value_keys,
    )


# What _read_little_endian reads itself: File Meta Information, then the top level of a
# Little Endian data set, each element whole within the file and of a defined length, in
# ascending order of tags.
_IMPLICIT_HEADER = struct.Struct("<HHL")  # group, element, 32-bit length
_EXPLICIT_HEADER = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length
_LENGTH_32 = struct.Struct("<L")
_VR_CODES = {str(vr).encode(): str(vr) for vr in VR}  # as pydicom decodes a known VR
_LONG_VRS = frozenset(EXPLICIT_VR_LENGTH_32)
_NOT_PLAIN_SYNTAXES = frozenset(
    {ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian, *PrivateTransferSyntaxes}
)
_READ_AHEAD = 1 << 16
_CHARACTER_SET = 0x00080005
_PREAMBLE = 132  # bytes: the preamble and "DICM" (PS3.10 §7.1)
_pydicom_log = logging.getLogger("pydicom")

# An element as _scan finds it: tag, VR (None in Implicit VR), length, value's offset.
_Entry = tuple[int, str | None, int, int]


def _empty(vr: str | None) -> bytes | None:
    """The value data_element_generator gives an element of length 0."""
    return cast(bytes | None, empty_value_for_VR(vr, raw=True))


def _read_little_endian(
    fp: BinaryIO,
    limits: Limits,
    value_keys: dict[int, tuple],
    caught: list[warnings.WarningMessage],
) -> tuple[FileDataset, _PixelElement | None] | None:
    """What pydicom.dcmread(fp, stop_before_pixels=True) reads, and the Pixel Data
    element, for a file whose data set is plain Little Endian (Implicit VR, Explicit VR,
    or an encapsulated syntax); or None, leaving the file to dcmread.

    dcmread reads an element at a time through a generator, and _check_elements then
    looks each up among earlier files' conversions: together most of the cost of
    indexing a slice. Here the File Meta Information and the data set's top level are
    read from one buffer, and a value converted before (Conversions) goes straight into
    its data set (its key into `value_keys` for the data set's); the others stay raw
    elements, made as pydicom makes them, for _check_elements to convert. Anything else
    (a command set, a VR pydicom would not know, an undefined length, an element cut
    short or out of order, a data set or File Meta Information not encoded as it should
    be) is left to dcmread, whose handling and warnings the reader keeps.
    """
    preamble = fp.read(128)
    fp.read(4)  # "DICM": the caller checked it
    data = fp.read(_READ_AHEAD)
    # The File Meta Information, as filereader._read_file_meta_info reads it: Explicit
    # VR Little Endian (pydicom warns and reads it the other way if it is not).
    if len(data) < 8 or not _explicit_at(data, 0):
        return None
    scanned = _scan(fp, data, 0, False, True, limits)
    if scanned is None:
        return None
    meta_entries, data, start, _ = scanned
    if not meta_entries:
        return None
    file_meta = _file_meta(meta_entries, data, caught)
    if file_meta is None:
        return None
    syntax = file_meta.get("TransferSyntaxUID")
    if syntax is None or syntax in _NOT_PLAIN_SYNTAXES:
        return None
    implicit = syntax == ImplicitVRLittleEndian
    # pydicom warns and reads the other way when the first element is not encoded as
    # the syntax says (filereader._is_implicit_vr).
    if len(data) - start < 8 or _explicit_at(data, start) == implicit:
        return None
    scanned = _scan(fp, data, start, implicit, False, limits)
    if scanned is None:
        return None
    entries, data, _, pixel_at = scanned

    # The data set's character set, as filereader.read_dataset finds it.
    encoding: str | MutableSequence[str] = default_encoding
    found_charset = next((entry for entry in entries if entry[0] == _CHARACTER_SET), None)
    charset = _raw(found_charset, data, implicit) if found_charset is not None else None
    if charset is not None:
        encoding = convert_encodings(convert_raw_data_element(charset).value)
    reuse = _CONVERSIONS.for_encoding(encoding)
    elements = _elements_of(entries, data, implicit, reuse, value_keys)
    # As read_partial makes it (read_dataset's Dataset would only be copied from).
    ds = FileDataset(fp, elements, preamble, file_meta, implicit, True)
    before = len(caught)
    ds.set_original_encoding(implicit, True, ds._character_set)
    if reuse is not None:
        # Conversions are reused under the character set _check_elements finds (the
        # same, as read_partial sets it; should that change, read the file as before).
        found = _CONVERSIONS.for_dataset(ds)
        if found is None or found.context != reuse.context:
            return None
        if charset is not None and len(caught) == before:
            # Converted by _character_set just now, without a warning: kept for the next.
            _keep_converted(ds, charset, reuse, value_keys)
    pixel = None
    if pixel_at is not None:
        fp.seek(_PREAMBLE + pixel_at)
        pixel = _pixel_element_at(fp, str(syntax))
    return ds, pixel


def _explicit_at(data: bytes, pos: int) -> bool:
    """Whether the element at `pos` looks Explicit VR (filereader._is_implicit_vr)."""
    return 0x40 < data[pos + 4] < 0x5B and 0x40 < data[pos + 5] < 0x5B


def _scan(
    fp: BinaryIO, data: bytes, pos: int, implicit: bool, meta: bool, limits: Limits
) -> tuple[list[_Entry], bytes, int, int | None] | None:
    """The elements from `pos` of `data` (the file from _PREAMBLE on; read further from
    `fp` as needed): of the File Meta Information (`meta`), until the first element of
    another group; or of the data set, until Pixel Data or the end of the file. Returns
    the elements, the data read, where the scan stopped and where a Pixel Data element
    starts (or None); None if the file is not plain (see _read_little_endian)."""
    last = -1
    entries: list[_Entry] = []
    size = len(data)
    pixel_at = None
    while True:
        if size - pos < 12 and (more := fp.read(_READ_AHEAD)):
            data += more
            size = len(data)
        left = size - pos
        if left == 0:
            if meta:
                return None  # no data set: dcmread's way
            break  # the data set ends with the file
        if left < 8:
            return None
        vr: str | None
        if implicit:
            group, element, length = _IMPLICIT_HEADER.unpack_from(data, pos)
            vr, value_at = None, pos + 8
        else:
            group, element, code, length = _EXPLICIT_HEADER.unpack_from(data, pos)
            if meta and group != 2:
                break
            vr, value_at = _VR_CODES.get(code), pos + 8
            if vr is None:
                return None
            if vr in _LONG_VRS:
                if left < 12:
                    return None
                (length,) = _LENGTH_32.unpack_from(data, pos + 8)
                value_at = pos + 12
        tag = group << 16 | element
        if not meta:
            if tag in PIXEL_DATA_TAGS:
                pixel_at = pos
                break
            if group in (0, 2):
                return None
        if tag <= last or group == 0xFFFE or length == _UNDEFINED_LENGTH:
            return None
        end = value_at + length
        while end > size and (more := fp.read(max(end - size, size, _READ_AHEAD))):
            data += more  # a long value: doubling, so a large header is read in few steps
            size = len(data)
        if end > size:
            return None
        entries.append((tag, vr, length, value_at))
        if not meta and len(entries) > limits.max_header_elements:
            raise InvalidDicom(f"more than {limits.max_header_elements} header elements")
        last, pos = tag, end
    return entries, data, pos, pixel_at


def _raw(entry: _Entry, data: bytes, implicit: bool) -> RawDataElement:
    """The element as filereader.data_element_generator yields it."""
    tag, vr, length, at = entry
    value = data[at : at + length] if length else _empty(vr)
    return RawDataElement(BaseTag(tag), vr, length, value, _PREAMBLE + at, implicit, True)


def _elements_of(
    entries: list[_Entry],
    data: bytes,
    implicit: bool,
    reuse: _Reuse | None,
    value_keys: dict[int, tuple] | None,
) -> dict[BaseTag, RawDataElement | DataElement]:
    """A data set's elements: raw, but for the values converted before, whose keys go
    into `value_keys`. A reused element's tag is the very key it has in the data set,
    so _check_elements finds it among `value_keys` by identity."""
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    context = reuse.context if reuse is not None else None
    kept = _CONVERSIONS.kept
    for tag, vr, length, at in entries:
        value = data[at : at + length] if length else _empty(vr)
        name = BaseTag(tag)
        key = _value_key(tag, vr, value, length, True, context) if context else None
        if key is not None and (elem := kept(name, _PREAMBLE + at, key)) is not None:
            elements[name] = elem
            if value_keys is not None:
                value_keys[name] = key
        else:
            elements[name] = RawDataElement(name, vr, length, value, _PREAMBLE + at, implicit, True)
    return elements


def _file_meta(
    entries: list[_Entry], data: bytes, caught: list[warnings.WarningMessage]
) -> FileMetaDataset | None:
    """The File Meta Information as filereader._read_file_meta_info makes it, with
    values converted before reused; the others are converted now and kept, unless
    converting one warns or fails (then it stays raw, for whatever reads it to convert
    and warn as with dcmread). None if its first element does not convert."""
    reuse = _CONVERSIONS.for_encoding(default_encoding)
    file_meta = FileMetaDataset(_elements_of(entries, data, False, reuse, None))
    file_meta.set_original_encoding(
        is_implicit_vr=False, is_little_endian=True, character_encoding=default_encoding
    )
    first = entries[0][0]
    for entry in entries:
        raw = file_meta._dict[BaseTag(entry[0])]
        if isinstance(raw, DataElement):
            continue
        # _read_file_meta_info converts the first element and the group length itself:
        # their failures and warnings are the reading's. Others are converted only by
        # whatever reads them later: if that fails or warns, leave it to them.
        read_anyway = raw.tag in (first, 0x00020000)
        before = len(caught)
        try:
            converted = file_meta[raw.tag]
        except Exception:
            if read_anyway:
                return None  # dcmread's way: an error, or the first read again as Implicit VR
            file_meta._dict[raw.tag] = raw
            continue
        if len(caught) != before:
            if not read_anyway:
                del caught[before:]
                file_meta._dict[raw.tag] = raw
            continue
        key = reuse.key(raw) if reuse is not None else None
        if key is not None:
            _CONVERSIONS.keep(key, converted)
    end = entries[-1][3] + entries[-1][2]
    if 0x00020000 in file_meta._dict:  # as _read_file_meta_info checks it
        declared = file_meta.FileMetaInformationGroupLength
        actual = end - 12
        if declared != actual:
            _pydicom_log.info(
                "_read_file_meta_info: (0002,0000) 'File Meta Information Group Length' "
                f"value doesn't match the actual File Meta Information length "
                f"({declared} vs {actual} bytes)"
            )
    return file_meta


def _keep_converted(
    ds: FileDataset, raw: RawDataElement, reuse: _Reuse, value_keys: dict[int, tuple]
) -> None:
    """Keep the conversion of an element that reading the data set converted (Specific
    Character Set, from `raw`), as _check_elements keeps the others'."""
    elem = ds._dict.get(raw.tag)
    key = reuse.key(raw)
    if key is not None and isinstance(elem, DataElement) and raw.tag not in value_keys:
        _CONVERSIONS.keep(key, elem)
        value_keys[raw.tag] = key


def _transfer_syntax(ds: pydicom.Dataset) -> str:
    """Return (0002,0010) TransferSyntaxUID, required by PS3.10 §7.1."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if not uid:
        raise InvalidDicom("File Meta Information lacks (0002,0010) TransferSyntaxUID")
    uid = str(uid)
    if not _UID_SYNTAX.fullmatch(uid) or len(uid) > 64:
        raise InvalidDicom(f"malformed TransferSyntaxUID {uid[:70]!r}")
    return uid


def _pixel_element_at(fp: BinaryIO, transfer_syntax_uid: str) -> _PixelElement | None:
    """Parse the element header where dcmread(stop_before_pixels=True) left the file.

    pydicom rewinds to the start of the Pixel Data element when it stops (PS3.5 §7.1:
    tag, [VR, reserved], 32-bit length for OB/OW/OF/OD), so the value offset is computed
    without reading the value itself.
    """
    start = fp.tell()
    header = fp.read(12)
    if len(header) < 8:
        return None
    big_endian = transfer_syntax_uid == ExplicitVRBigEndian
    group, element = struct.unpack(">HH" if big_endian else "<HH", header[:4])
    tag = group << 16 | element
    if tag not in PIXEL_DATA_TAGS:
        return None
    # Decide from the bytes, not the Transfer Syntax: some writers put an implicit VR data
    # set under an explicit VR syntax, and pydicom (rightly) reads what is there.
    if header[4:6] in _PIXEL_VRS and header[6:8] == b"\0\0":
        if len(header) < 12:
            raise InvalidDicom("file truncated inside the Pixel Data element header")
        (length,) = struct.unpack(">L" if big_endian else "<L", header[8:12])
        value_offset = start + 12
    else:
        (length,) = struct.unpack(">L" if big_endian else "<L", header[4:8])
        value_offset = start + 8
    if length == _UNDEFINED_LENGTH:
        return _PixelElement(tag, start, None, None)  # encapsulated, PS3.5 §A.4
    return _PixelElement(tag, start, value_offset, length)


def _deflated_pixel_element(path: str | os.PathLike) -> _PixelElement | None:
    """Find the pixel element of a Deflated Explicit VR Little Endian file (PS3.5 §A.5).

    The whole data set is zlib-compressed, so there is no usable file offset; decode_pixels
    inflates the file again when asked for pixels.
    """
    full = pydicom.dcmread(path, specific_tags=sorted(PIXEL_DATA_TAGS))
    for tag in sorted(PIXEL_DATA_TAGS, reverse=True):
        if tag in full:
            return _PixelElement(tag, None, None, None)
    return None


def _check_trailing(fp: BinaryIO, pixel: _PixelElement | None, file_size: int) -> None:
    """Refuse a file that ends inside an element header, which pydicom silently ignores."""
    if pixel is not None:
        return
    leftover = file_size - fp.tell()
    if 0 < leftover < 12:
        raise InvalidDicom(f"file truncated: {leftover} stray bytes after the last element")


def _check_parse_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """Return parse-time warnings; a file ending inside a sequence, which pydicom only
    warns about, is fatal for us."""
    messages = _pydicom_warnings(caught)
    caught.clear()
    for text in messages:
        if "end of file" in text.lower():
            raise InvalidDicom(f"file truncated: {_short(Exception(text))}")
    return messages


def _check_elements(
    ds: pydicom.Dataset,
    limits: Limits,
    defects: list[str],
    caught: list[warnings.WarningMessage],
    value_keys: dict[int, tuple],
) -> None:
    """Convert every element value, iteratively, enforcing the element and depth limits.

    Sequences of defined length are only parsed by pydicom when first accessed, so walking
    breadth-first with an explicit stack lets us refuse deep nesting before parsing it.
    Adds the top-level values' Conversions keys to `value_keys` (ParsedFile.value_keys).
    The values it has already (reused by _read_little_endian) are only counted: a value
    converted before without a warning is no sequence, and not UN.
    """
    count = len(value_keys)
    un_with_known_vr: list[str] = []
    # The top level's values may be reused from earlier files (Conversions); a sequence
    # item's character set and private creators can differ from its parent's, so not
    # theirs.
    reuse = _CONVERSIONS.for_dataset(ds)
    stack: list[tuple[pydicom.Dataset, int, str]] = [(ds, 0, "")]
    while stack:
        dataset, depth, where = stack.pop()
        top = depth == 0
        for tag, vr, elem in _elements(
            dataset, where, reuse if top else None, caught, value_keys if top else None
        ):
            count += 1
            if count > limits.max_header_elements:
                raise InvalidDicom(f"more than {limits.max_header_elements} header elements")
            if vr == "UN" and elem.VR != "UN":
                un_with_known_vr.append(f"{where}{_tag_name(tag)}")
            if isinstance(elem.value, Sequence):
                name = f"{where}{_tag_name(tag)}"
                if elem.value and depth + 1 > limits.max_sequence_depth:
                    raise InvalidDicom(
                        f"sequences nested deeper than {limits.max_sequence_depth} levels at {name}"
                    )
                stack.extend((item, depth + 1, f"{name}>") for item in elem.value)
            # Values are converted on first access, so any warning now is about this element
            # (its name is looked up only then: most elements have none).
            if caught:
                name = f"{where}{_tag_name(tag)}"
                defects.extend(f"{name}: {text}" for text in _pydicom_warnings(caught))
                caught.clear()
    if un_with_known_vr:
        # PS3.5 §6.2.2: UN is for unknown attributes; pydicom uses the dictionary VR instead.
        defects.append(
            f"{len(un_with_known_vr)} elements encoded as UN despite a known VR, "
            f"e.g. {un_with_known_vr[0]}"
        )


def _elements(
    dataset: pydicom.Dataset,
    where: str,
    reuse: _Reuse | None,
    caught: list[warnings.WarningMessage],
    value_keys: dict[int, tuple] | None,
) -> Iterator[tuple[int, str | None, DataElement]]:
    """Yield (tag, VR as encoded (None in Implicit VR), converted element); a conversion
    failure is InvalidDicom. `reuse`: earlier files' conversions, or None; `value_keys`
    gets the key of each value reused or kept."""
    # items(), not get_item() per tag: dcmread defers no values here, so the two are the same.
    for tag, raw in list(dataset.items()):
        if tag in PIXEL_DATA_TAGS:
            continue
        if isinstance(raw, DataElement):
            if value_keys is not None and tag in value_keys:
                continue  # reused by _read_little_endian (and counted)
            yield tag, raw.VR, raw  # converted by dcmread already (Specific Character Set)
            continue
        if _is_short(raw):
            raise InvalidDicom(
                f"file truncated in {where}{_tag_name(tag)}: "
                f"{len(raw.value or b'')} of {raw.length} bytes present"
            )
        key = reuse.key(raw) if reuse is not None else None
        if key is not None and (elem := _CONVERSIONS.reuse(dataset, raw, key)) is not None:
            if value_keys is not None:
                value_keys[tag] = key
            yield tag, raw.VR, elem
            continue
        try:
            elem = dataset[tag]
            if elem.VR == VR.PN:
                _force(elem.value)
        except (InvalidDicom, MemoryError, RecursionError):
            raise
        except Exception as exc:
            raise InvalidDicom(f"unreadable {where}{_tag_name(tag)}: {_short(exc)}") from None
        if key is not None and not caught:
            # Only a conversion that warned of nothing: a reused one warns of nothing.
            _CONVERSIONS.keep(key, elem)
            if value_keys is not None:
                value_keys[tag] = key
        yield tag, raw.VR, elem


class Conversions:
    """Header values converted from earlier files, by everything the conversion depends on.

    A series' files repeat most of their header: 93 % of the raw elements of the 275 slices
    of a CT are byte for byte the same as in an earlier slice, and pydicom's conversion is
    most of the cost of reading a header. A value is reused only where pydicom's result
    depends on nothing else: a public tag whose VR is written in the file (not UN) or found
    in the dictionary (not ambiguous, such as US or SS), not a sequence, under the same
    character set, byte order and pydicom settings, with pydicom's own conversion hooks,
    and only if converting it raised no warning. Values are shared between data sets but
    for lists, which are copied; nothing that reads a header changes it.
    """

    def __init__(self, entries: int = _REUSE_ENTRIES):
        self._kept = Bounded[dict[str, Any]](entries)  # key -> a DataElement's attributes
        self._default_hooks = (hooks.raw_element_vr, hooks.raw_element_value)

    def for_dataset(self, ds: pydicom.Dataset) -> _Reuse | None:
        return self.for_encoding(ds.original_character_set or ds._character_set)

    def for_encoding(self, encoding: str | MutableSequence[str]) -> _Reuse | None:
        """The keys for a data set of this character set; None if values must not be
        reused (pydicom's conversion changed by callbacks or hooks)."""
        if (
            config.data_element_callback is not None
            or hooks.raw_element_kwargs
            or (hooks.raw_element_vr, hooks.raw_element_value) != self._default_hooks
        ):
            return None
        return _Reuse(
            (
                tuple(encoding) if isinstance(encoding, list) else encoding,
                config.settings.reading_validation_mode,
                config.use_DS_decimal,
                config.use_DS_numpy,
                config.use_IS_numpy,
                config.convert_wrong_length_to_UN,
                config.replace_un_with_known_vr,
            )
        )

    def reuse(
        self, dataset: pydicom.Dataset, raw: RawDataElement, key: tuple
    ) -> DataElement | None:
        elem = self.kept(raw.tag, raw.value_tell, key)
        if elem is not None:
            # What Dataset.__getitem__ stores after converting: nothing else applies to a
            # public, non-sequence element of a known VR.
            dataset._dict[raw.tag] = elem
        return elem

    def kept(self, tag: BaseTag, file_tell: int | None, key: tuple) -> DataElement | None:
        """The element converting the raw element of this key gives, if one was kept
        (with the raw element's tag and value position)."""
        kept = self._kept.get(key)
        if kept is None:
            return None
        # The element DataElement(tag, VR, value, value_tell, already_converted=True)
        # would make: the kept one's attributes, without running __init__ per element.
        attributes = dict(kept)
        attributes["tag"] = tag
        attributes["file_tell"] = file_tell
        value = attributes["_value"]
        if type(value) is MultiValue:
            attributes["_value"] = _copied(value)
        elem = object.__new__(DataElement)
        elem.__dict__ = attributes
        return elem

    def keep(self, key: tuple, elem: DataElement) -> None:
        value = elem.value
        kept = DataElement(elem.tag, elem.VR, value, already_converted=True)
        if type(value) is MultiValue:
            kept._value = _copied(value)
        self._kept.put(key, kept.__dict__)


class Bounded(Generic[T]):
    """At most `entries` values by key, the oldest dropped first; shared between threads."""

    def __init__(self, entries: int):
        self.entries = entries
        self._values: dict[tuple, T] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: tuple) -> T | None:
        return self._values.get(key)

    def put(self, key: tuple, value: T) -> None:
        with self._lock:
            if len(self._values) >= self.entries:
                del self._values[next(iter(self._values))]  # the oldest
            self._values[key] = value


class _Reuse:
    """Conversions' keys for one data set's elements."""

    def __init__(self, context: tuple):
        self.context = context

    def key(self, raw: RawDataElement) -> tuple | None:
        return _value_key(
            raw.tag, raw.VR, raw.value, raw.length, raw.is_little_endian, self.context
        )


def _value_key(
    tag: int, vr: str | None, value: bytes | None, length: int, little_endian: bool, context
) -> tuple | None:
    """The Conversions key of a raw element (as read: VR None in Implicit VR), or None if
    its value is not to be reused."""
    if (
        tag >> 16 & 1  # private: its VR can depend on the private creator
        or (len(value) > _REUSE_MAX_BYTES if value is not None else length)
        or length == _UNDEFINED_LENGTH
    ):
        return None
    found = vr
    if found is None:  # Implicit VR: pydicom takes it from the dictionary
        found = _dictionary_vr(int(tag))
        if found is None or found in AMBIGUOUS_VR:
            return None
    elif found == VR.UN:
        return None
    if found == VR.SQ:
        return None
    # The tag as an int: BaseTag compares in Python, an int in C.
    return (int(tag), vr, value, little_endian, context)


@functools.lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    """The VR pydicom gives an element of Implicit VR (a few µs per look-up uncached)."""
    try:
        return dictionary_VR(tag)
    except KeyError:  # pydicom's rule: a group length, or unknown (not reused)
        return VR.UL if tag & 0xFFFF == 0 else None


def _copied(value: MultiValue) -> MultiValue:
    """A MultiValue holding the same (immutable) items in a list of its own."""
    copy = MultiValue.__new__(MultiValue)
    copy.__dict__.update(value.__dict__)
    copy._list = list(value._list)
    return copy


_CONVERSIONS = Conversions()


def _is_short(raw: RawDataElement) -> bool:
    if raw.length == _UNDEFINED_LENGTH or raw.value is None:
        return False
    return len(raw.value) < raw.length


def _force(value: Any) -> None:
    """Finish decoding a converted value (PS3.5 §6.1 character sets for PN)."""
    # PersonName decodes its component groups lazily; str() decodes them now, with the
    # Specific Character Set of the enclosing data set.
    values = value if isinstance(value, MultiValue) else [value]
    for item in values:
        if isinstance(item, PersonName):
            str(item)


def _check_file_meta(ds: pydicom.Dataset) -> list[str]:
    """Compare File Meta Information (PS3.10 §7.1) with the data set; defects are benign."""
    meta = ds.file_meta
    defects = []
    for meta_keyword, keyword in (
        ("MediaStorageSOPClassUID", "SOPClassUID"),
        ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
    ):
        if meta_keyword not in meta:
            defects.append(f"File Meta Information lacks {meta_keyword}")
        elif keyword in ds and str(meta[meta_keyword].value) != str(ds[keyword].value):
            defects.append(f"{meta_keyword} differs from {keyword}")
    return defects


def _check_uids(ds: pydicom.Dataset) -> list[str]:
    """Require the identifying UIDs, syntactically valid per PS3.5 §9.1."""
    defects = []
    for keyword in REQUIRED_UIDS:
        value = ds.get(keyword)
        if value is None or str(value) == "":
            raise InvalidDicom(f"missing {keyword}")
        uid = str(value)
        if len(uid) > 64 or not _UID_SYNTAX.fullmatch(uid):
            raise InvalidDicom(f"malformed {keyword} {uid[:70]!r} (PS3.5 §9.1)")
        if _UID_LEADING_ZERO.search(uid):
            defects.append(f"{keyword} has a component with a leading zero (PS3.5 §9.1)")
    return defects


def _pydicom_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """Shorten pydicom's warnings (drop the boilerplate link to the standard), deduplicated."""
    messages: list[str] = []
    for warning in caught:
        text = str(warning.message).split(" Please see <", 1)[0].strip()
        if text and text not in messages:
            messages.append(text)
    return messages


def _tag_name(tag: int) -> str:
    keyword = pydicom.datadict.keyword_for_tag(tag)
    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return f"{text} {keyword}" if keyword else text


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).split("\n", 1)[0].strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
