"""C-ECHO (Verification, PS3.4 Annex A): any AE gets Success; the association is audited."""

from .conftest import needs_dcmtk
from .peers import dcmtk

pytestmark = needs_dcmtk


def test_it_answers_echo(embedded_site):
    embedded_site.start_receiver()

    result = dcmtk("echoscu", embedded_site.port, "-aet", "MODALITY")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Echo Response (Success)" in result.stdout + result.stderr
    audit = embedded_site.wait_rows(
        "select event_type, outcome, calling_ae from accounts_auditevent order by id", 2
    )
    assert audit == [
        ("dicom.echo", "success", "MODALITY"),
        ("dicom.association", "success", "MODALITY"),
    ]


def test_it_rejects_an_association_for_another_ae_title(embedded_site):
    embedded_site.start_receiver()

    result = dcmtk("echoscu", embedded_site.port, "-aec", "SOMEONE_ELSE")

    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stdout + result.stderr
