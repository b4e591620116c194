"""Final C-GET and C-MOVE responses carry no data set when all it would hold is an empty
Failed SOP Instance UID List (handlers.omit_empty_failed_lists); a list that names
instances, and every other response, go out as pynetdicom made them."""

from io import BytesIO
from types import SimpleNamespace

import pytest
from pydicom import Dataset
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.dsutils import encode

from worker.dimse.handlers import omit_empty_failed_lists


def failed_list(*uids: str, implicit: bool = True, little: bool = True) -> BytesIO:
    ds = Dataset()
    ds.FailedSOPInstanceUIDList = list(uids)
    return BytesIO(encode(ds, implicit, little))


def sent_after_filter(primitive) -> object:
    sent: list = []
    assoc = SimpleNamespace(dimse=SimpleNamespace(send_msg=lambda p, c: sent.append((p, c))))
    omit_empty_failed_lists(assoc)
    assoc.dimse.send_msg(primitive, 3)
    ((out, context_id),) = sent
    assert context_id == 3
    return out.Identifier


@pytest.mark.parametrize("kind", [C_GET, C_MOVE])
@pytest.mark.parametrize("status", [0xC000, 0x0124, 0xA801, 0xB000, 0xFE00])
@pytest.mark.parametrize("implicit, little", [(True, True), (False, True), (False, False)])
def test_an_empty_list_is_left_out(kind, status, implicit, little):
    response = kind()
    response.Status = status
    response.Identifier = failed_list(implicit=implicit, little=little)

    assert sent_after_filter(response) is None


@pytest.mark.parametrize("kind", [C_GET, C_MOVE])
def test_a_list_that_names_instances_is_kept(kind):
    response = kind()
    response.Status = 0xB000
    response.Identifier = failed_list("1.2.3.4")

    assert sent_after_filter(response).getvalue() == failed_list("1.2.3.4").getvalue()


def test_other_responses_are_left_alone():
    pending = C_GET()
    pending.Status = 0xFF00
    pending.Identifier = failed_list()
    match = C_FIND()
    match.Status = 0xFF00
    match.Identifier = failed_list()

    for response in (pending, match):
        assert sent_after_filter(response).getvalue() == failed_list().getvalue()
