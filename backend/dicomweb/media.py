"""Media types: reading Accept and Content-Type headers (RFC 9110 §12.5.1, PS3.18 §8.7),
writing multipart/related bodies as a stream and reading them back part by part."""

import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

CRLF = b"\r\n"
READ_SIZE = 1 << 16
MAX_PART_HEADER = 16 * 1024
# One media-range: a type, then parameters whose values may be quoted strings.
_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAMETER = re.compile(rf'\s*;\s*({_NAME})\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)')
_RANGE = re.compile(rf"\s*({_NAME}/{_NAME})")


class MediaTypeError(ValueError):
    """A header that cannot be read."""


@dataclass(frozen=True)
class MediaRange:
    type: str  # lower case, e.g. "multipart/related"
    params: dict[str, str] = field(default_factory=dict)  # names lower case
    q: float = 1.0

    def matches(self, media_type: str) -> bool:
        """Whether this range accepts `media_type` ("*/*", "image/*" or exact)."""
        if self.type == "*/*":
            return True
        main, _, sub = self.type.partition("/")
        wanted_main = media_type.split("/")[0]
        return self.type == media_type or (sub == "*" and main == wanted_main)


def parse_media_ranges(header: str) -> list[MediaRange]:
    """An Accept header's media ranges, best first (q descending, then as written)."""
    ranges = []
    position = 0
    header = header.strip()
    while position < len(header):
        match = _RANGE.match(header, position)
        if not match:
            raise MediaTypeError(f"cannot read media type at {header[position:][:40]!r}")
        position = match.end()
        params: dict[str, str] = {}
        while (param := _PARAMETER.match(header, position)) is not None:
            value = param[2]
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[param[1].lower()] = value
            position = param.end()
        ranges.append(MediaRange(match[1].lower(), params, _quality(params.pop("q", "1"))))
        position = _after_separator(header, position)
    return sorted(ranges, key=lambda r: -r.q)


def _quality(value: str) -> float:
    try:
        q = float(value)
    except ValueError:
        raise MediaTypeError(f"q={value[:10]!r} is not a number") from None
    if not 0 <= q <= 1:
        raise MediaTypeError("q must be between 0 and 1")
    return q


def _after_separator(header: str, position: int) -> int:
    rest = header[position:]
    stripped = rest.lstrip()
    if not stripped:
        return len(header)
    if not stripped.startswith(","):
        raise MediaTypeError(f"unexpected {stripped[:20]!r} in media type")
    return len(header) - len(stripped) + 1


def parse_content_type(header: str) -> MediaRange:
    ranges = parse_media_ranges(header)
    if len(ranges) != 1:
        raise MediaTypeError("Content-Type must name one media type")
    return ranges[0]


# Writing


def new_boundary() -> str:
    return "lightbox-" + secrets.token_hex(12)


def multipart_content_type(boundary: str, part_type: str, **params: str) -> str:
    extra = "".join(f"; {name}={value}" for name, value in params.items())
    return f'multipart/related; type="{part_type}"; boundary={boundary}{extra}'


def part_head(boundary: str, content_type: str, *, first: bool, location: str = "") -> bytes:
    """The delimiter and headers before one part's body (RFC 2046 §5.1.1)."""
    lines = [f"--{boundary}", f"Content-Type: {content_type}"]
    if location:
        lines.append(f"Content-Location: {location}")
    head = CRLF.join(line.encode() for line in lines) + CRLF + CRLF
    return head if first else CRLF + head


def closing(boundary: str, *, any_parts: bool) -> bytes:
    return (CRLF if any_parts else b"") + f"--{boundary}--".encode() + CRLF


async def multipart_stream(
    boundary: str, parts: AsyncIterator[tuple[str, str, AsyncIterator[bytes]]]
) -> AsyncIterator[bytes]:
    """A multipart/related body from (content type, location, body chunks) parts."""
    first = True
    async for content_type, location, chunks in parts:
        yield part_head(boundary, content_type, first=first, location=location)
        first = False
        async for chunk in chunks:
            yield chunk
    yield closing(boundary, any_parts=not first)


# Reading


class MultipartError(ValueError):
    """A body that is not the multipart/related it says it is."""


@dataclass
class Part:
    headers: dict[str, str]
    chunks: Iterator[bytes]

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def iter_parts(stream: BinaryIO, boundary: str) -> Iterator[Part]:
    """The parts of a multipart body read from `stream`, each body streamed in chunks.

    Each part's chunks must be consumed (or are skipped) before the next part is read.
    A body that ends before its closing delimiter raises MultipartError from the chunks of
    the part it cut, after the parts before it were read in full.
    """
    if not boundary or len(boundary) > 70:  # RFC 2046 §5.1.1
        raise MultipartError("the multipart boundary is missing or longer than 70 characters")
    reader = _Reader(stream, b"--" + boundary.encode("latin-1"))
    reader.skip_preamble()
    while not reader.finished:
        headers = reader.read_headers()
        part = Part(headers, reader.body())
        yield part
        for _ in part.chunks:  # whatever the consumer left
            pass


class _Reader:
    def __init__(self, stream: BinaryIO, delimiter: bytes):
        self.stream = stream
        self.delimiter = delimiter
        self.buffer = b""
        self.finished = False
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.stream.read(READ_SIZE)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def skip_preamble(self) -> None:
        while True:
            at = self.buffer.find(self.delimiter)
            if at >= 0 and (at == 0 or self.buffer[at - 2 : at] == CRLF):
                self.buffer = self.buffer[at + len(self.delimiter) :]
                self._after_delimiter()
                return
            if len(self.buffer) > MAX_PART_HEADER and at < 0:
                self.buffer = self.buffer[-len(self.delimiter) :]
            if not self._fill():
                raise MultipartError("the body holds no part with the given boundary")

    def _after_delimiter(self) -> None:
        """After "--boundary": "--" closes the body, else the rest of the line is padding."""
        while len(self.buffer) < 2 and self._fill():
            pass
        if self.buffer.startswith(b"--"):
            self.finished = True
            return
        while (end := self.buffer.find(CRLF)) < 0:
            if len(self.buffer) > MAX_PART_HEADER or not self._fill():
                raise MultipartError("a part delimiter line does not end")
        self.buffer = self.buffer[end + 2 :]

    def read_headers(self) -> dict[str, str]:
        while (end := self.buffer.find(CRLF + CRLF)) < 0 and not self.buffer.startswith(CRLF):
            if len(self.buffer) > MAX_PART_HEADER:
                raise MultipartError("a part's headers are too long")
            if not self._fill():
                raise MultipartError("the body ends inside a part's headers")
        if self.buffer.startswith(CRLF):  # a part with no headers
            self.buffer = self.buffer[2:]
            return {}
        raw, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
        headers = {}
        for line in raw.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if not colon:
                raise MultipartError(f"cannot read part header {line[:40]!r}")
            headers[name.strip().lower()] = value.strip()
        return headers

    def body(self) -> Iterator[bytes]:
        marker = CRLF + self.delimiter
        while True:
            at = self.buffer.find(marker)
            if at >= 0:
                chunk, self.buffer = self.buffer[:at], self.buffer[at + len(marker) :]
                if chunk:
                    yield chunk
                self._after_delimiter()
                return
            # Keep what could be the start of a delimiter split across reads.
            keep = len(marker) - 1
            if len(self.buffer) > keep:
                chunk, self.buffer = self.buffer[:-keep], self.buffer[-keep:]
                yield chunk
            if not self._fill():
                self.finished = True
                raise MultipartError("the body ends before the part's closing delimiter")
