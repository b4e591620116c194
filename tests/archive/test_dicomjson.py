"""DICOM JSON of a header (PS3.18 §F.2), written by backend.archive.dicomjson.

The reference is what the archive wrote before: pydicom's Dataset.to_json_dict with invalid
values left out, then every NUL removed from every string of the result; but a BulkDataURI in
a sequence now has the path to its value (pydicom's handler sees only the element)."""

import json
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from backend.archive.dicomjson import (
    BULK_THRESHOLD,
    PIXEL_TAGS,
    dataset_to_json,
    instance_path,
    metadata_json,
)
from backend.imaging.dicomfile import InvalidDicom, ParsedFile, read_dicom

from ..conftest import PYDICOM_FILES, SMALL, pydicom_file

SAMPLES = sorted(p for folder in (PYDICOM_FILES, SMALL) for p in folder.rglob("*") if p.is_file())


def reference(parsed: ParsedFile) -> tuple[dict[str, Any], list[str]]:
    """The previous implementation (pixel data element aside, which is unchanged)."""
    ds = parsed.dataset
    base = instance_path(ds)
    header = Dataset({tag: elem for tag, elem in ds.items() if tag not in PIXEL_TAGS})
    result = without_nuls(
        with_item_paths(
            header.to_json_dict(
                BULK_THRESHOLD,
                lambda e: f"{base}/bulkdata/{e.tag:08X}",
                suppress_invalid_tags=True,
            ),
            base,
        )
    )
    dropped = [
        f"{Tag(tag)} left out of the metadata: its value is not valid for its VR"
        for tag in header.keys()
        if f"{tag:08X}" not in result
    ]
    return result, dropped


def with_item_paths(document: dict, base: str, where: str = "") -> dict:
    for key, element in document.items():
        if "BulkDataURI" in element and where:
            element["BulkDataURI"] = f"{base}/bulkdata/{where}{key}"
        for number, item in enumerate(element.get("Value", []) if element["vr"] == "SQ" else []):
            with_item_paths(item, base, f"{where}{key}/{number}/")
    return document


def without_nuls(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {k: without_nuls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nuls(v) for v in value]
    return value


def both(path: Path) -> tuple[tuple[str, list], tuple[str, list]]:
    """(new, reference) for the file, each from a read of its own, the pixel data aside."""
    parsed = read_dicom(path)
    result, dropped = dataset_to_json(parsed.dataset, parsed)
    result.pop("7FE00010", None)
    old, old_dropped = reference(read_dicom(path))
    return (json.dumps(result), dropped), (json.dumps(old), old_dropped)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_it_writes_what_pydicom_wrote(path):
    try:
        read_dicom(path)
    except InvalidDicom:
        pytest.skip("refused at ingest")
    new, old = both(path)
    assert new == old  # same keys in the same order, same values, same elements left out


def save(ds: Dataset, tmp_path: Path) -> Path:
    path = tmp_path / "changed.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def sample() -> Dataset:
    from pydicom import dcmread

    return dcmread(pydicom_file("CT_small.dcm"))


def raw(tag: int, vr: str, value: bytes) -> RawDataElement:
    return RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def test_it_removes_nuls_from_every_string(tmp_path):
    ds = sample()
    ds.InstitutionName = "A\x00B"
    ds.ImageType = ["OR\x00IG", "PRIMARY"]
    ds.PatientName = "Do\x00e^J=Y\x00=Z"
    item = Dataset()
    item.CodeMeaning = "x\x00y"
    ds.ProcedureCodeSequence = Sequence([item])
    path = save(ds, tmp_path)
    parsed = read_dicom(path)
    result, _ = dataset_to_json(parsed.dataset, parsed)
    assert "\\u0000" not in json.dumps(result)
    assert result["00080080"]["Value"] == ["AB"]
    assert result["00080008"]["Value"] == ["ORIG", "PRIMARY"]
    assert result["00100010"]["Value"] == [
        {"Alphabetic": "Doe^J", "Ideographic": "Y", "Phonetic": "Z"}
    ]
    assert result["00081032"]["Value"][0]["00080104"]["Value"] == ["xy"]
    new, old = both(path)
    assert new == old


def test_it_leaves_out_invalid_values_with_a_warning(tmp_path):
    ds = sample()
    ds[0x00200013] = raw(0x00200013, "IS", b"1A")  # Instance Number
    item = Dataset()
    item[0x00200012] = raw(0x00200012, "IS", b"2B")  # Acquisition Number, in an item
    ds.ReferencedImageSequence = Sequence([item])
    path = save(ds, tmp_path)
    parsed = read_dicom(path)
    result, dropped = dataset_to_json(parsed.dataset, parsed)
    assert "00200013" not in result
    assert "00081140" not in result  # an invalid value drops its whole top-level sequence
    assert dropped == [
        "(0008,1140) left out of the metadata: its value is not valid for its VR",
        "(0020,0013) left out of the metadata: its value is not valid for its VR",
    ]
    assert "00200032" in result
    new, old = both(path)
    assert new == old


def test_it_refers_to_large_binary_values_by_uri(tmp_path):
    ds = sample()
    limit = BULK_THRESHOLD // 4 * 3  # base64 makes a value 4/3 longer
    ds.RedPaletteColorLookupTableData = b"\x01" * limit
    ds.EncapsulatedDocument = b"\x02" * (limit + 2)
    icon = Dataset()
    icon.BitsAllocated = 8
    icon.PixelData = b"\x03" * (limit + 2)
    ds.IconImageSequence = Sequence([icon])
    path = save(ds, tmp_path)
    parsed = read_dicom(path)
    result, _ = dataset_to_json(parsed.dataset, parsed)
    base = instance_path(parsed.dataset)
    assert set(result["00281201"]) == {"vr", "InlineBinary"}
    assert result["00420011"] == {"vr": "OB", "BulkDataURI": f"{base}/bulkdata/00420011"}
    icon_pixels = result["00880200"]["Value"][0]["7FE00010"]
    # The path to the icon's pixel data, not the image's.
    assert icon_pixels["BulkDataURI"] == f"{base}/bulkdata/00880200/0/7FE00010"
    assert result["7FE00010"] == {"vr": "OW", "BulkDataURI": f"{base}/bulkdata/7FE00010"}
    new, old = both(path)
    assert new == old


def as_text(parsed: ParsedFile) -> tuple[str, list[str]]:
    result, dropped = dataset_to_json(parsed.dataset, parsed)
    return json.dumps(result, separators=(",", ":")), dropped


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_its_text_is_the_documents(path):
    """metadata_json, the text the index stores, is dataset_to_json's document dumped: the
    first time a file is read, and again when its values are reused from that read."""
    try:
        first = read_dicom(path)
    except InvalidDicom:
        pytest.skip("refused at ingest")
    assert metadata_json(first.dataset, first) == as_text(first)
    again = read_dicom(path)
    if again.value_keys:
        assert again.value_keys.keys() <= set(again.dataset.keys())
    assert metadata_json(again.dataset, again) == as_text(again)


def test_its_reused_text_names_each_instance_in_its_bulk_uris(tmp_path):
    """Two files with the same large binary value: the texts kept by value must not carry
    the first file's BulkDataURI into the second."""
    ds = sample()
    ds.EncapsulatedDocument = b"\x02" * (BULK_THRESHOLD // 4 * 3 + 2)
    documents = []
    for number in (1, 2):
        ds.SOPInstanceUID = f"1.2.3.4.{number}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = tmp_path / f"{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        parsed = read_dicom(path)
        # Both values have a key: the second file's are the first's.
        assert {0x00420011, 0x00080060} <= parsed.value_keys.keys()
        text, _ = metadata_json(parsed.dataset, parsed)
        assert (text, []) == as_text(parsed)
        documents.append(json.loads(text))
    assert documents[1]["00420011"]["BulkDataURI"].endswith(
        "/instances/1.2.3.4.2/bulkdata/00420011"
    )


def test_it_leaves_out_invalid_values_from_its_text_each_time(tmp_path):
    ds = sample()
    ds[0x00200013] = raw(0x00200013, "IS", b"1A")  # Instance Number
    path = save(ds, tmp_path)
    for _ in range(2):
        parsed = read_dicom(path)
        text, dropped = metadata_json(parsed.dataset, parsed)
        assert "00200013" not in json.loads(text)
        assert dropped == [
            "(0020,0013) left out of the metadata: its value is not valid for its VR"
        ]
