"""From a pydicom Dataset to the values the index stores (no Django here).

Values from files are often out of spec (a DS with a comma, a DA with dashes, an LO longer
than 64 characters): each getter returns None or "" for what it cannot read, and the caller
records a warning rather than refusing an otherwise good image.
"""

import datetime
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from backend.imaging.luts import lut_tables

_ACCENTS = re.compile("[\u0300-\u036f]")


@dataclass
class Extracted:
    patient: dict[str, Any]
    study: dict[str, Any]
    series: dict[str, Any]
    instance: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def search_key(text: str) -> str:
    """Upper case, accents dropped, PN separators as spaces: what name searches compare."""
    # Only the Latin/Greek/Cyrillic accents (U+0300..U+036F) go: kana voicing marks, which
    # NFKD also splits off, change the word and are recomposed by NFC.
    decomposed = unicodedata.normalize("NFKD", text)
    plain = unicodedata.normalize("NFC", _ACCENTS.sub("", decomposed))
    return " ".join(re.split(r"[\s^=]+", plain.upper())).strip()


def _raw(ds: Dataset, keyword: str) -> Any:
    # read_dicom has converted every top-level value: its element is then read directly,
    # without Dataset.get's keyword look-up and checks (half of extract's time).
    tag = _TAGS.get(keyword)
    if tag is None:
        found = tag_for_keyword(keyword)
        tag = _TAGS[keyword] = BaseTag(found) if found is not None else None
    if tag is not None:
        elem = ds._dict.get(tag)
        if elem is None:
            return None
        if type(elem) is DataElement:
            return elem.value
    try:
        return ds.get(keyword)
    except Exception:  # a value pydicom cannot convert is treated as absent
        return None


_TAGS: dict[str, BaseTag | None] = {}  # keyword -> tag


def text(ds: Dataset, keyword: str) -> str:
    value = _raw(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip().replace("\x00", "")


def integer(ds: Dataset, keyword: str) -> int | None:
    value = _raw(ds, keyword)
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if value else None
    try:
        return int(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None


def floats(ds: Dataset, keyword: str) -> list[float] | None:
    value = _raw(ds, keyword)
    if value in (None, ""):
        return None
    values = value if isinstance(value, MultiValue | list | tuple) else [value]
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def number(ds: Dataset, keyword: str) -> float | None:
    values = floats(ds, keyword)
    return values[0] if values else None


def date(ds: Dataset, keyword: str) -> datetime.date | None:
    """DA (PS3.5 §6.2): YYYYMMDD; the ACR-NEMA form YYYY.MM.DD is accepted too."""
    digits = re.sub(r"[.\-]", "", text(ds, keyword))
    if not re.fullmatch(r"\d{8}", digits):
        return None
    try:
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def time(ds: Dataset, keyword: str) -> datetime.time | None:
    """TM (PS3.5 §6.2): HH[MM[SS[.F{1,6}]]]; the old HH:MM:SS form is accepted too."""
    match = re.fullmatch(
        r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", text(ds, keyword).replace(":", "")
    )
    if not match:
        return None
    hour, minute, second, fraction = match.groups()
    try:
        return datetime.time(
            int(hour),
            int(minute or 0),
            min(int(second or 0), 59),  # TM allows a leap second (60); Python does not
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        return None


def extract(ds: Dataset) -> Extracted:
    """Index values for each level of the information model."""
    patient_name = text(ds, "PatientName")
    referring = text(ds, "ReferringPhysicianName")
    description = text(ds, "StudyDescription")
    out = Extracted(
        patient={
            "patient_id": text(ds, "PatientID")[:64],
            "issuer_of_patient_id": text(ds, "IssuerOfPatientID")[:64],
            "patient_name": patient_name,
            "patient_name_search": search_key(patient_name),
            "patient_birth_date": date(ds, "PatientBirthDate"),
            "patient_sex": text(ds, "PatientSex")[:16],
        },
        study={
            "study_instance_uid": text(ds, "StudyInstanceUID"),
            "study_date": date(ds, "StudyDate"),
            "study_time": time(ds, "StudyTime"),
            "accession_number": text(ds, "AccessionNumber")[:64],
            "study_id": text(ds, "StudyID")[:64],
            "study_description": description,
            "study_description_search": search_key(description),
            "referring_physician_name": referring,
            "referring_physician_search": search_key(referring),
            "institution_name": text(ds, "InstitutionName"),
        },
        series={
            "series_instance_uid": text(ds, "SeriesInstanceUID"),
            "modality": text(ds, "Modality")[:16],
            "series_number": integer(ds, "SeriesNumber"),
            "series_description": text(ds, "SeriesDescription"),
            "series_date": date(ds, "SeriesDate"),
            "series_time": time(ds, "SeriesTime"),
            "body_part_examined": text(ds, "BodyPartExamined")[:64],
            "frame_of_reference_uid": text(ds, "FrameOfReferenceUID")[:64],
        },
        instance=_instance(ds),
    )
    if patient_name and not out.patient["patient_name_search"]:
        out.warnings.append("PatientName has no searchable characters")
    if ds.get("StudyDate") and out.study["study_date"] is None:
        out.warnings.append(f"StudyDate {text(ds, 'StudyDate')!r} is not a valid DA")
    return out


def _instance(ds: Dataset) -> dict[str, Any]:
    return {
        "sop_instance_uid": text(ds, "SOPInstanceUID"),
        "sop_class_uid": text(ds, "SOPClassUID"),
        "instance_number": integer(ds, "InstanceNumber"),
        "specific_character_set": text(ds, "SpecificCharacterSet")[:255],
        "content_date": date(ds, "ContentDate"),
        "content_time": time(ds, "ContentTime"),
        "image_position_patient": _geometry(ds, "ImagePositionPatient", 3),
        "image_orientation_patient": _geometry(ds, "ImageOrientationPatient", 6),
        "pixel_spacing": _geometry(ds, "PixelSpacing", 2),
        "slice_thickness": number(ds, "SliceThickness"),
        "slice_location": number(ds, "SliceLocation"),
        "frame_of_reference_uid": text(ds, "FrameOfReferenceUID")[:64],
        "rows": integer(ds, "Rows"),
        "columns": integer(ds, "Columns"),
        "number_of_frames": max(integer(ds, "NumberOfFrames") or 1, 1),
        "samples_per_pixel": integer(ds, "SamplesPerPixel"),
        "bits_allocated": integer(ds, "BitsAllocated"),
        "bits_stored": integer(ds, "BitsStored"),
        "pixel_representation": integer(ds, "PixelRepresentation"),
        "photometric_interpretation": text(ds, "PhotometricInterpretation")[:32],
        "rescale_slope": number(ds, "RescaleSlope"),
        "rescale_intercept": number(ds, "RescaleIntercept"),
        "window_center": floats(ds, "WindowCenter"),
        "window_width": floats(ds, "WindowWidth"),
        "voi_lut_function": text(ds, "VOILUTFunction")[:16],
        "modality_lut": next(iter(lut_tables(ds, "ModalityLUTSequence")), None),
        "voi_luts": lut_tables(ds, "VOILUTSequence"),
    }


def _geometry(ds: Dataset, keyword: str, length: int) -> list[float] | None:
    values = floats(ds, keyword)
    return values if values and len(values) == length else None
