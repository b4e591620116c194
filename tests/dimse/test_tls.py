"""DICOM over TLS (PS3.15 §B.1) when LIGHTBOX_DICOM_TLS_CERT and _KEY are set: TLS peers are
served, plain ones are not."""

import shutil
import ssl
import subprocess

import pytest

from .peers import AE_TITLE, client

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl CLI not installed")


def self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def test_it_speaks_tls_when_given_a_certificate(embedded_site, tmp_path):
    cert, key = self_signed(tmp_path)
    embedded_site.start_receiver(LIGHTBOX_DICOM_TLS_CERT=str(cert), LIGHTBOX_DICOM_TLS_KEY=str(key))
    context = ssl.create_default_context(cafile=str(cert))

    secure = client().associate(
        "127.0.0.1", embedded_site.port, ae_title=AE_TITLE, tls_args=(context, "localhost")
    )
    assert secure.is_established
    assert secure.send_c_echo().Status == 0x0000
    secure.release()

    plain = client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE)
    assert not plain.is_established
