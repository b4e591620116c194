"""A node limited to an access group, over the network: the real DICOM receiver answers its
C-FIND with that group's studies only, and its C-MOVE and C-GET send nothing else."""

import time

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from ..dimse.conftest import AE_TITLE, embedded_site, needs_dcmtk  # noqa: F401 - a fixture
from ..dimse.peers import client, dcmtk, new_instance
from ..dimse.test_get import getscu, received
from ..dimse.test_move import destination, movescu

pytestmark = needs_dcmtk

GROUP = """
from backend.accounts.models import AccessGroup, GroupRule
group = AccessGroup.objects.create(name="CT only")
GroupRule.objects.create(group=group, attribute="calling_ae", pattern="CT1")
"""


def store_from(site, tmp_path, calling_ae: str) -> pydicom.Dataset:
    """A new study sent by `calling_ae` (storescu)."""
    ds = new_instance("CT_small.dcm")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    path = tmp_path / f"{calling_ae}.dcm"
    ds.save_as(path)
    result = dcmtk("storescu", site.port, "-aet", calling_ae, files=(str(path),))
    assert "Store Response (Success)" in result.stderr + result.stdout, result.stderr
    return ds


def found_studies(port: int, calling_ae: str) -> set[str]:
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    assoc = client(calling_ae).associate("127.0.0.1", port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        responses = assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
        return {str(ds.StudyInstanceUID) for status, ds in responses if ds is not None}
    finally:
        assoc.release()


@pytest.fixture
def site(embedded_site, tmp_path):  # noqa: F811
    """CT1 and MR1 have each sent a study; VIEWER may see what CT1 sent, ALL everything."""
    embedded_site.start_worker()
    embedded_site.start_receiver()
    ct = store_from(embedded_site, tmp_path, "CT1")
    mr = store_from(embedded_site, tmp_path, "MR1")
    embedded_site.wait_rows("select id from archive_studysource where calling_ae != ''", 2)
    result = embedded_site.manage("shell", "-c", GROUP)
    assert result.returncode == 0, result.stderr
    embedded_site.add_node("VIEWER", "127.0.0.1", "--group", "CT only")
    embedded_site.add_node("ALL", "127.0.0.1")
    embedded_site.studies = {"ct": ct, "mr": mr}
    return embedded_site


def test_it_answers_a_c_find_with_the_group_s_studies_only(site):
    ct, mr = site.studies["ct"], site.studies["mr"]
    assert found_studies(site.port, "VIEWER") == {ct.StudyInstanceUID}
    assert found_studies(site.port, "ALL") == {ct.StudyInstanceUID, mr.StudyInstanceUID}


def test_it_moves_nothing_outside_the_group(site, tmp_path):
    with destination(site, tmp_path) as out:
        refused = movescu(site, "DEST", site.studies["mr"].StudyInstanceUID)
        time.sleep(0.5)
        assert not list(out.iterdir()), refused.stderr

        allowed = movescu(site, "DEST", site.studies["ct"].StudyInstanceUID)
        assert "Final Move Response (Success)" in allowed.stderr, allowed.stderr
        time.sleep(0.5)
        files = [pydicom.dcmread(path) for path in out.iterdir()]
    assert [ds.StudyInstanceUID for ds in files] == [site.studies["ct"].StudyInstanceUID]


def test_it_gets_nothing_outside_the_group(site, tmp_path):
    getscu(site, tmp_path / "mr", site.studies["mr"].StudyInstanceUID)
    assert received(tmp_path / "mr") == {}

    getscu(site, tmp_path / "ct", site.studies["ct"].StudyInstanceUID)
    assert set(received(tmp_path / "ct")) == {site.studies["ct"].SOPInstanceUID}


def test_it_moves_to_a_limited_destination_only_what_it_may_hold(site, tmp_path):
    with destination(site, tmp_path) as out:
        limit = "from backend.nodes.models import RemoteNode as N; "
        limit += "from backend.accounts.models import AccessGroup as G; "
        limit += (
            "N.objects.filter(ae_title='DEST').update(access_group=G.objects.get(name='CT only'))"
        )
        assert site.manage("shell", "-c", limit).returncode == 0

        movescu(site, "DEST", site.studies["mr"].StudyInstanceUID, calling_ae="ALL")
        time.sleep(0.5)
        assert not list(out.iterdir())

        allowed = movescu(site, "DEST", site.studies["ct"].StudyInstanceUID, calling_ae="ALL")
        assert "Final Move Response (Success)" in allowed.stderr, allowed.stderr
        time.sleep(0.5)
        files = [pydicom.dcmread(path) for path in out.iterdir()]
    assert [ds.StudyInstanceUID for ds in files] == [site.studies["ct"].StudyInstanceUID]
