"""Every URL pattern and WebSocket route of the project, walked: no entry point serves
anything to an anonymous visitor, and none lets a signed-in user without access to a study
see it, its series, instances, frames, thumbnails or metadata, or learn that it exists.

The patterns are read from Django's resolver and from backend/live/routing.py, so pages and
APIs added later are walked too. A new pattern whose path parameter the walk does not know
fails test_it_knows_every_path_parameter until PARAMETERS below says what to put there.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.apps import apps
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.http import JsonResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, path, resolve
from django.utils import timezone

from backend.accounts.models import (
    AccessGroup,
    GroupRule,
    StudyShare,
    UserSession,
)
from backend.accounts.tokens import create_token
from backend.archive.models import Instance, Series, Study
from backend.live import relay
from backend.live.models import Annotation
from backend.live.routing import websocket_urlpatterns
from backend.nodes.models import RemoteJob, RemoteNode

from ..archive.helpers import receive_file, variant
from ..conftest import grant_every_study

pytestmark = pytest.mark.django_db(transaction=True)

PATIENT_NAME = "Walksentinel^Hildegard"
PATIENT_ID = "WALK-PID-7731"
ACCESSION = "WALKACC7731"
DESCRIPTION = "Walk sentinel study"
FAKE_UIDS = {
    "study": "1.2.826.0.1.3680043.8.498.999991",
    "series": "1.2.826.0.1.3680043.8.498.999992",
    "instance": "1.2.826.0.1.3680043.8.498.999993",
}
METHODS = ("get", "post", "put", "delete")

# Open to anonymous visitors, each for a reason; they must still never fail (500) and
# never show study data.
ANONYMOUS_ALLOWED = {
    "healthz": "liveness for load balancers: no data",
    "login/": "the sign-in form",
    "login/code/": "the second sign-in step (asks for the form again without a pending user)",
    "login/sso/": "starts single sign-on (redirects to the provider, or 404 when off)",
    "login/sso/callback/": "the provider's redirect back (refuses without a pending login)",
    "logout/": "signing out is harmless",
    "admin/login/": "Django admin's sign-in (sends to /login/)",
    "admin/logout/": "signing out is harmless",
    "manage/invite/<str:token>": "an invitation link: the token is the credential",
    "manage/invite/<str:token>/account": "the invitation's form: the token is the credential",
    "dicomweb/^(?P<path>.*)$": "no such DICOMweb resource: 404 to everyone, as Django's own",
}


# --- Walking the patterns -----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    pattern: str  # as written in the URLconfs, joined: "api/series/<int:series_id>/thumbnail"
    parameters: tuple[str, ...]

    @property
    def touches_studies(self) -> bool:
        return bool(set(self.parameters) & STUDY_PARAMETERS)


_ROUTE_PARAMETER = re.compile(r"(?<!\?P)<(?:(?P<converter>[^>:]+):)?(?P<name>\w+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>[^)]*)\)")


def routes(resolver: URLResolver | None = None, prefix: str = "") -> Iterator[Route]:
    """Every URL pattern under `resolver`, recursively, with its full pattern."""
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from routes(entry, pattern)
        elif isinstance(entry, URLPattern):
            names = [m["name"] for m in _ROUTE_PARAMETER.finditer(pattern)]
            names += [m["name"] for m in _REGEX_GROUP.finditer(pattern)]
            yield Route(pattern, tuple(names))


def websocket_routes() -> list[Route]:
    found = []
    for entry in websocket_urlpatterns:
        pattern = str(entry.pattern)
        names = tuple(m["name"] for m in _ROUTE_PARAMETER.finditer(pattern))
        found.append(Route(pattern, names))
    return found


def fill(route: Route, values: dict[str, str]) -> str:
    """The route's URL with each parameter replaced by its value (a regex group without a
    value: its first alternative)."""
    url = _ROUTE_PARAMETER.sub(lambda m: values[m["name"]], route.pattern)
    url = _REGEX_GROUP.sub(lambda m: values.get(m["name"]) or m["body"].split("|")[0], url)
    return "/" + url.replace("^", "").replace("$", "")


# --- The site: a hidden study, its owner, a stranger and the other objects ids name -------

STUDY_PARAMETERS = {
    "study",
    "study_instance_uid",
    "series",
    "instance",
    "sop_instance_uid",
    "series_id",
    "annotation_id",
}
# What each path parameter names. A name not here fails test_it_knows_every_path_parameter.
PARAMETERS = {
    "study": "the study's StudyInstanceUID",
    "study_instance_uid": "the study's StudyInstanceUID",
    "series": "its SeriesInstanceUID",
    "series_id": "its series' primary key",
    "instance": "its SOPInstanceUID",
    "sop_instance_uid": "its SOPInstanceUID",
    "annotation_id": "the owner's annotation on it",
    "frames": "frame numbers",
    "tag": "a bulk data tag",
    "ae_title": "a registered node",
    "job_id": "a remote job",
    "user_id": "the owner's user id",
    "id": "the owner's user id (Django admin's password page)",
    "group_id": "an access group",
    "rule_id": "a group rule",
    "share_id": "a study share",
    "token_id": "the owner's API token",
    "session_id": "the owner's browser session",
    "token": "an invitation token (a wrong one)",
    "object_id": "the first row of the admin page's model",
    "content_type_id": "a content type (admin's view on site)",
    "app_label": "an app of the admin",
    "url": "an admin page that does not exist",
    "path": "a DICOMweb path that does not exist",
}


@dataclass
class Site:
    owner: User
    stranger: User
    study: Study
    values: dict[str, str]

    def fake_values(self) -> dict[str, str]:
        fake = dict(self.values)
        fake.update(
            study=FAKE_UIDS["study"],
            study_instance_uid=FAKE_UIDS["study"],
            series=FAKE_UIDS["series"],
            instance=FAKE_UIDS["instance"],
            sop_instance_uid=FAKE_UIDS["instance"],
            series_id="999999",
            annotation_id="999999",
        )
        return fake

    def secrets(self) -> list[str]:
        """What must never reach someone who may not see the study."""
        instance = Instance.objects.filter(series__study=self.study).first()
        series = Series.objects.filter(study=self.study).first()
        return [
            PATIENT_NAME.split("^")[0],
            PATIENT_ID,
            ACCESSION,
            DESCRIPTION,
            self.study.study_instance_uid,
            series.series_instance_uid,
            instance.sop_instance_uid,
        ]


def signed_in(user: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.fixture
def site(tasks, tmp_path) -> Site:
    path_ = variant(
        tmp_path,
        PatientName=PATIENT_NAME,
        PatientID=PATIENT_ID,
        AccessionNumber=ACCESSION,
        StudyDescription=DESCRIPTION,
        StudyInstanceUID="new-uid",
        SeriesInstanceUID="new-uid",
        SOPInstanceUID="new-uid",
    )
    assert receive_file(path_, tasks).state == "stored"
    study = Study.objects.get()
    series = study.series.get()
    instance = series.instances.get()
    owner = grant_every_study(User.objects.create_user("owner", password="unused password 1"))
    stranger = User.objects.create_user("stranger", password="unused password 2")
    return Site(owner, stranger, study, _values(owner, study, series, instance))


def _values(owner, study, series, instance) -> dict[str, str]:
    signed_in(owner)  # a browser session of the owner's, for session_id
    group = AccessGroup.objects.get(name="Every study")
    node = RemoteNode.objects.create(ae_title="PACS", host="127.0.0.1", port=104)
    share = StudyShare.objects.create(
        study=study, user=owner, expires_at=timezone.now() + timedelta(days=1)
    )
    token = create_token(owner, "walk")[0]
    job = RemoteJob.objects.create(kind=RemoteJob.Kind.ECHO, node=node, created_by=owner)
    content_type = apps.get_model("contenttypes", "ContentType").objects.first()
    annotation = Annotation.objects.create(
        user=owner,
        study=study,
        sop_instance_uid=instance.sop_instance_uid,
        kind=Annotation.Kind.POINT,
        points=[[1, 1]],
        label=DESCRIPTION,
    )
    return {
        "study": study.study_instance_uid,
        "study_instance_uid": study.study_instance_uid,
        "series": series.series_instance_uid,
        "series_id": str(series.pk),
        "instance": instance.sop_instance_uid,
        "sop_instance_uid": instance.sop_instance_uid,
        "annotation_id": str(annotation.pk),
        "frames": "1",
        "tag": "7FE00010",
        "ae_title": node.ae_title,
        "job_id": str(job.pk),
        "user_id": str(owner.pk),
        "id": str(owner.pk),
        "group_id": str(group.pk),
        "rule_id": str(GroupRule.objects.filter(group=group).first().pk),
        "share_id": str(share.pk),
        "token_id": str(token.pk),
        "session_id": str(UserSession.objects.filter(user=owner).first().pk),
        "token": "not-an-invitation-token",
        "content_type_id": str(content_type.pk),
        "url": "no/such/page/",
        "path": "no/such/resource",
    }


def values_for(route: Route, values: dict[str, str]) -> dict[str, str]:
    """object_id is the first row of the model an admin URL names."""
    match = re.match(r"admin/(\w+)/(\w+)/<path:object_id>", route.pattern)
    if match:
        first = apps.get_model(match[1], match[2]).objects.order_by("pk").first()
        values = {**values, "object_id": str(first.pk if first else 1)}
    elif "object_id" in route.parameters:
        values = {**values, "object_id": "1"}
    return values


# --- What counts as refused -------------------------------------------------------------

LOGIN_PAGES = ("/login/", "/admin/login/")


def refused(client: Client, response, hops: int = 3) -> bool:
    """401/403/405, or a redirect to a sign-in page, or to a page of ours that refuses."""
    if response.status_code in (401, 403, 405):
        return True
    if response.status_code in (301, 302, 303, 307, 308):
        location = urlsplit(response["Location"])
        if location.netloc and location.netloc != "testserver":
            return False
        if location.path.startswith(LOGIN_PAGES):
            return True
        return hops > 0 and refused(client, client.get(response["Location"]), hops - 1)
    return False


def body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")


def leaks(text: str, secrets: list[str], allowed: str = "") -> list[str]:
    """The secrets in `text`, but those the request itself named (its URL)."""
    return [secret for secret in secrets if secret in text and secret not in allowed]


def walk_anonymously(site: Site) -> list[str]:
    problems = []
    client = Client(raise_request_exception=False)
    for route in routes():
        url = fill(route, values_for(route, site.values))
        for method in METHODS:
            response = getattr(client, method)(url)
            text = body(response)
            if response.status_code >= 500:
                problems.append(f"{method.upper()} {url}: {response.status_code}")
            elif found := leaks(text, site.secrets(), url):
                problems.append(f"{method.upper()} {url} shows {found} to anyone")
            elif route.pattern not in ANONYMOUS_ALLOWED and not refused(client, response):
                problems.append(f"{method.upper()} {url}: {response.status_code}, not refused")
    return problems


def walk_as_stranger(site: Site) -> list[str]:
    """A signed-in user without access: nothing of the study anywhere; for each path that
    names it, the very answer a study that does not exist gets."""
    problems = []
    for route in routes():
        client = signed_in(site.stranger)
        url = fill(route, values_for(route, site.values))
        response = client.get(url)
        text = body(response)
        if response.status_code >= 500:
            problems.append(f"GET {url}: {response.status_code}")
        elif found := leaks(text, site.secrets(), url):
            problems.append(f"GET {url} shows {found} to a user without access")
        elif route.touches_studies:
            problems += _same_as_missing(site, route, url, response, text)
    return problems


def _same_as_missing(site: Site, route: Route, url: str, response, text: str) -> list[str]:
    fake_url = fill(route, values_for(route, site.fake_values()))
    fake = signed_in(site.stranger).get(fake_url)
    if response.status_code != fake.status_code:
        return [f"GET {url}: {response.status_code}, a missing study {fake.status_code}"]
    for key in ("study", "series", "instance"):
        text = text.replace(site.values[key], FAKE_UIDS[key])
    text = text.replace(f"/{site.values['annotation_id']}", "/999999")
    if text != body(fake):
        return [f"GET {url}: the answer differs from a missing study's"]
    return []


def test_it_knows_every_path_parameter():
    unknown = {
        (route.pattern, name)
        for route in [*routes(), *websocket_routes()]
        for name in route.parameters
        if name not in PARAMETERS
    }
    assert not unknown, f"teach the walk what these parameters name (PARAMETERS): {unknown}"


def test_it_fills_every_pattern_with_a_url_it_resolves(site):
    for route in routes():
        url = fill(route, values_for(route, site.values))
        assert resolve(url), url


def test_it_walks_every_kind_of_entry_point():
    patterns = {route.pattern for route in routes()}
    for prefix in ("dicomweb/", "wado", "api/", "manage/", "account/", "nodes/", "admin/"):
        assert any(p.startswith(prefix) for p in patterns), prefix
    assert {route.pattern for route in websocket_routes()} >= {"ws/worklist"}


def test_it_refuses_anonymous_requests_everywhere(site):
    assert walk_anonymously(site) == []


def test_it_shows_no_study_to_a_signed_in_user_without_access(site):
    assert walk_as_stranger(site) == []


def test_it_lets_the_owner_see_each_study_resource_the_walk_checked(site):
    """The positive control: the values filled in name real objects, so the stranger's
    404s above come from access, not from a wrong id."""
    owner = signed_in(site.owner)
    not_found = []
    for route in routes():
        if route.touches_studies:
            url = fill(route, values_for(route, site.values))
            if owner.get(url, HTTP_ACCEPT="*/*").status_code == 404:
                not_found.append(url)
    assert not_found == []


# --- WebSockets -----------------------------------------------------------------------------


@pytest.fixture
def fresh_layer(settings, monkeypatch):
    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(relay, "_task", None)


def cookie_of(user) -> tuple[bytes, bytes]:
    client = signed_in(user)
    name = django_settings.SESSION_COOKIE_NAME
    return (b"cookie", f"{name}={client.cookies[name].value}".encode())


@dataclass
class Conversation:
    accepted: bool
    messages: list[str]
    close_code: int | None


def converse(url: str, *headers) -> Conversation:
    """Connect, take what the server sends for a moment, and disconnect."""

    @async_to_sync
    async def run() -> Conversation:
        from backend.asgi import application

        origin = (b"origin", b"http://localhost")
        ws = WebsocketCommunicator(application, url, headers=[origin, *headers])
        accepted, code = await ws.connect(timeout=5)
        messages: list[str] = []
        close_code = None if accepted else code
        while accepted and not await ws.receive_nothing(timeout=0.5):
            output = await ws.receive_output()
            if output["type"] == "websocket.close":
                close_code = output.get("code")
                break
            messages.append(output.get("text") or repr(output.get("bytes", b""))[:200])
        if accepted and close_code is None:
            await ws.disconnect()
        if relay._task is not None:
            relay._task.cancel()
        return Conversation(accepted, messages, close_code)

    return run()


def test_it_refuses_anonymous_websockets(site, fresh_layer):
    for route in websocket_routes():
        url = fill(route, site.values)
        talk = converse(url)
        assert talk.close_code is not None, f"{url} stays open to anyone"
        assert 4000 <= talk.close_code < 5000 or not talk.accepted, talk
        assert not leaks(" ".join(talk.messages), site.secrets(), url), talk


def test_it_tells_a_stranger_nothing_over_websockets(site, fresh_layer):
    cookie = cookie_of(site.stranger)
    for route in websocket_routes():
        url = fill(route, site.values)
        talk = converse(url, cookie)
        assert not leaks(" ".join(talk.messages), site.secrets(), url), (url, talk)
        if route.touches_studies:
            missing = converse(fill(route, site.fake_values()), cookie)
            assert (talk.accepted, talk.close_code) == (missing.accepted, missing.close_code)
            normalised = [
                m.replace(site.values["study"], FAKE_UIDS["study"]) for m in talk.messages
            ]
            assert normalised == missing.messages


def test_it_lets_the_owner_open_the_study_over_websockets(site, fresh_layer):
    cookie = cookie_of(site.owner)
    for route in websocket_routes():
        talk = converse(fill(route, site.values), cookie)
        assert talk.accepted and talk.close_code is None, (route, talk)


# --- The walk catches a leak ---------------------------------------------------------------


def leaky_view(request, study):
    found = Study.objects.select_related("patient").filter(study_instance_uid=study).first()
    return JsonResponse({"patient": found.patient.patient_id if found else None})


urlpatterns = [
    path("", __import__("django.urls").urls.include("backend.urls")),
    path("leak/<str:study>", leaky_view),
]


def test_it_would_catch_a_new_unprotected_pattern(site, settings):
    settings.ROOT_URLCONF = __name__
    problems = walk_anonymously(site)
    assert any(problem.startswith("GET /leak/") for problem in problems), problems
    problems = walk_as_stranger(site)
    assert any("/leak/" in problem for problem in problems), problems
