"""authorize(): what a calling AE may do, decided from the registered nodes."""

import pytest

from backend.nodes.services import add_node, authorize, host_matches

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer():
    return add_node("VIEWER", "10.0.0.7", 104)


def test_it_allows_echo_from_anyone():
    assert authorize("STRANGER", "192.0.2.1", "echo").allowed


def test_it_allows_stores_from_anyone_by_default():
    assert authorize("STRANGER", "192.0.2.1", "store").allowed


def test_it_allows_stores_only_from_registered_nodes_when_told_to(settings, viewer):
    settings.DICOM_ACCEPT_ANY_STORE = False

    refused = authorize("STRANGER", "192.0.2.1", "store")

    assert not refused.allowed and "not a registered node" in refused.reason
    assert authorize("VIEWER", "10.0.0.7", "store").allowed
    assert not authorize("VIEWER", "10.0.0.8", "store").allowed


def test_it_allows_a_query_from_a_registered_node_at_its_host(viewer):
    decision = authorize("VIEWER", "10.0.0.7", "find")
    assert decision.allowed and decision.node == viewer


def test_it_refuses_a_query_from_an_unknown_ae():
    decision = authorize("STRANGER", "10.0.0.7", "find")
    assert not decision.allowed and "not a registered node" in decision.reason


def test_it_refuses_a_query_from_another_host(viewer):
    decision = authorize("VIEWER", "10.0.0.99", "find")
    assert not decision.allowed and "registered at 10.0.0.7" in decision.reason


def test_it_refuses_a_query_from_a_node_without_can_query():
    add_node("PRINTER", "10.0.0.9", 104, can_query=False)
    decision = authorize("PRINTER", "10.0.0.9", "find")
    assert not decision.allowed and "not allowed to find" in decision.reason


def test_it_refuses_a_retrieve_from_a_node_without_can_retrieve():
    add_node("PRINTER", "10.0.0.9", 104, can_retrieve=False)
    assert not authorize("PRINTER", "10.0.0.9", "retrieve").allowed


@pytest.mark.parametrize(
    ("registered", "peer", "matches"),
    [
        ("10.0.0.7", "10.0.0.7", True),
        ("10.0.0.7", "::ffff:10.0.0.7", True),
        ("10.0.0.7", "10.0.0.8", False),
        ("localhost", "127.0.0.1", True),
        ("localhost", "10.0.0.8", False),
        ("no-such-host.invalid", "10.0.0.8", False),
    ],
)
def test_it_matches_hosts_by_address_or_name(registered, peer, matches):
    assert host_matches(registered, peer) is matches
