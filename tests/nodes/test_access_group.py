"""A registered node limited to an access group queries and retrieves that group's studies
only (its rules and its shares), as the group's members see them; a node without a group
sees every study. The DICOM receiver's C-FIND, C-MOVE and C-GET all ask studies_for_node."""

from datetime import timedelta

import pydicom
import pytest
from django.utils import timezone

from backend.accounts.models import AccessGroup, GroupRule, StudyShare
from backend.archive import ingest
from backend.archive.models import Study
from backend.nodes.jobs import JobError, start_send
from backend.nodes.models import RemoteNode
from backend.nodes.services import add_node, studies_for_node

from ..archive.helpers import variant

pytestmark = pytest.mark.django_db(transaction=True)


def receive(path, calling_ae: str) -> None:
    with open(path, "rb") as f:
        ingest.receive(ingest.read_chunks(f), source="dimse", calling_ae=calling_ae)


@pytest.fixture
def studies(tasks, tmp_path) -> dict[str, Study]:
    """Four studies: from CT1, from MR1 at St Mary, an ultrasound, and one from nowhere."""
    made = {}
    for label, calling_ae, changes in [
        ("ct", "CT1", {"InstitutionName": "Elsewhere"}),
        ("mr", "MR1", {"InstitutionName": "St Mary"}),
        ("us", "US1", {"Modality": "US", "InstitutionName": "Elsewhere"}),
        ("other", "OTHER", {"InstitutionName": "Elsewhere"}),
    ]:
        path = variant(
            tmp_path,
            StudyInstanceUID="new-uid",
            SeriesInstanceUID="new-uid",
            SOPInstanceUID="new-uid",
            **changes,
        )
        receive(path, calling_ae)
        tasks.run()
        made[label] = Study.objects.get(study_instance_uid=pydicom.dcmread(path).StudyInstanceUID)
    return made


@pytest.fixture
def group() -> AccessGroup:
    return AccessGroup.objects.create(name="Cardiology")


def node_in(group: AccessGroup | None) -> RemoteNode:
    return RemoteNode.objects.create(
        ae_title="VIEWER", host="10.0.0.7", port=104, access_group=group
    )


def labels(studies: dict[str, Study], queryset) -> set[str]:
    pks = set(queryset.values_list("pk", flat=True))
    return {label for label, study in studies.items() if study.pk in pks}


def test_it_gives_a_node_without_a_group_every_study(studies):
    assert labels(studies, studies_for_node(node_in(None))) == set(studies)


def test_it_gives_no_node_nothing(studies):
    assert not studies_for_node(None).exists()


def test_it_gives_a_group_without_rules_nothing(studies, group):
    assert labels(studies, studies_for_node(node_in(group))) == set()


@pytest.mark.parametrize(
    ("attribute", "pattern", "expected"),
    [
        (GroupRule.Attribute.CALLING_AE, "CT1", {"ct"}),
        (GroupRule.Attribute.INSTITUTION, "St Mary*", {"mr"}),
        (GroupRule.Attribute.MODALITY, "US", {"us"}),
        (GroupRule.Attribute.ALL, "", {"ct", "mr", "us", "other"}),
    ],
)
def test_it_gives_a_node_the_studies_its_group_rules_select(
    studies, group, attribute, pattern, expected
):
    GroupRule.objects.create(group=group, attribute=attribute, pattern=pattern)
    assert labels(studies, studies_for_node(node_in(group))) == expected


def test_it_adds_the_group_s_unexpired_shares(studies, group):
    GroupRule.objects.create(group=group, attribute=GroupRule.Attribute.CALLING_AE, pattern="CT1")
    StudyShare.objects.create(study=studies["other"], group=group)
    StudyShare.objects.create(
        study=studies["us"], group=group, expires_at=timezone.now() - timedelta(minutes=1)
    )
    StudyShare.objects.create(study=studies["mr"], group=AccessGroup.objects.create(name="Other"))
    assert labels(studies, studies_for_node(node_in(group))) == {"ct", "other"}


def test_it_keeps_a_group_that_a_node_uses(group):
    node_in(group)
    with pytest.raises(Exception, match="protected"):
        group.delete()
    assert AccessGroup.objects.filter(pk=group.pk).exists()


def test_it_registers_a_node_with_its_group(group):
    node = add_node("CATHLAB", "10.0.0.9", 104, group="Cardiology")
    assert RemoteNode.objects.get(pk=node.pk).access_group == group


def test_it_sends_a_limited_node_only_its_group_s_studies(studies, group):
    GroupRule.objects.create(group=group, attribute=GroupRule.Attribute.CALLING_AE, pattern="CT1")
    node = node_in(group)

    with pytest.raises(JobError, match="only studies of its access group"):
        start_send(node, studies["mr"].study_instance_uid)
    assert start_send(node, studies["ct"].study_instance_uid).kind == "send"
