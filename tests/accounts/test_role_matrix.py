"""Who sees what: each role, through every way of seeing studies, sees exactly its studies.

One archive of ten studies, each placed to be selected by exactly one rule; five users:
an administrator, a radiologist in a group (rules on institution, sending AE title and
modality, plus a share with the group), a referring physician (by name, by accession
prefix, by a share with an expiry), an uploader (what they stored with STOW-RS) and a
stranger. Each channel is asked: /api/studies, QIDO-RS (studies, series, instances),
WADO-RS metadata and frames, WADO-URI, /api/series/<id>/thumbnail, the worklist WebSocket
and the viewer WebSocket.
"""

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from backend.accounts.models import AccessGroup, GroupRule, Profile, Role, StudyShare
from backend.archive import ingest
from backend.archive.models import Series, Study
from backend.live import audience, relay
from backend.live.events import STUDIES_GROUP

from ..archive.helpers import variant
from ..dicomweb.fixtures import build_multipart

pytestmark = pytest.mark.django_db(transaction=True)

# Each study, and what sets it apart from the others.
STUDIES = {
    "institution": {"InstitutionName": "St Mary Hospital"},
    "calling_ae": {"calling_ae": "MRSCANNER"},
    "modality": {"Modality": "US"},
    "group_share": {},
    "referring_name": {"ReferringPhysicianName": "Smith^John"},
    "accession": {"AccessionNumber": "REF7-0042"},
    "share": {},
    "expired_share": {},
    "uploaded": {"stow": True},
    "nobody": {},
}
EXPECTED = {
    "admin": set(STUDIES),
    "radiologist": {"institution", "calling_ae", "modality", "group_share"},
    "referring": {"referring_name", "accession", "share"},
    "uploader": {"uploaded"},
    "stranger": set(),
}


@dataclass
class Archive:
    uids: dict[str, str]  # label -> StudyInstanceUID
    users: dict[str, User]

    def label(self, uid: str) -> str:
        return {value: key for key, value in self.uids.items()}[uid]

    def labels(self, uids) -> set[str]:
        return {self.label(uid) for uid in uids if uid in self.uids.values()}


def make_user(name: str, role: str | None, **profile) -> User:
    user = User.objects.create_user(name)
    if role:
        Profile.objects.create(user=user, role=role, **profile)
    return user


def stow(user: User, path) -> None:
    client = Client()
    client.force_login(user)
    body, content_type = build_multipart([path.read_bytes()])
    response = client.post("/dicomweb/studies", body, content_type=content_type)
    assert response.status_code == 200, response.content


def receive(path, calling_ae: str) -> None:
    with open(path, "rb") as f:
        ingest.receive(ingest.read_chunks(f), source="dimse", calling_ae=calling_ae)


@pytest.fixture
def archive(tasks, tmp_path) -> Archive:
    users = {
        "admin": make_user("admin", Role.ADMIN),
        "radiologist": make_user("radiologist", Role.RADIOLOGIST),
        "referring": make_user(
            "referring",
            Role.REFERRING,
            referring_name="SMITH^JOHN",
            referring_accession_prefix="REF7-",
        ),
        "uploader": make_user("uploader", Role.UPLOADER),
        "stranger": make_user("stranger", None),
    }
    uids = {}
    for number, (label, changes) in enumerate(STUDIES.items()):
        changes = dict(changes)
        calling_ae = changes.pop("calling_ae", "OTHERAE")
        uploaded = changes.pop("stow", False)
        attributes = {
            "InstitutionName": "Elsewhere",
            "ReferringPhysicianName": "Nobody^Else",
            "AccessionNumber": f"ACC-{number}",
            **changes,
        }
        path = variant(
            tmp_path,
            StudyInstanceUID="new-uid",
            SeriesInstanceUID="new-uid",
            SOPInstanceUID="new-uid",
            **attributes,
        )
        stow(users["uploader"], path) if uploaded else receive(path, calling_ae)
        tasks.run()
        uids[label] = Study.objects.latest("pk").study_instance_uid
    _rules(users, uids)
    return Archive(uids, users)


def _rules(users: dict[str, User], uids: dict[str, str]) -> None:
    group = AccessGroup.objects.create(name="Reading room")
    group.members.add(users["radiologist"])
    for attribute, pattern in [
        (GroupRule.Attribute.INSTITUTION, "St Mary*"),
        (GroupRule.Attribute.CALLING_AE, "MRSCANNER"),
        (GroupRule.Attribute.MODALITY, "US"),
    ]:
        GroupRule.objects.create(group=group, attribute=attribute, pattern=pattern)
    study = Study.objects.get
    StudyShare.objects.create(study=study(study_instance_uid=uids["group_share"]), group=group)
    tomorrow, yesterday = (timezone.now() + timedelta(days=d) for d in (1, -1))
    referring = users["referring"]
    StudyShare.objects.create(
        study=study(study_instance_uid=uids["share"]), user=referring, expires_at=tomorrow
    )
    StudyShare.objects.create(
        study=study(study_instance_uid=uids["expired_share"]), user=referring, expires_at=yesterday
    )


def client_of(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- The channels -----------------------------------------------------------------------


def via_api(archive: Archive, user: User) -> set[str]:
    rows = client_of(user).get("/api/studies?limit=200").json()["studies"]
    return archive.labels(row["study_instance_uid"] for row in rows)


def via_qido(archive: Archive, user: User, level: str = "studies") -> set[str]:
    response = client_of(user).get(f"/dicomweb/{level}?limit=1000")
    assert response.status_code == 200, response.content
    results = response.json() if response.content else []
    return archive.labels(result["0020000D"]["Value"][0] for result in results)


def via_retrieve(archive: Archive, user: User, url_of) -> set[str]:
    """The studies whose resource (url_of(study)) answers 200; any other answer must be
    404, exactly as for a study that does not exist."""
    client, seen = client_of(user), set()
    for label, uid in archive.uids.items():
        response = client.get(url_of(Study.objects.get(study_instance_uid=uid)))
        assert response.status_code in (200, 404), (label, response.status_code)
        if response.status_code == 200:
            seen.add(label)
    return seen


def metadata_url(study: Study) -> str:
    return f"/dicomweb/studies/{study.study_instance_uid}/metadata"


def frames_url(study: Study) -> str:
    series = study.series.get()
    instance = series.instances.get()
    return (
        f"/dicomweb/studies/{study.study_instance_uid}/series/{series.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}/frames/1"
    )


def wado_uri_url(study: Study) -> str:
    series = study.series.get()
    instance = series.instances.get()
    return (
        f"/wado?requestType=WADO&studyUID={study.study_instance_uid}"
        f"&seriesUID={series.series_instance_uid}&objectUID={instance.sop_instance_uid}"
        "&contentType=application/dicom"
    )


def thumbnail_url(study: Study) -> str:
    return f"/api/series/{Series.objects.get(study=study).pk}/thumbnail"


def cookie_of(user: User) -> tuple[bytes, bytes]:
    client = client_of(user)
    name = django_settings.SESSION_COOKIE_NAME
    return (b"cookie", f"{name}={client.cookies[name].value}".encode())


ORIGIN = (b"origin", b"http://localhost")


def via_worklist_socket(archive: Archive, user: User) -> set[str]:
    """Announce a change of every study; the studies whose announcement reaches the user."""
    cookie = cookie_of(user)

    @async_to_sync
    async def listen() -> set[str]:
        from backend.asgi import application

        ws = WebsocketCommunicator(application, "/ws/worklist", [ORIGIN, cookie])
        assert (await ws.connect())[0]
        for uid in archive.uids.values():
            event = {
                "type": "study.changed",
                "study_instance_uid": uid,
                "change": "derived",
                "number_of_series": 1,
                "number_of_instances": 1,
                "modalities_in_study": "CT",
            }
            await get_channel_layer().group_send(STUDIES_GROUP, {"type": "event", "event": event})
        heard = set()
        while not await ws.receive_nothing(timeout=0.5):
            heard.add((await ws.receive_json_from())["study_instance_uid"])
        await ws.disconnect()
        await _stop_relay()
        return heard

    return archive.labels(listen())


def via_viewer_socket(archive: Archive, user: User) -> set[str]:
    """The studies the viewer's WebSocket opens (its first message is the manifest)."""
    cookie = cookie_of(user)

    @async_to_sync
    async def open_each() -> set[str]:
        from backend.asgi import application

        opened = set()
        for label, uid in archive.uids.items():
            ws = WebsocketCommunicator(application, f"/ws/viewer/{uid}", [ORIGIN, cookie])
            connected, _ = await ws.connect()
            if connected:
                first = await ws.receive_output(timeout=5)
                if first["type"] == "websocket.send" and first.get("text"):
                    if json.loads(first["text"]).get("type") == "study":
                        opened.add(label)
            await ws.disconnect()
        return opened

    return open_each()


async def _stop_relay() -> None:
    if relay._task is not None:
        relay._task.cancel()
        await asyncio.gather(relay._task, return_exceptions=True)


@pytest.fixture(autouse=True)
def fresh_layer(settings, monkeypatch):
    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(relay, "_task", None)
    monkeypatch.setattr(audience, "CACHE_SECONDS", 0.0)


CHANNELS = {
    "/api/studies": via_api,
    "QIDO studies": via_qido,
    "QIDO series": lambda archive, user: via_qido(archive, user, "series"),
    "QIDO instances": lambda archive, user: via_qido(archive, user, "instances"),
    "WADO-RS metadata": lambda archive, user: via_retrieve(archive, user, metadata_url),
    "WADO-RS frames": lambda archive, user: via_retrieve(archive, user, frames_url),
    "WADO-URI": lambda archive, user: via_retrieve(archive, user, wado_uri_url),
    "thumbnails": lambda archive, user: via_retrieve(archive, user, thumbnail_url),
    "worklist WebSocket": via_worklist_socket,
    "viewer WebSocket": via_viewer_socket,
}


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_it_shows_each_role_exactly_its_studies_everywhere(archive, role):
    user = archive.users[role]
    seen = {name: channel(archive, user) for name, channel in CHANNELS.items()}
    assert seen == {name: EXPECTED[role] for name in CHANNELS}


def test_it_stops_showing_a_study_once_its_share_expires(archive):
    referring = archive.users["referring"]
    StudyShare.objects.filter(user=referring).update(expires_at=timezone.now())
    expected = EXPECTED["referring"] - {"share"}
    for name, channel in CHANNELS.items():
        assert channel(archive, referring) == expected, name


def test_it_shows_a_group_share_to_every_member_and_no_one_else(archive):
    colleague = make_user("colleague", Role.RADIOLOGIST)
    AccessGroup.objects.get(name="Reading room").members.add(colleague)
    assert via_api(archive, colleague) == EXPECTED["radiologist"]
    AccessGroup.objects.get(name="Reading room").members.remove(colleague)
    assert via_api(archive, colleague) == set()


def test_it_follows_a_change_of_role_at_once(archive):
    uploader = archive.users["uploader"]
    Profile.objects.filter(user=uploader).update(role=Role.ADMIN)
    assert via_api(archive, uploader) == set(STUDIES)
    assert via_worklist_socket(archive, uploader) == set(STUDIES)


def test_it_shows_nothing_to_a_deactivated_user(archive):
    admin = archive.users["admin"]
    client = client_of(admin)
    User.objects.filter(pk=admin.pk).update(is_active=False)
    assert client.get("/api/studies").status_code == 302
    assert client.get("/dicomweb/studies").status_code == 401
