"""Files a user drops on the worklist (or picks): one DICOM file, or a .zip of them.

Each file goes through the one ingest path: durable in the spool first, then recorded and
queued for a worker, as a file received over DICOM or STOW-RS is. The header is read before a
file is accepted, so the person uploading learns at once which files were not DICOM (they are
dropped, not quarantined: the user still has them and sees why) and the worker only gets
files it can index. Indexing follows; status() tells how it ended for each file.
"""

import errno
import itertools
import logging
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import BinaryIO, cast

from django.conf import settings
from pydicom.filereader import read_file_meta_info

from backend.imaging.dicomfile import InvalidDicom, read_dicom

from .ingest import read_chunks, record_spooled
from .models import IngestRecord
from .spool import get_spool

log = logging.getLogger(__name__)
ZIP_MAGIC = b"PK\x03\x04"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR (PS3.10 §8.6)
MAX_ZIP_MEMBERS = 100_000
MAX_STATUS_IDS = 500
SKIPPED_NAMES = ("__MACOSX/", ".DS_Store", "Thumbs.db", "desktop.ini")


class UploadError(Exception):
    """The upload as a whole cannot be taken (e.g. a damaged .zip); str() says why."""


@dataclass
class FileResult:
    name: str
    # received: durable and queued for indexing; skipped: not an image file, not stored;
    # failed: could not be stored (e.g. the disk is full) — send it again later.
    status: str
    reason: str = ""
    id: str = ""
    study_instance_uid: str = ""

    def as_json(self) -> dict:
        return asdict(self)


def upload(stream: BinaryIO, name: str, user) -> list[FileResult]:
    """Store one uploaded body: a DICOM file, or a .zip whose members are each stored."""
    first = stream.read(1 << 16)
    if first.startswith(ZIP_MAGIC):
        return _unzip(itertools.chain([first], read_chunks(stream)), name, user)
    return [_store(name, itertools.chain([first], read_chunks(stream)), user)]


def _store(name: str, chunks: Iterable[bytes], user) -> FileResult:
    spool = get_spool()
    try:
        record_id, size, sha256 = spool.receive(chunks)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        log.error("upload of %r could not be stored: %s", name[:200], exc)
        reason = "the archive's disk is full" if full else f"could not be stored: {exc.strerror}"
        return FileResult(name, "failed", f"{reason}; nothing was kept, send it again later")
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        return FileResult(name, "skipped", f"damaged inside the .zip: {exc}")
    path = spool.path(record_id)
    if _is_dicomdir(path):
        spool.remove(record_id)
        return FileResult(name, "skipped", "a DICOMDIR (an index of the other files)")
    try:
        ds = read_dicom(path).dataset
    except InvalidDicom as exc:
        spool.remove(record_id)
        return FileResult(name, "skipped", f"not a DICOM file: {exc}")
    record_spooled(
        record_id,
        size,
        sha256,
        source="upload",
        detail=f"user {user.get_username()}: {name}",
        user=user,
    )
    study = str(ds.get("StudyInstanceUID", ""))
    return FileResult(name, "received", id=str(record_id), study_instance_uid=study)


def _is_dicomdir(path) -> bool:
    try:
        meta = read_file_meta_info(path)
    except Exception:  # not even a file meta group: read_dicom says what is wrong
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY


def _unzip(chunks: Iterator[bytes], name: str, user) -> list[FileResult]:
    """Each member of the archive, stored as if uploaded alone. The .zip is copied to a
    temporary file first (zipfile reads the directory at its end)."""
    limit = settings.LIGHTBOX_UPLOAD_MAX_BYTES
    with tempfile.TemporaryFile(dir=get_spool().tmp) as copy:
        for chunk in chunks:
            copy.write(chunk)
        copy.seek(0)
        try:
            archive = zipfile.ZipFile(copy)
        except (zipfile.BadZipFile, OSError) as exc:
            raise UploadError(f"{name} is not a readable .zip: {exc}") from None
        with archive:
            members = [m for m in archive.infolist() if _wanted(m)]
            if len(members) > MAX_ZIP_MEMBERS:
                raise UploadError(f"{name} holds more than {MAX_ZIP_MEMBERS} files")
            # zipfile never reads past a member's declared size, so this bounds what we write.
            if sum(m.file_size for m in members) > limit:
                raise UploadError(f"{name} unpacks to more than {limit} bytes")
            if any(m.flag_bits & 0x1 for m in members):
                raise UploadError(f"{name} is encrypted; unpack it and drop the folder")
            return [_member(archive, member, name, user) for member in members]


def _wanted(member: zipfile.ZipInfo) -> bool:
    path = member.filename
    base = path.rsplit("/", 1)[-1]
    return not (member.is_dir() or base.startswith(".") or any(s in path for s in SKIPPED_NAMES))


def _member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, zip_name: str, user):
    label = f"{zip_name}/{member.filename}"
    try:
        with archive.open(member) as f:
            return _store(label, read_chunks(cast(BinaryIO, f)), user)
    except (zipfile.BadZipFile, NotImplementedError, zlib.error, EOFError) as exc:
        return FileResult(label, "skipped", f"cannot be unpacked: {exc}")


def status(user, ids: Iterable[str]) -> list[dict]:
    """How indexing ended for files this user uploaded (others' ids are not found)."""
    wanted = []
    for value in itertools.islice(ids, MAX_STATUS_IDS):
        try:
            wanted.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    records = IngestRecord.objects.filter(id__in=wanted, user=user, source="upload")
    return [
        {
            "id": str(r.id),
            "state": r.state,
            "reason": r.reason,
            "study_instance_uid": r.study_instance_uid,
        }
        for r in records
    ]
