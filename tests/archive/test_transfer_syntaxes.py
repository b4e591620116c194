"""Frames served from the store equal the imaging module's decode, for every transfer
syntax: ingest ▸ index ▸ frames.frame_array against backend.imaging.pixels.decode_pixels."""

import numpy as np
import pytest

from backend.archive.frames import frame_array
from backend.archive.models import IngestRecord, Instance
from backend.imaging import pixels
from backend.imaging.dicomfile import InvalidDicom, read_dicom

from ..conftest import SMALL, manifest, needs_testdata
from ..imaging.helpers import bundled, part10_copy
from ..imaging.test_transfer_syntaxes import BUNDLED
from .helpers import receive_file

pytestmark = pytest.mark.django_db(transaction=True)


def decoded(path) -> np.ndarray:
    """Every frame as the imaging module decodes it, stacked."""
    parsed = read_dicom(path)
    decoded = pixels.decode_pixels(parsed, path)
    return np.stack([pixels.frame_array(decoded, path, i) for i in range(decoded.layout.frames)])


def served(instance: Instance) -> np.ndarray:
    return np.stack([frame_array(instance, i) for i in range(instance.number_of_frames)])


def assert_served_like_decoded(path, tasks) -> None:
    record = receive_file(path, tasks)
    assert record.state == IngestRecord.State.STORED, record.reason
    instance = Instance.objects.get()
    assert instance.viewable, instance.not_viewable_reason
    expected = decoded(path)
    ours = served(instance)
    assert ours.dtype == expected.dtype
    np.testing.assert_array_equal(ours, expected)
    assert (instance.pixel_min, instance.pixel_max) == (expected.min(), expected.max())


@pytest.mark.parametrize(
    ("name", "transfer_syntax"), [b[:2] for b in BUNDLED], ids=[b[0] for b in BUNDLED]
)
def test_it_serves_bundled_samples_as_decoded(tasks, tmp_path, name, transfer_syntax):
    path = part10_copy(bundled(name), tmp_path)
    assert read_dicom(path).transfer_syntax_uid == transfer_syntax
    assert_served_like_decoded(path, tasks)


def one_per_transfer_syntax() -> list[dict]:
    """The smallest decodable file of each transfer syntax in small/manifest.json."""
    chosen: dict[str, dict] = {}
    for entry in manifest():
        if entry["decode"] != "ok" or entry["path"].startswith("malformed/"):
            continue
        if entry["ts"] not in chosen or entry["size"] < chosen[entry["ts"]]["size"]:
            chosen[entry["ts"]] = entry
    return sorted(chosen.values(), key=lambda e: e["ts"])


SMALL_FILES = one_per_transfer_syntax()


@needs_testdata()
@pytest.mark.parametrize("entry", SMALL_FILES, ids=[e["ts"] for e in SMALL_FILES])
def test_it_serves_real_files_as_decoded(tasks, tmp_path, entry):
    path = SMALL / entry["path"]
    try:
        read_dicom(path)
    except InvalidDicom:
        path = part10_copy(path, tmp_path)  # codec samples without Study UIDs or a preamble
    assert read_dicom(path).transfer_syntax_uid == entry["ts"]
    assert_served_like_decoded(path, tasks)
    instance = Instance.objects.get()
    assert (instance.rows, instance.columns, instance.number_of_frames) == (
        entry["rows"],
        entry["cols"],
        int(entry["frames"]),
    )


@needs_testdata()
def test_it_covers_the_transfer_syntaxes_of_the_test_data():
    assert len(SMALL_FILES) >= 14


@pytest.mark.parametrize(
    ("name", "transfer_syntax"),
    [("CT_small.dcm", "1.2.840.10008.1.2.1"), ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5")],
)
def test_it_records_the_transfer_syntax(tasks, tmp_path, name, transfer_syntax):
    receive_file(part10_copy(bundled(name), tmp_path), tasks)
    assert Instance.objects.get().transfer_syntax_uid == transfer_syntax
