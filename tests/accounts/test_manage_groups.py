# ruff: noqa: F811 - the fixtures are imported from test_manage_access.py and named as arguments
"""/manage/api/groups: create, rename, delete; members; rules with * and ?; and how many
studies each group's rules select, counted by the same rules access.py applies."""

import pytest
from django.contrib.auth.models import User

from backend.accounts.models import AccessGroup, AuditEvent, GroupRule, StudyShare
from backend.archive.access import visible_studies
from backend.archive.models import Study

from ..archive.helpers import receive_file, variant
from ..conftest import pydicom_file
from .test_manage_access import (  # noqa: F401 (fixtures)
    admin,
    as_admin,
    fast_passwords,
    post,
    radiologist,
    stranger,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def studies(tasks, tmp_path):
    """Three studies: two CT from St Mary's and St Mark's, one MR."""
    for institution in ("ST MARY'S", "ST MARK'S"):
        path = variant(
            tmp_path,
            InstitutionName=institution,
            StudyInstanceUID="new-uid",
            SeriesInstanceUID="new-uid",
            SOPInstanceUID="new-uid",
        )
        receive_file(path, tasks)
    receive_file(pydicom_file("MR_small.dcm"), tasks)
    assert Study.objects.count() == 3


@pytest.fixture
def chest(as_admin) -> dict:
    return post(as_admin, "/manage/api/groups", {"name": "Chest", "description": "CT"}).json()[
        "group"
    ]


def group_named(as_admin, name: str) -> dict:
    groups = as_admin.get("/manage/api/groups").json()["groups"]
    return next(g for g in groups if g["name"] == name)


def test_it_creates_a_group_and_audits_it(as_admin, admin, chest):
    assert (chest["name"], chest["description"], chest["studies"]) == ("Chest", "CT", 0)
    event = AuditEvent.objects.get(event_type="admin.group_changed")
    assert (event.user, event.detail["action"], event.detail["group"]["name"]) == (
        admin,
        "created",
        "Chest",
    )


def test_it_refuses_a_second_group_of_the_same_name(as_admin, chest):
    response = post(as_admin, "/manage/api/groups", {"name": "chest"})
    assert response.status_code == 400
    assert response.json()["error"] == "a group named chest exists"


def test_it_renames_a_group(as_admin, chest):
    response = post(as_admin, f"/manage/api/groups/{chest['id']}", {"name": "Thorax"})

    assert response.json()["group"]["name"] == "Thorax"
    changed = AuditEvent.objects.filter(event_type="admin.group_changed").latest("pk").detail
    assert changed["changed"] == {"name": {"from": "Chest", "to": "Thorax"}}


def test_it_adds_and_removes_members(as_admin, chest, radiologist):
    path = f"/manage/api/groups/{chest['id']}/members"

    added = post(as_admin, f"{path}/add", {"user": radiologist.pk}).json()["group"]
    assert [m["username"] for m in added["members"]] == ["rad"]
    removed = post(as_admin, f"{path}/remove", {"user": radiologist.pk}).json()["group"]
    assert removed["members"] == []

    actions = AuditEvent.objects.filter(event_type="admin.group_changed").order_by("pk")
    assert [e.detail["action"] for e in actions] == ["created", "member_added", "member_removed"]
    assert actions.last().detail["target"]["username"] == "rad"


def test_it_refuses_to_add_a_member_twice_or_remove_a_stranger(as_admin, chest, radiologist):
    path = f"/manage/api/groups/{chest['id']}/members"
    post(as_admin, f"{path}/add", {"user": radiologist.pk})

    again = post(as_admin, f"{path}/add", {"user": radiologist.pk})
    post(as_admin, f"{path}/remove", {"user": radiologist.pk})
    gone = post(as_admin, f"{path}/remove", {"user": radiologist.pk})

    assert again.json()["error"] == "rad is already in Chest"
    assert gone.json()["error"] == "rad is not in Chest"


def test_it_lists_group_names_alone_for_pickers(as_admin, chest):
    brief = as_admin.get("/manage/api/groups", {"brief": "1"}).json()
    assert brief == {"groups": [{"id": chest["id"], "name": "Chest"}]}


def test_it_refuses_an_unknown_member(as_admin, chest):
    response = post(as_admin, f"/manage/api/groups/{chest['id']}/members/add", {"user": 999})
    assert response.status_code == 404


@pytest.mark.usefixtures("studies")
@pytest.mark.parametrize(
    "attribute, pattern, count",
    [
        ("all", "", 3),
        ("institution", "ST MARY'S", 1),
        ("institution", "ST MAR?'S", 2),
        ("institution", "ST*", 2),
        ("modality", "ct", 2),
        ("modality", "M*", 1),
        ("institution", "NOWHERE", 0),
    ],
)
def test_it_counts_the_studies_a_rule_selects(as_admin, chest, attribute, pattern, count):
    response = post(
        as_admin,
        f"/manage/api/groups/{chest['id']}/rules",
        {"attribute": attribute, "pattern": pattern},
    )

    group = response.json()["group"]
    assert group["rules"][0]["studies"] == count
    assert group["studies"] == count


@pytest.mark.usefixtures("studies")
def test_it_counts_what_its_members_then_see(as_admin, chest, stranger):
    for pattern in ("ST MARK'S", "MR"):
        attribute = "institution" if pattern.startswith("ST") else "modality"
        body = {"attribute": attribute, "pattern": pattern}
        post(as_admin, f"/manage/api/groups/{chest['id']}/rules", body)
    post(as_admin, f"/manage/api/groups/{chest['id']}/members/add", {"user": stranger.pk})

    group = group_named(as_admin, "Chest")

    assert [r["studies"] for r in group["rules"]] == [1, 1]
    assert group["studies"] == 2 == visible_studies(stranger).count()


def test_it_removes_a_rule_and_audits_it(as_admin, chest):
    group = post(
        as_admin,
        f"/manage/api/groups/{chest['id']}/rules",
        {"attribute": "modality", "pattern": "CT"},
    ).json()["group"]
    rule_id = group["rules"][0]["id"]

    response = post(as_admin, f"/manage/api/rules/{rule_id}/delete")

    assert response.json()["group"]["rules"] == []
    events = AuditEvent.objects.filter(event_type="admin.rule_changed").order_by("pk")
    assert [e.detail["action"] for e in events] == ["added", "removed"]
    assert events.last().detail["rule"] == {"id": rule_id, "attribute": "modality", "pattern": "CT"}


@pytest.mark.parametrize(
    "body, message",
    [
        ({"attribute": "colour", "pattern": "x"}, "attribute must be one of"),
        ({"attribute": "modality", "pattern": ""}, "pattern is required"),
        ({"attribute": "modality", "pattern": "x" * 201}, "longer than 200"),
        ({"attribute": "modality"}, "pattern is required"),
        ({"attribute": ["all"]}, "attribute must be one of"),
    ],
)
def test_it_refuses_bad_rules(as_admin, chest, body, message):
    response = post(as_admin, f"/manage/api/groups/{chest['id']}/rules", body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not GroupRule.objects.exists()


def test_it_refuses_the_same_rule_twice(as_admin, chest):
    body = {"attribute": "modality", "pattern": "CT"}
    post(as_admin, f"/manage/api/groups/{chest['id']}/rules", body)
    assert post(as_admin, f"/manage/api/groups/{chest['id']}/rules", body).status_code == 400


@pytest.mark.usefixtures("studies")
def test_it_deletes_a_group_with_its_rules_and_shares(as_admin, admin, chest, radiologist):
    group = AccessGroup.objects.get(pk=chest["id"])
    group.members.add(radiologist)
    StudyShare.objects.create(study=Study.objects.first(), group=group, created_by=admin)

    response = post(as_admin, f"/manage/api/groups/{chest['id']}/delete")

    assert response.json() == {"deleted": chest["id"]}
    assert not AccessGroup.objects.filter(pk=chest["id"]).exists()
    assert User.objects.filter(pk=radiologist.pk).exists()
    detail = AuditEvent.objects.filter(event_type="admin.group_changed").latest("pk").detail
    assert (detail["action"], detail["members"], detail["shares_removed"]) == (
        "deleted",
        ["rad"],
        1,
    )


def test_it_answers_404_for_an_unknown_group_or_rule(as_admin):
    assert post(as_admin, "/manage/api/groups/999", {"name": "x"}).status_code == 404
    assert post(as_admin, "/manage/api/groups/999/delete").status_code == 404
    assert post(as_admin, "/manage/api/rules/999/delete").status_code == 404
