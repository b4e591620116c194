"""Fixtures for the DICOMweb tests: three users, API tokens, a client that sends a token,
and a small archive of real sample files ingested through the pipeline."""

from dataclasses import dataclass

import pydicom
import pytest
from django.contrib.auth.models import User
from django.test import Client

from backend.accounts.tokens import create_token, revoke_token
from backend.archive.access import visible_studies
from backend.dicomweb import auth

from ..archive.helpers import receive_file, variant
from ..conftest import grant_every_study, pydicom_file

PASSWORD = "correct horse battery"  # noqa: S105 - a test user's password


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    auth._basic_cache.clear()  # checked Basic credentials are remembered per process


@pytest.fixture
def reader(transactional_db) -> User:
    """A radiologist in a group whose rule selects every study."""
    return grant_every_study(User.objects.create_user("reader", password=PASSWORD))


@pytest.fixture
def stranger(transactional_db) -> User:
    """An active user who will be granted nothing once access rules exist. Access tests
    expect exactly what visible_studies() lets this user see, so they hold today and
    tighten by themselves when the rules arrive."""
    return User.objects.create_user("stranger", password=PASSWORD)


@pytest.fixture
def inactive(transactional_db) -> User:
    """A deactivated user: refused (401) with a session, Basic credentials or a token."""
    user = User.objects.create_user("inactive", password=PASSWORD)
    User.objects.filter(pk=user.pk).update(is_active=False)
    user.refresh_from_db()
    return user


def token_for(user: User, scopes: list[str] | None = None) -> str:
    """The text of a new API token of `user` (read and write unless `scopes` says)."""
    return create_token(user, "tests", scopes)[1]


@pytest.fixture
def token(reader) -> str:
    return token_for(reader)


@pytest.fixture
def revoked_token(reader) -> str:
    row, text = create_token(reader, "revoked")
    revoke_token(row)
    return text


def client_with_token(text: str, **options) -> Client:
    """A test client that sends `Authorization: Bearer <text>` with every request;
    `options` go to Client (e.g. raise_request_exception=False to see a 500 as a 500)."""
    return Client(headers={"Authorization": f"Bearer {text}"}, **options)


@pytest.fixture
def api(token) -> Client:
    """The reader's client, authenticated by API token."""
    return client_with_token(token)


def visible_uids(user) -> set[str]:
    """The StudyInstanceUIDs `user` may see: what an access test should expect."""
    return set(visible_studies(user).values_list("study_instance_uid", flat=True))


@dataclass(frozen=True)
class Stored:
    """The ingested files' data sets, one study each but `mueller_pt`."""

    ct: pydicom.Dataset  # CT_small.dcm: CompressedSamples^CT1, 20040119
    mr: pydicom.Dataset  # MR_small.dcm: CompressedSamples^MR1, 20040826
    nm: pydicom.Dataset  # JPEG2000.dcm: CompressedSamples^NM1, 20040826
    mueller_ct: pydicom.Dataset  # Müller^Jürgen, 20190315 10:15, ACC-2019-1, CT series
    mueller_pt: pydicom.Dataset  # a second (PT) series in mueller_ct's study
    berg: pydicom.Dataset  # van den Berg^Anna Maria, 20200101 23:59:59, ACC-2020-1, PT

    def studies(self) -> list[pydicom.Dataset]:
        return [self.ct, self.mr, self.nm, self.mueller_ct, self.berg]

    def instances(self) -> list[pydicom.Dataset]:
        return [*self.studies(), self.mueller_pt]


NEW_STUDY = {
    "StudyInstanceUID": "new-uid",
    "SeriesInstanceUID": "new-uid",
    "SOPInstanceUID": "new-uid",
}


@pytest.fixture
def stored(tasks, tmp_path, transactional_db) -> Stored:
    """Three pydicom samples and three changed copies, received and indexed."""
    mueller = variant(
        tmp_path,
        "CT_small.dcm",
        SpecificCharacterSet="ISO_IR 192",
        PatientName="Müller^Jürgen",
        PatientID="LBX-MUELLER",
        StudyDate="20190315",
        StudyTime="101500",
        AccessionNumber="ACC-2019-1",
        **NEW_STUDY,
    )
    mueller_ct = pydicom.dcmread(mueller)
    mueller_pt = variant(
        tmp_path,
        "CT_small.dcm",
        SpecificCharacterSet="ISO_IR 192",
        PatientName="Müller^Jürgen",
        PatientID="LBX-MUELLER",
        StudyDate="20190315",
        StudyTime="101500",
        AccessionNumber="ACC-2019-1",
        StudyInstanceUID=mueller_ct.StudyInstanceUID,
        SeriesInstanceUID="new-uid",
        SOPInstanceUID="new-uid",
        Modality="PT",
        SeriesNumber=2,
    )
    berg = variant(
        tmp_path,
        "MR_small.dcm",
        PatientName="van den Berg^Anna Maria",
        PatientID="LBX-BERG",
        StudyDate="20200101",
        StudyTime="235959",
        AccessionNumber="ACC-2020-1",
        Modality="PT",
        **NEW_STUDY,
    )
    paths = [pydicom_file(name) for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")]
    for path in [*paths, mueller, mueller_pt, berg]:
        assert receive_file(path, tasks).state == "stored", path
    return Stored(*(pydicom.dcmread(p) for p in [*paths, mueller, mueller_pt, berg]))
