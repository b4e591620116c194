"""An embedded installation for viewer tests (web and worker running, files imported through
`manage.py import`, the real ingest path), and synthetic CT series written fast enough to
make thousands of slices in a second or two."""

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ..integration.helpers import WORKER_COMMAND, wait_until
from ..integration.test_embedded import PASSWORD, Embedded, _answers


@contextmanager
def viewer_site(root: Path, *paths: Path, timeout: float = 300) -> Iterator[Embedded]:
    """Migrated, an admin account, worker and web server running, `paths` imported."""
    site = Embedded(root)
    site.check("migrate", "--noinput")
    site.check(
        "createsuperuser",
        "--noinput",
        "--username=admin",
        "--email=a@example.org",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    worker = site.start("worker", [*WORKER_COMMAND, "--loglevel=INFO"])
    web = site.start(
        "web",
        [sys.executable, "-m", "uvicorn", "backend.asgi:application", "--host", "127.0.0.1"]
        + ["--port", str(site.port), "--lifespan", "off", "--ws-per-message-deflate", "false"],
    )
    try:
        worker.wait_for_output(" ready.")
        wait_until(lambda: _answers(site.url), 30, lambda: "web server did not answer")
        result = site.manage("import", *map(str, paths), timeout=timeout)
        assert result.returncode == 0, result.stdout + result.stderr
        yield site
    finally:
        web.stop()
        worker.stop()


def ct_series(folder: Path, count: int, size: int = 256) -> str:
    """`count` slices of a CT series (size × size, 12 bits in 16, 0.5 mm apart, each its
    own SOP Instance, a pattern shifted one row per slice) in `folder`; returns the Study
    Instance UID. One file is written by pydicom; the others are that file with the fields
    that differ (UIDs, position, number: fixed-width values) and the pixels replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    root = generate_uid()[:48].rstrip(".")
    sop, position, number = f"{root}.100000", "-128\\-128\\0000.0", "000001"
    ds = _ct_template(sop, position, number, size)
    yy, xx = np.mgrid[0:size, 0:size]
    image = ((xx * 7 + yy * 3) % 2048).astype("<u2")
    ds.PixelData = image.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = bytearray(buffer.getvalue())
    pixels_at = len(data) - image.nbytes
    uid_at = [data.find(sop.encode()), data.rfind(sop.encode())]  # file meta, dataset
    z_at = data.find(position.encode()) + len(position) - 6
    number_at = data.find(number.encode())
    for i in range(count):
        for at in uid_at:
            data[at : at + len(sop)] = f"{root}.{100000 + i}".encode()
        data[z_at : z_at + 6] = f"{i * 0.5:06.1f}".encode()
        data[number_at : number_at + 6] = f"{i + 1:06d}".encode()
        data[pixels_at:] = np.roll(image, i, axis=0).tobytes()
        (folder / f"{i:04d}.dcm").write_bytes(data)
    return ds.StudyInstanceUID


def _ct_template(sop: str, position: str, number: str, size: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (
        generate_uid() for _ in "abc"
    )
    ds.PatientName, ds.PatientID, ds.Modality = "Synthetic^Long", "LONG1", "CT"
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.ImagePositionPatient = position
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [1, 1], 0.5
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    return ds
