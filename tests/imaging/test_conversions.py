"""read_dicom reuses values converted from earlier files (dicomfile.Conversions): what it
reads must be exactly what pydicom's own conversion of each file gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks, raw_element_value_fix_separator
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ImplicitVRLittleEndian

from backend.imaging import dicomfile
from backend.imaging.dicomfile import Conversions, InvalidDicom, read_dicom

from .helpers import CHARSET_FILES, PYDICOM_FILES, SMALL, TESTDATA
from .test_hostile import minimal_dataset, save

CT = TESTDATA / "ct-lidc-0314"
SAMPLES = sorted(
    p
    for folder in (PYDICOM_FILES, CHARSET_FILES, SMALL, CT)
    if folder.is_dir()
    for p in folder.rglob("*")
    if p.is_file()
)


@pytest.fixture
def conversions(monkeypatch) -> Conversions:
    kept = Conversions()
    monkeypatch.setattr(dicomfile, "_CONVERSIONS", kept)
    return kept


def raw(tag: int, vr: str, value: bytes) -> RawDataElement:
    """An element written to the file as these bytes."""
    return RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def reading(path: Path) -> Any:
    """Everything read_dicom gives for the file, values as (type, repr), or its refusal."""
    try:
        parsed = read_dicom(path)
    except InvalidDicom as exc:
        return ("refused", str(exc))
    return (elements(parsed.dataset), parsed.warnings, parsed.pixel_data_offset)


def elements(ds: Dataset) -> list:
    found = []
    for elem in ds:
        if isinstance(elem.value, Sequence):
            value: Any = [elements(item) for item in elem.value]
        elif isinstance(elem.value, MultiValue):
            value = [(type(v).__name__, repr(v)) for v in elem.value]
        else:
            value = (type(elem.value).__name__, repr(elem.value), str(elem.value))
        found.append(
            (
                elem.tag,
                elem.VR,
                elem.private_creator,
                value,
                # What the DataElement a reused value gets is made of besides its value.
                sorted(elem.__dict__),
                elem.file_tell,
                elem.is_undefined_length,
                elem.validation_mode,
            )
        )
    return found


def test_every_sample_file_reads_the_same_with_reused_values(conversions, monkeypatch):
    assert len(SAMPLES) > 100
    first = [reading(path) for path in SAMPLES]  # filling the store as it goes
    again = [reading(path) for path in SAMPLES]  # now most values are reused
    assert conversions._kept
    monkeypatch.setattr(conversions, "for_dataset", lambda ds: None)
    fresh = [reading(path) for path in SAMPLES]

    for path, one, two, reference in zip(SAMPLES, first, again, fresh, strict=True):
        assert one == reference, path
        assert two == reference, path


def test_a_value_is_not_reused_under_another_character_set(conversions, tmp_path):
    paths = []
    for number, charset in enumerate(("ISO_IR 100", "ISO_IR 144")):  # Latin-1, Cyrillic
        ds = minimal_dataset()
        ds.SpecificCharacterSet = charset
        ds.StudyDescription = b"\xe4\xe5"  # the same bytes: "äå" in Latin-1, "фх" in Cyrillic
        paths.append(save(ds, tmp_path / f"{number}.dcm"))

    latin, cyrillic = (read_dicom(path).dataset.StudyDescription for path in paths)

    assert (latin, cyrillic) == ("äå", "фх")


def test_an_ambiguous_vr_is_resolved_per_file(conversions, tmp_path):
    """In Implicit VR the VR of Smallest Image Pixel Value is US or SS, by Pixel
    Representation: the same two bytes are 65535 in one file and -1 in the other."""
    paths = []
    for representation in (0, 1):
        ds = minimal_dataset(ImplicitVRLittleEndian)
        ds.PixelRepresentation = representation
        vr, value = ("SS", -1) if representation else ("US", 65535)  # both b"\xff\xff"
        ds["SmallestImagePixelValue"] = DataElement(0x00280106, vr, value)
        paths.append(save(ds, tmp_path / f"{representation}.dcm"))

    values = [read_dicom(path).dataset.SmallestImagePixelValue for path in paths]

    assert values == [65535, -1]


def test_a_conversion_that_warned_warns_again(conversions, tmp_path):
    ds = minimal_dataset()
    ds[0x00200013] = raw(0x00200013, "IS", b"1.5")  # Instance Number, not an integer
    path = save(ds, tmp_path / "bad.dcm")

    warnings = [read_dicom(path).warnings for _ in range(2)]

    assert any("InstanceNumber" in text for text in warnings[0]), warnings[0]
    assert warnings[1] == warnings[0]


def test_lists_are_not_shared_between_files(conversions, tmp_path):
    ds = minimal_dataset()
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    path = save(ds, tmp_path / "one.dcm")
    one, two = (read_dicom(path).dataset for _ in range(2))

    one.ImageOrientationPatient[0] = 5

    assert two.ImageOrientationPatient == [1, 0, 0, 0, 1, 0]
    assert read_dicom(path).dataset.ImageOrientationPatient == [1, 0, 0, 0, 1, 0]


def test_nothing_is_reused_with_conversion_hooks_of_ones_own(conversions, tmp_path):
    ds = minimal_dataset()
    ds[0x00280030] = raw(0x00280030, "DS", b"0.5:0.5")  # Pixel Spacing, a wrong separator
    path = save(ds, tmp_path / "separator.dcm")
    read_dicom(path)
    hooks.register_callback("raw_element_value", raw_element_value_fix_separator)
    hooks.register_kwargs("raw_element_kwargs", {"target_VRs": ("DS",), "separator": ":"})
    try:
        fixed = read_dicom(path).dataset.PixelSpacing
    finally:
        hooks.register_callback("raw_element_value", pydicom.hooks.raw_element_value)
        hooks.register_kwargs("raw_element_kwargs", {})

    assert fixed == [0.5, 0.5]


def test_the_store_keeps_at_most_its_number_of_entries(tmp_path, monkeypatch):
    kept = Conversions(entries=10)
    monkeypatch.setattr(dicomfile, "_CONVERSIONS", kept)
    for number in range(3):
        ds = minimal_dataset()
        ds.StudyDescription = f"study {number}"
        read_dicom(save(ds, tmp_path / f"{number}.dcm"))

    assert len(kept._kept) == 10
