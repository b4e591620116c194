"""C-CANCEL of a C-FIND (PS3.7 §9.3.2.3, PS3.4 §C.4.1.2): a real peer (dcmtk's findscu with
--cancel) that cancels after a few matches gets Cancel (FE00H) as the final response and no
more matches, and the receiver goes on answering on new associations."""

import json
import re

from pydicom.uid import generate_uid

from .conftest import needs_dcmtk
from .peers import dcmtk, find_statuses, new_instance

pytestmark = needs_dcmtk

# Enough matches that the SCP is still sending when the peer's C-CANCEL arrives: a few
# hundred pending responses leave in milliseconds, so thousands. A few are received through
# storescu; the rest are copies of the first written straight into the index.
STUDIES = 3000
SENT = 3
CANCEL_AFTER = 3
PENDING = re.compile(r"Find Response: \d+ \(Pending\)")


def store_studies(site, tmp_path, count: int) -> None:
    """`count` one-instance studies, sent by storescu on one association and indexed."""
    paths = []
    for number in range(count):
        ds = new_instance()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.PatientID = f"CANCEL{number:04d}"
        path = tmp_path / f"{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path))
    result = dcmtk("storescu", site.port, files=tuple(paths), timeout=120)
    assert result.returncode == 0, result.stderr
    site.wait_rows("select id from archive_study", count, timeout=180)


COPY = """
from pydicom.uid import generate_uid
from backend.archive.models import Study
first = Study.objects.get(patient__patient_id="CANCEL0000")
fields = [f.attname for f in Study._meta.concrete_fields if f.attname != "id"]
copies = []
for _ in range({count}):
    values = {{name: getattr(first, name) for name in fields}}
    copies.append(Study(**{{**values, "study_instance_uid": generate_uid()}}))
Study.objects.bulk_create(copies, batch_size=500)
"""


def copy_studies(site, count: int) -> None:
    """`count` more studies in the index, copies of the first sent (same patient, new UIDs)."""
    result = site.manage("shell", "-c", COPY.format(count=count))
    assert result.returncode == 0, result.stderr
    site.wait_rows("select id from archive_study", count + SENT, timeout=60)


def findscu(site, *options: str):
    return dcmtk(
        "findscu",
        site.port,
        "-aet",
        "VIEWER",
        "-S",
        *options,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID",
        "-k",
        "StudyInstanceUID",
    )


def test_it_stops_a_c_find_that_the_peer_cancels(embedded_site, tmp_path):
    embedded_site.add_node("VIEWER", "127.0.0.1")
    embedded_site.start_worker()
    embedded_site.start_receiver()
    store_studies(embedded_site, tmp_path, SENT)
    copy_studies(embedded_site, STUDIES - SENT)

    result = findscu(embedded_site, "--cancel", str(CANCEL_AFTER))

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Sending Cancel Request" in output, output
    # dcmtk names the status: FE00H, "Matching terminated due to Cancel request".
    assert re.search(r"Received Final Find Response \(Cancel", output), output
    pending = len(PENDING.findall(output))
    assert CANCEL_AFTER <= pending < STUDIES, output
    [(detail,)] = embedded_site.wait_rows(
        "select detail from accounts_auditevent where event_type = 'dicom.find'", 1
    )
    assert json.loads(detail)["end"] == "cancelled", detail

    # Healthy afterwards: C-ECHO, then a whole C-FIND on new associations.
    echo = dcmtk("echoscu", embedded_site.port)
    assert echo.returncode == 0 and "Received Echo Response (Success)" in echo.stderr
    complete = findscu(embedded_site)
    output = complete.stdout + complete.stderr
    assert "Received Final Find Response (Success)" in output, output
    assert len(PENDING.findall(output)) == STUDIES
    statuses = find_statuses(embedded_site.port, "VIEWER", PatientID="CANCEL0001")
    assert statuses == [0xFF00, 0x0000]
