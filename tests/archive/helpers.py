"""Building test files: real pydicom samples, changed where a test needs it."""

from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from backend.archive import ingest
from backend.archive.models import IngestRecord

from ..conftest import pydicom_file


def receive_file(path: Path, tasks, source: str = "cli") -> IngestRecord:
    record = ingest.receive_path(path, source=source)
    tasks.run()
    record.refresh_from_db()
    return record


def variant(tmp_path: Path, name: str = "CT_small.dcm", **changes) -> Path:
    """A copy of a pydicom sample with some attributes changed (keyword=value)."""
    ds = pydicom.dcmread(pydicom_file(name))
    for keyword, value in changes.items():
        if value == "new-uid":
            value = generate_uid()
        setattr(ds, keyword, value)
    path = tmp_path / f"{generate_uid()}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
