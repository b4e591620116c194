# ruff: noqa: F811 - the fixtures are imported from test_manage_access.py and named as arguments
"""Hostile input on every /manage/api endpoint: SQL-ish and markup strings, 10,000
characters, unicode, NUL, lone surrogates, wrong JSON types, broken or huge bodies. The
answer is a JSON message (400 or 404), or the value is stored as given; never a 500."""

import json
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User

from backend.accounts.models import AccessGroup, GroupRule

from .test_manage_access import (  # noqa: F401 (fixtures)
    admin,
    as_admin,
    fast_passwords,
    post,
    radiologist,
    stranger,
)

pytestmark = pytest.mark.django_db

STRINGS = [
    "' OR 1=1 --",
    "'; DROP TABLE auth_user; --",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "x" * 10_000,
    "Zoë 山田 🙂 مرحبا",
    "",
    "   ",
    "nul\x00here",
    "lone \ud800 surrogate",
    "line\nbreak",
    "%_*?[]\\",
]
VALUES = [*STRINGS, None, 0, -1, 2**70, 1.5, True, [], ["x"], {"$gt": ""}]
BODIES = [
    b"{",
    b"[]",
    b'"text"',
    b"null",
    b"[" * 100_000,
    b"\xff\xfe\x00",
    b"{}" + b" " * 3_000_000,
]


@pytest.fixture
def ids(radiologist):
    group = AccessGroup.objects.create(name="Chest")
    rule = GroupRule.objects.create(group=group, attribute="modality", pattern="CT")
    return {"user": radiologist.pk, "group": group.pk, "rule": rule.pk}


def endpoints(ids) -> dict[str, list[str]]:
    """Each POST endpoint and the fields of its body."""
    user, group, rule = ids["user"], ids["group"], ids["rule"]
    return {
        "/manage/api/users": ["username", "first_name", "email", "role", "groups"],
        f"/manage/api/users/{user}": ["last_name", "referring_name", "role", "groups",
                                      "require_two_factor", "referring_accession_prefix"],
        f"/manage/api/users/{user}/end-sessions": ["sessions"],
        "/manage/api/groups": ["name", "description"],
        f"/manage/api/groups/{group}": ["name", "description"],
        f"/manage/api/groups/{group}/members/add": ["user"],
        f"/manage/api/groups/{group}/members/remove": ["user"],
        f"/manage/api/groups/{group}/rules": ["attribute", "pattern"],
        "/manage/api/shares": ["study_instance_uid", "user", "group", "expires_on"],
        f"/manage/api/rules/{rule}/delete": [],
    }  # fmt: skip


def assert_answered(response) -> None:
    assert response.status_code < 500
    if response.streaming:  # the CSV export
        assert response["Content-Type"].startswith("text/csv")
        return
    assert response["Content-Type"] == "application/json", response.content[:300]
    if response.status_code >= 400:
        assert response.json()["error"]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:24])
def test_it_answers_every_hostile_value_with_json(as_admin, ids, value):
    for path, fields in endpoints(ids).items():
        for field in fields:
            body = {"attribute": "institution", "username": "eve", field: value}
            assert_answered(post(as_admin, path, body))


@pytest.mark.parametrize("body", BODIES, ids=lambda b: repr(b)[:20])
def test_it_answers_broken_bodies_with_400(as_admin, ids, body):
    for path, fields in endpoints(ids).items():
        if not fields:
            continue  # reads no body
        response = as_admin.post(path, body, content_type="application/json")
        assert response.status_code == 400, (path, response.content[:200])
        assert response.json()["error"].startswith("the body")


# As a browser sends them: percent-encoded UTF-8, plus bytes that are not UTF-8 at all.
QUERY_VALUES = [quote(v) for v in STRINGS if "\ud800" not in v] + ["%ED%A0%80", "%FF%00"]


@pytest.mark.parametrize("value", QUERY_VALUES, ids=lambda v: v[:24])
def test_it_answers_hostile_query_parameters_with_json(as_admin, value):
    for path, key in [
        ("/manage/api/audit", "text"),
        ("/manage/api/audit", "since"),
        ("/manage/api/audit", "event_type"),
        ("/manage/api/audit", "user"),
        ("/manage/api/audit", "address"),
        ("/manage/api/audit", "before"),
        ("/manage/api/audit", "limit"),
        ("/manage/api/audit.csv", "patient_id"),
        ("/manage/api/studies", "q"),
        ("/manage/api/shares", "user"),
    ]:
        assert_answered(as_admin.get(f"{path}?{key}={value}"))


@pytest.mark.parametrize("value", ["10000", "-1", "99999999999999999999999", "1e3", "0x10"])
def test_it_answers_odd_ids_in_the_path(as_admin, value):
    response = as_admin.get(f"/manage/api/users/{value}")
    assert response.status_code in (400, 404)  # too large for an id, or no such user


def test_it_stores_markup_and_unicode_as_given(as_admin):
    name = "<script>alert(1)</script> Zoë 山田"
    response = post(as_admin, "/manage/api/groups", {"name": name})
    assert response.status_code == 201
    assert AccessGroup.objects.get().name == name
    assert response.json()["group"]["name"] == name


def test_it_refuses_a_10k_username_and_keeps_nothing(as_admin):
    response = post(as_admin, "/manage/api/users", {"username": "u" * 10_000})
    assert response.status_code == 400
    assert response.json()["error"] == "username is longer than 150 characters"
    assert not User.objects.filter(username__startswith="uuu").exists()


def test_it_refuses_a_lone_surrogate_sent_as_json(as_admin):
    body = json.dumps({"name": "bad \ud800"})  # ASCII JSON: "\\ud800"
    response = as_admin.post("/manage/api/groups", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "name holds characters that cannot be stored"
