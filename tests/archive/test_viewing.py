"""The viewer's manifest (backend/archive/viewing.py): the lookup tables of the files
(PS3.3 C.11.1 Modality LUT Sequence, C.11.2 VOI LUT Sequence), each once per series, and an
image whose pixels could not be decoded kept in its place with the reason."""

import importlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.apps import apps
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from backend.archive import migrations, viewing
from backend.archive.models import Instance, Study

from ..conftest import pydicom_file
from .helpers import receive_file

pytestmark = pytest.mark.django_db(transaction=True)
STUDY, SERIES = generate_uid(), generate_uid()


def lut_item(first: int, data: list[int], explanation: str, bits: int = 12) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(data), first, bits]
    item.add_new(0x00283006, "US", data)  # LUTData, US or OW (C.11.1.1.2)
    item.LUTExplanation = explanation
    return item


def ct_slice(tmp_path, z: float, **sequences) -> pydicom.Dataset:
    """CT_small.dcm (signed, rescaled to HU) as a slice of one series at height z."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = STUDY, SERIES, generate_uid()
    ds.ImagePositionPatient = [0, 0, z]
    for keyword, items in sequences.items():
        setattr(ds, keyword, Sequence(items))
    return ds


def save(tmp_path, ds: pydicom.Dataset):
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def broken_codestream(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The same slice as JPEG Baseline whose codestream is garbage: stored, not viewable."""
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xdb" + bytes(range(64)) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    return ds


def study_manifest() -> dict:
    manifest, _ = viewing.manifest(Study.objects.get(study_instance_uid=STUDY))
    return manifest


WINDOW = lut_item(-1000, [0, 1000, 2000, 4095], "SOFT")
BONE = lut_item(0, [4095, 0], "BONE", bits=16)
MODALITY = lut_item(0, list(range(0, 8000, 2)), "HU", bits=16)


def test_it_carries_each_lookup_table_once_per_series(tmp_path, tasks):
    for z, sequences in [
        (1, {"VOILUTSequence": [WINDOW]}),
        (2, {"VOILUTSequence": [WINDOW, BONE]}),
        (3, {"ModalityLUTSequence": [MODALITY]}),
    ]:
        receive_file(save(tmp_path, ct_slice(tmp_path, z, **sequences)), tasks)

    (series,) = study_manifest()["series"]

    window = {"first": -1000, "bits": 12, "data": [0, 1000, 2000, 4095], "explanation": "SOFT"}
    bone = {"first": 0, "bits": 16, "data": [4095, 0], "explanation": "BONE"}
    assert series["luts"][:2] == [window, bone]
    assert series["luts"][2]["data"] == list(range(0, 8000, 2))
    instances = series["instances"]
    assert [i["voi_luts"] for i in instances] == [[0], [0, 1], []]
    assert [i["modality_lut"] for i in instances] == [None, None, 2]


def test_it_reads_a_negative_first_value_that_pydicom_left_unsigned(tmp_path, tasks):
    # Implicit VR: the LUT Descriptor's VR (US or SS) is not in the file.
    ds = ct_slice(tmp_path, 1, VOILUTSequence=[WINDOW])
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    receive_file(save(tmp_path, ds), tasks)

    (series,) = study_manifest()["series"]

    assert series["luts"][0]["first"] == -1000
    expected = pydicom.pixels.apply_voi_lut(np.array([-1001, -999, 5000]), ds)
    assert [series["luts"][0]["data"][i] for i in (0, 1, 3)] == list(expected)


def test_it_keeps_an_undecodable_image_in_its_place_with_the_reason(tmp_path, tasks):
    for z in (1, 2, 3):
        ds = ct_slice(tmp_path, z)
        receive_file(save(tmp_path, broken_codestream(ds) if z == 2 else ds), tasks)

    (series,) = study_manifest()["series"]
    _, stacks = viewing.manifest(Study.objects.get(study_instance_uid=STUDY))

    middle = series["instances"][1]
    assert (middle["viewable"], middle["undecodable"], middle["frames"]) == (False, True, 1)
    assert "JPEG Baseline" in middle["not_viewable_reason"]
    (ref_1, ref_2, ref_3) = stacks[SERIES]
    assert ref_2.error == middle["not_viewable_reason"]
    assert ref_1.size and ref_3.size and not ref_1.error and not ref_3.error


def test_it_leaves_out_an_instance_without_pixels(tmp_path, tasks):
    receive_file(save(tmp_path, ct_slice(tmp_path, 1)), tasks)
    ds = ct_slice(tmp_path, 2)
    del ds.PixelData
    receive_file(save(tmp_path, ds), tasks)

    (series,) = study_manifest()["series"]

    described = [(i["frames"], i["undecodable"]) for i in series["instances"]]
    assert described == [(1, False), (0, False)]


def test_it_reads_the_tables_of_files_indexed_before_they_were_read(tmp_path, tasks):
    receive_file(save(tmp_path, ct_slice(tmp_path, 1, VOILUTSequence=[WINDOW, BONE])), tasks)
    receive_file(save(tmp_path, ct_slice(tmp_path, 2)), tasks)
    Instance.objects.update(voi_luts=[])
    (name,) = [p.stem for p in Path(migrations.__file__).parent.glob("*_lookup_tables.py")]
    migration = importlib.import_module(f"backend.archive.migrations.{name}")

    migration.read_tables(apps, None)

    assert [len(i.voi_luts) for i in Instance.objects.order_by("slice_index")] == [2, 0]


def test_a_series_part_is_kept_until_the_series_changes(tmp_path, tasks, django_assert_num_queries):
    for z in (1, 2):
        receive_file(save(tmp_path, ct_slice(tmp_path, z)), tasks)
    study = Study.objects.select_related("patient").get(study_instance_uid=STUDY)
    first, stacks = viewing.manifest_json(study)

    with django_assert_num_queries(1):  # the series and their versions; no instances
        again, stacks_again = viewing.manifest_json(study)
    assert again == first and stacks_again == stacks
    assert [len(s["instances"]) for s in json.loads(first)["series"]] == [2]

    receive_file(save(tmp_path, ct_slice(tmp_path, 3)), tasks)  # arrives and is derived
    changed, stacks = viewing.manifest_json(study)
    (series,) = json.loads(changed)["series"]
    positions = [i["image_position_patient"][2] for i in series["instances"]]
    assert sorted(positions) == [1, 2, 3] and len(stacks[SERIES]) == 3
