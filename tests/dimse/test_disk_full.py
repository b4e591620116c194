"""C-STORE to a full disk (PS3.4 §B.2.3, Table B.2-1): the receiver answers A700H "Refused:
Out of Resources" for what it cannot make durable, and loses nothing it acknowledged.

The spool (LIGHTBOX_DATA_DIR/spool: where the receiver makes each file durable before it
answers, backend/archive/spool.py) is a real 1 MiB tmpfs, so the ENOSPC comes from the
kernel, not from a mock. The database and the store stay on the ordinary disk: this is the
receiver's own disk filling up. Both variants of the site (SQLite; PostgreSQL and Redis when
configured). Needs root (mount); skipped otherwise.
"""

import errno
import hashlib
import json
import os
import re
import subprocess
import uuid

import pydicom
import pytest
from pydicom.uid import generate_uid

from ..integration.helpers import wait_until
from .conftest import needs_dcmtk
from .peers import dcmtk, new_instance
from .test_store import data_set_bytes, stored_file

pytestmark = needs_dcmtk

SPOOL_SIZE = "1m"
# CT_small.dcm is 39 KiB: about 25 fit, the rest must be refused.
INSTANCES = 40
OUT_OF_RESOURCES = 0xA700
SUCCESS = "Success"
TRAILING_PADDING = 0xFFFCFFFC


def mount_tmpfs(path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as a full disk needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")


@pytest.fixture
def small_spool(site):
    """The site's spool on a 1 MiB tmpfs; unmounted once the site's processes are gone."""
    spool = site.data_dir / "spool"
    mount_tmpfs(spool, SPOOL_SIZE)
    try:
        yield spool
    finally:
        site.stop_all()
        if subprocess.run(["umount", str(spool)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(spool)], check=True)


def instances(tmp_path, count: int) -> list[str]:
    """`count` new instances of one study, as files. Without the sample's Data Set Trailing
    Padding (FFFC,FFFC; PS3.10 §7.2, of no significance), which storescu does not send, so that
    what was sent can be compared byte for byte with what was kept."""
    study, series = generate_uid(), generate_uid()
    paths = []
    for number in range(1, count + 1):
        ds = new_instance()
        del ds[TRAILING_PADDING]
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, number
        path = tmp_path / f"{number:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path))
    return paths


def storescu(site, paths: list[str]) -> dict[str, str]:
    """Send with --no-halt (go on after a refusal) in the files' own transfer syntax (-x=,
    so that what is kept can be compared byte for byte); each file's status as dcmtk
    prints it."""
    result = dcmtk("storescu", site.port, "-x=", "--no-halt", files=tuple(paths), timeout=120)
    output = result.stdout + result.stderr
    statuses = re.findall(r"Received Store Response \(([^)]*)\)", output)
    assert len(statuses) == len(paths), output
    return dict(zip(paths, statuses, strict=True))


def fill_up(path) -> None:
    """Take whatever space is left, so that the disk is full to the last byte."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    assert os.statvfs(path).f_bavail == 0


def as_json(value) -> dict:
    """A JSON column as SQLite (text) and PostgreSQL (decoded) give it."""
    return json.loads(value) if isinstance(value, str) else value


def sop_instance_uid(path: str) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_it_refuses_with_out_of_resources_and_keeps_what_it_acknowledged(
    site, small_spool, tmp_path
):
    site.start_receiver()
    paths = instances(tmp_path, INSTANCES)

    statuses = storescu(site, paths)

    acknowledged = [p for p, status in statuses.items() if status == SUCCESS]
    refused = [p for p, status in statuses.items() if status != SUCCESS]
    assert acknowledged and refused, statuses
    # dcmtk names A700H "Refused: OutOfResources" (PS3.4 Table B.2-1).
    assert {statuses[p] for p in refused} == {"Refused: OutOfResources"}, statuses
    assert_spool_holds_exactly(site, small_spool, acknowledged)
    failures = site.wait_rows(
        "select detail from accounts_auditevent"
        " where event_type = 'dicom.store' and outcome = 'failure'",
        len(refused),
    )
    assert [as_json(detail)["status"] for (detail,) in failures] == [OUT_OF_RESOURCES] * len(
        refused
    )

    # The worker indexes what was acknowledged into the store and empties the spool, even
    # with not one byte left for its attempt markers...
    fill_up(small_spool / ".filler")
    site.start_worker()
    site.wait_rows("select id from archive_instance", len(acknowledged), timeout=120)
    wait_until(
        lambda: not list(small_spool.glob("*.dcm")) and not list(small_spool.glob("*.attempts")),
        60,
        lambda: f"the spool kept {sorted(p.name for p in small_spool.iterdir())}",
    )
    # ...so the receiver accepts again: the refused files, sent once more, are stored.
    assert set(storescu(site, refused).values()) == {SUCCESS}
    site.wait_rows("select id from archive_instance", INSTANCES, timeout=120)
    for path in paths:
        kept = stored_file(site, sop_instance_uid(path))
        with open(path, "rb") as sent:
            assert data_set_bytes(kept) == data_set_bytes(sent.read()), path


def assert_spool_holds_exactly(site, spool, acknowledged: list[str]) -> None:
    """One intact spooled file and one ingest record per acknowledged instance, and nothing
    else: no half-written temporary, no record of a refused file."""
    records = site.wait_rows(
        "select id, size, sha256 from archive_ingestrecord", len(acknowledged), timeout=30
    )
    assert list((spool / "tmp").iterdir()) == []
    assert len(list(spool.glob("*.dcm"))) == len(acknowledged)
    expected = {sop_instance_uid(p): p for p in acknowledged}
    for record_id, size, sha256 in records:
        path = spool / f"{uuid.UUID(str(record_id))}.dcm"
        spooled = path.read_bytes()
        assert (len(spooled), hashlib.sha256(spooled).hexdigest()) == (size, sha256)
        uid = str(pydicom.dcmread(path).SOPInstanceUID)
        with open(expected.pop(uid), "rb") as sent:
            assert data_set_bytes(spooled) == data_set_bytes(sent.read())
    assert expected == {}
