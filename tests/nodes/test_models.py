"""RemoteNode validation: AE titles per PS3.5 §6.2 (AE VR), hosts and ports."""

import pytest
from django.core.exceptions import ValidationError

from backend.nodes.models import RemoteNode, validate_ae_title

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("title", ["CT1", "A" * 16, "MY AE", "STORE_SCP-2", "  PADDED  "])
def test_it_accepts_valid_ae_titles(title):
    validate_ae_title(title)


@pytest.mark.parametrize("title", ["", "    ", "A" * 17, "A\\B", "CT\n1", "CT\x001", "ÄRZT"])
def test_it_refuses_invalid_ae_titles(title):
    with pytest.raises(ValidationError):
        validate_ae_title(title)


@pytest.mark.parametrize("port", [0, 65536])
def test_it_refuses_ports_out_of_range(port):
    with pytest.raises(ValidationError, match="port"):
        RemoteNode(ae_title="CT1", host="10.0.0.5", port=port).full_clean()


def test_it_refuses_a_host_with_spaces():
    with pytest.raises(ValidationError, match="host"):
        RemoteNode(ae_title="CT1", host="ct room", port=104).full_clean()


def test_it_stores_ae_titles_without_padding():
    node = RemoteNode.objects.create(ae_title=" CT1 ", host="10.0.0.5", port=104)
    assert RemoteNode.objects.get(pk=node.pk).ae_title == "CT1"
