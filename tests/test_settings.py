"""Settings come from the environment, fail loudly on bad values, and are all documented."""

import re

import pytest
from django.core.exceptions import ImproperlyConfigured

from backend import settings as lightbox_settings

from .conftest import REPO


def test_it_documents_every_variable_in_env_example():
    source = (REPO / "backend" / "settings.py").read_text()
    read = set(re.findall(r'env(?:bool|int|list)?\(\s*"([A-Z_]+)"', source))
    example = (REPO / "deploy" / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    assert read, "no variables found: the pattern above is out of date"
    assert read <= documented, f"undocumented: {sorted(read - documented)}"


def test_it_refuses_a_bad_boolean(monkeypatch):
    monkeypatch.setenv("LIGHTBOX_DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="LIGHTBOX_DEBUG"):
        lightbox_settings.envbool("LIGHTBOX_DEBUG", "0")


def test_it_refuses_a_bad_integer(monkeypatch):
    monkeypatch.setenv("LIGHTBOX_HTTP_PORT", "eighty")
    with pytest.raises(ImproperlyConfigured, match="LIGHTBOX_HTTP_PORT"):
        lightbox_settings.envint("LIGHTBOX_HTTP_PORT", "8000")


def test_an_empty_integer_is_its_default(monkeypatch):
    monkeypatch.setenv("LIGHTBOX_DICOM_PROCESSES", "")
    assert lightbox_settings.envint("LIGHTBOX_DICOM_PROCESSES", "3") == 3


def test_it_reads_secrets_from_files(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("DJANGO_SECRET_KEY_FILE", str(secret))
    assert lightbox_settings.env("DJANGO_SECRET_KEY") == "from-a-file"
