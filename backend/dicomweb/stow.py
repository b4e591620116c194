"""STOW-RS (PS3.18 §10.5): each part of a multipart/related body through the shared ingest
service, and the response data set that says what was stored and what was not.

A part is answered as stored only once it is durable in the spool (the same guarantee the
DICOM receiver gives before 0x0000). Its header is read before it is accepted, so a part
for another study than the one in the path, or one that is not DICOM, is reported failed;
a part that is not DICOM is still kept in quarantine with its reason, like from any source.
One bad part never stops the parts after it, unless the body itself is broken.
"""

import errno
import logging
from dataclasses import dataclass, field

import pydicom
from pydicom.dataelem import DataElement
from pydicom.tag import Tag

from backend.archive.ingest import record_spooled
from backend.archive.spool import get_spool
from backend.imaging.dicomfile import InvalidDicom, read_dicom

from .errors import DicomWebError
from .media import MultipartError, Part, iter_parts

log = logging.getLogger(__name__)

# FailureReason values (PS3.18 Table 10.5.3-2, PS3.4 Annex B.2.3).
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
STUDY_MISMATCH = 0xA900  # "Data Set does not match SOP Class" is what §10.5.3.1 names
CANNOT_UNDERSTAND = 0xC000
PART_TYPES = ("application/dicom", "")


@dataclass
class Outcome:
    # SOP class, SOP instance, its study and series
    stored: list[tuple[str, str, str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, int]] = field(default_factory=list)  # class, instance, reason
    reasons: list[str] = field(default_factory=list)  # in words, for the Warning header
    studies: set[str] = field(default_factory=set)

    def fail(self, number: int, reason: int, words: str, sop=("", "")) -> None:
        self.failed.append((sop[0], sop[1], reason))
        self.reasons.append(f"part {number}: {words}")

    @property
    def status(self) -> int:
        if not self.failed:
            return 200
        return 202 if self.stored else 409


def store(stream, boundary: str, *, study_uid: str | None, user) -> Outcome:
    """Store every part of the body read from `stream` (PS3.18 §10.5.1)."""
    outcome = Outcome()
    number = 0
    try:
        for number, part in enumerate(iter_parts(stream, boundary), start=1):
            _store_part(outcome, number, part, study_uid, user)
    except MultipartError as exc:
        if number == 0:
            raise DicomWebError(400, f"the body is not multipart/related: {exc}") from None
        outcome.fail(number, CANNOT_UNDERSTAND, str(exc))
    return outcome


def _store_part(outcome: Outcome, number: int, part: Part, study_uid: str | None, user) -> None:
    media = part.content_type.split(";")[0].strip().lower()
    if media not in PART_TYPES:
        outcome.fail(number, CANNOT_UNDERSTAND, f"{media[:60]} parts are not accepted")
        return
    spool = get_spool()
    try:
        record_id, size, sha256 = spool.receive(part.chunks)
    except OSError as exc:
        reason = (
            OUT_OF_RESOURCES if exc.errno in (errno.ENOSPC, errno.EDQUOT) else PROCESSING_FAILURE
        )
        log.error("STOW part %d could not be stored: %s", number, exc)
        outcome.fail(number, reason, f"could not be stored: {exc.strerror or exc}")
        return
    try:
        ds = read_dicom(spool.path(record_id)).dataset
    except InvalidDicom as exc:
        # Kept in quarantine with the reason, as a file from any other source would be.
        record_spooled(record_id, size, sha256, source="stow", detail=_who(user))
        outcome.fail(number, CANNOT_UNDERSTAND, f"not a DICOM file that can be stored: {exc}")
        return
    sop = (str(ds.SOPClassUID), str(ds.SOPInstanceUID))
    if study_uid is not None and ds.StudyInstanceUID != study_uid:
        spool.remove(record_id)
        outcome.fail(number, STUDY_MISMATCH, f"belongs to study {ds.StudyInstanceUID}", sop)
        return
    record_spooled(record_id, size, sha256, source="stow", detail=_who(user), user=user)
    outcome.stored.append((*sop, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)))
    outcome.studies.add(str(ds.StudyInstanceUID))


def _who(user) -> str:
    return f"user {user.get_username()}"


def response_dataset(outcome: Outcome, base_url: str, study_uid: str | None) -> pydicom.Dataset:
    """The Store Instances Response Module (PS3.18 Table 10.5.3-1)."""
    ds = pydicom.Dataset()
    study = study_uid or (next(iter(outcome.studies)) if len(outcome.studies) == 1 else None)
    if study:
        ds.RetrieveURL = f"{base_url}/studies/{study}"
    if outcome.failed:
        ds.FailedSOPSequence = [_failed_item(*item) for item in outcome.failed]
    if outcome.stored:
        ds.ReferencedSOPSequence = [_stored_item(base_url, *item) for item in outcome.stored]
    return ds


def _failed_item(sop_class: str, sop_instance: str, reason: int) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.add(DataElement(Tag("ReferencedSOPClassUID"), "UI", sop_class or None))
    item.add(DataElement(Tag("ReferencedSOPInstanceUID"), "UI", sop_instance or None))
    item.FailureReason = reason
    return item


def _stored_item(
    base_url: str, sop_class: str, sop_instance: str, study: str, series: str
) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    item.RetrieveURL = f"{base_url}/studies/{study}/series/{series}/instances/{sop_instance}"
    return item
