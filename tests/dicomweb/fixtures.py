"""Fixtures and helpers for the WADO, STOW, auth and WADO-URI tests: a user, its API
token, pydicom samples ingested through the real services, and a strict reader of
multipart/related bodies. Names start with w_ so they never clash with conftest.py."""

import re
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from pydicom.uid import generate_uid

from backend.accounts.tokens import create_token
from backend.archive import ingest

from ..conftest import grant_every_study, pydicom_file

PASSWORD = "correct horse battery"


@dataclass
class Sample:
    """A file as ingested, and the paths that name it."""

    path: Path
    ds: pydicom.Dataset

    @property
    def study(self) -> str:
        return f"/dicomweb/studies/{self.ds.StudyInstanceUID}"

    @property
    def series(self) -> str:
        return f"{self.study}/series/{self.ds.SeriesInstanceUID}"

    @property
    def instance(self) -> str:
        return f"{self.series}/instances/{self.ds.SOPInstanceUID}"

    @property
    def uids(self) -> tuple[str, str, str]:
        return self.ds.StudyInstanceUID, self.ds.SeriesInstanceUID, self.ds.SOPInstanceUID


@pytest.fixture
def w_user(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return grant_every_study(User.objects.create_user("w_reader", password=PASSWORD))


@pytest.fixture
def w_client(client, w_user):
    """A browser session."""
    client.force_login(w_user)
    return client


@pytest.fixture
def w_token(w_user) -> str:
    return create_token(w_user, "tests")[1]


@pytest.fixture
def w_ingest(tasks, tmp_path):
    """Ingest a pydicom sample (changed by keyword=value; "new-uid" makes a UID) and index
    it; returns the Sample as it was sent."""

    def ingest_sample(name: str, **changes) -> Sample:
        path = pydicom_file(name)
        if changes:
            path = changed_copy(tmp_path, name, **changes)
        record = ingest.receive_path(path, source="cli")
        tasks.run()
        record.refresh_from_db()
        assert record.state == "stored", record.reason
        return Sample(path, pydicom.dcmread(path))

    return ingest_sample


def changed_copy(tmp_path: Path, name: str, **changes) -> Path:
    ds = pydicom.dcmread(pydicom_file(name))
    for keyword, value in changes.items():
        setattr(ds, keyword, generate_uid() if value == "new-uid" else value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / f"{generate_uid()}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


# Reading responses


@dataclass
class Part:
    headers: dict[str, str]  # names lower case
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def body_of(response) -> bytes:
    """The whole body; DICOMweb streams from async iterators, as under ASGI."""
    if not response.streaming:
        return response.content
    if hasattr(response.streaming_content, "__aiter__"):
        return async_to_sync(_joined)(response.streaming_content)
    return b"".join(response.streaming_content)


async def _joined(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def boundary_of(content_type: str) -> str:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    assert match, content_type
    return match[1]


def multipart(response) -> list[Part]:
    """The parts of a multipart/related response, checking the framing of RFC 2046 §5.1.1:
    a delimiter line before each part, CRLF CRLF after the headers, a closing delimiter."""
    assert response["Content-Type"].startswith("multipart/related"), response["Content-Type"]
    delimiter = b"\r\n--" + boundary_of(response["Content-Type"]).encode()
    body = b"\r\n" + body_of(response)
    assert body.endswith(delimiter + b"--\r\n"), body[-80:]
    pieces = body[: -len(delimiter) - 4].split(delimiter)
    assert pieces[0] == b"", "no preamble expected"
    parts = []
    for piece in pieces[1:]:
        assert piece.startswith(b"\r\n")
        head, separator, content = piece[2:].partition(b"\r\n\r\n")
        assert separator, piece[:200]
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append(Part(headers, content))
    return parts


def build_multipart(
    bodies: list[bytes], boundary: str = "w-boundary-1234", part_type: str = "application/dicom"
) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart/related request holding `bodies`."""
    out = b""
    for content in bodies:
        out += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f'multipart/related; type="{part_type}"; boundary={boundary}'
