"""DICOM peers for the tests: dcmtk command-line tools and small pynetdicom clients."""

import subprocess

import pydicom
from pydicom.uid import generate_uid
from pynetdicom import StoragePresentationContexts
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from backend.nodes.transport import LightboxAE

from ..conftest import pydicom_file
from .conftest import AE_TITLE


def dcmtk(
    tool: str, port: int, *options: str, files: tuple[str, ...] = (), timeout: float = 30
) -> subprocess.CompletedProcess:
    """Run echoscu/storescu/findscu against the receiver; -v makes them print statuses."""
    return subprocess.run(
        [tool, "-v", "-aec", AE_TITLE, *options, "127.0.0.1", str(port), *files],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def client(calling_ae: str = "PYNETDICOM") -> LightboxAE:
    """A pynetdicom SCU on our AE class: stock pynetdicom 3.0's requestor loop can take a
    fast reply from the queue before send_*() does (pynetdicom issue #875,
    backend/nodes/reactor.py), which would fail these tests for the client's bug."""
    ae = LightboxAE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    ae.add_requested_context(Verification)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    for context in StoragePresentationContexts[:100]:
        ae.add_requested_context(context.abstract_syntax)
    return ae


def new_instance(name: str = "CT_small.dcm") -> pydicom.Dataset:
    """A pydicom sample as a new instance (new SOP Instance UID)."""
    ds = pydicom.dcmread(pydicom_file(name))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def find_statuses(port: int, calling_ae: str, **keys) -> list[int]:
    """C-FIND (Study Root, STUDY level) and return the statuses received, in order."""
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    assoc = client(calling_ae).associate("127.0.0.1", port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        responses = assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
        return [status.Status for status, _ in responses if status]
    finally:
        assoc.release()
