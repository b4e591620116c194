"""manage.py dicomnode add/list/remove (DESIGN.md contract)."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from backend.accounts.models import AccessGroup
from backend.nodes.models import RemoteNode

pytestmark = pytest.mark.django_db


def dicomnode(*args: str) -> str:
    out = StringIO()
    call_command("dicomnode", *args, stdout=out)
    return out.getvalue()


def test_it_adds_a_node():
    output = dicomnode("add", "CT1", "10.0.0.5", "104", "--name", "CT room 2")

    assert "added CT1@10.0.0.5:104" in output
    node = RemoteNode.objects.get()
    assert (node.ae_title, node.host, node.port, node.name) == ("CT1", "10.0.0.5", 104, "CT room 2")
    assert node.can_query and node.can_retrieve and node.can_store_to


def test_it_adds_a_node_with_fewer_rights():
    dicomnode("add", "PRINTER", "printer.example.org", "4104", "--no-query", "--no-retrieve")

    node = RemoteNode.objects.get()
    assert (node.can_query, node.can_retrieve, node.can_store_to) == (False, False, True)


def test_it_refuses_a_duplicate_ae_title():
    dicomnode("add", "CT1", "10.0.0.5", "104")
    with pytest.raises(CommandError, match="'CT1' is already registered"):
        dicomnode("add", "CT1", "10.0.0.6", "104")
    assert RemoteNode.objects.get().host == "10.0.0.5"


@pytest.mark.parametrize(
    ("title", "words"),
    [("A" * 17, "longer than 16"), ("A\\B", "not allowed"), ("   ", "empty")],
)
def test_it_refuses_a_bad_ae_title(title, words):
    with pytest.raises(CommandError, match=words):
        dicomnode("add", title, "10.0.0.5", "104")
    assert not RemoteNode.objects.exists()


@pytest.mark.parametrize("port", ["0", "65536", "http", "-1"])
def test_it_refuses_a_bad_port(port):
    with pytest.raises(CommandError, match="port must be a number from 1 to 65535"):
        dicomnode("add", "CT1", "10.0.0.5", port)


def test_it_lists_nodes_as_a_table():
    dicomnode("add", "CT1", "10.0.0.5", "104", "--name", "CT room 2")
    dicomnode("add", "PACS", "pacs.example.org", "11112", "--no-query")

    lines = dicomnode("list").splitlines()

    assert lines[0].split() == [
        "AE",
        "TITLE",
        "HOST",
        "PORT",
        "QUERY",
        "RETRIEVE",
        "STORE",
        "TO",
        "STUDIES",
        "NAME",
    ]
    assert lines[1].split() == [
        "CT1",
        "10.0.0.5",
        "104",
        "yes",
        "yes",
        "yes",
        "all",
        "CT",
        "room",
        "2",
    ]
    assert lines[2].split() == ["PACS", "pacs.example.org", "11112", "no", "yes", "yes", "all"]


def test_it_adds_a_node_limited_to_an_access_group():
    group = AccessGroup.objects.create(name="Cardiology")

    dicomnode("add", "CATHLAB", "10.0.0.9", "104", "--group", "Cardiology")

    assert RemoteNode.objects.get().access_group == group
    assert dicomnode("list").splitlines()[1].split()[-1] == "Cardiology"


def test_it_refuses_an_unknown_access_group():
    with pytest.raises(CommandError, match="no access group named 'Nope'"):
        dicomnode("add", "CATHLAB", "10.0.0.9", "104", "--group", "Nope")
    assert not RemoteNode.objects.exists()


def test_it_says_when_no_node_is_registered():
    assert "no DICOM nodes registered" in dicomnode("list")


def test_it_removes_a_node():
    dicomnode("add", "CT1", "10.0.0.5", "104")

    assert "removed CT1" in dicomnode("remove", "CT1")
    assert not RemoteNode.objects.exists()


def test_it_refuses_to_remove_an_unknown_node():
    with pytest.raises(CommandError, match="no node with AE title 'CT9'"):
        dicomnode("remove", "CT9")
