"""Presentation contexts the receiver offers (docs/conformance.md §2), without the network."""

from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)
from pynetdicom import ALL_TRANSFER_SYNTAXES
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from worker.dimse.server import make_ae, storage_transfer_syntaxes


def test_it_prefers_explicit_little_endian_then_lossless_then_lossy():
    order = storage_transfer_syntaxes()

    assert sorted(order) == sorted(ALL_TRANSFER_SYNTAXES)
    assert order[0] == ExplicitVRLittleEndian
    assert order.index(JPEG2000Lossless) < order.index(JPEGBaseline8Bit)
    assert order.index(RLELossless) < order.index(JPEGBaseline8Bit)
    uncompressed = [uid for uid in order if not UID(uid).is_compressed]
    assert order.index(JPEGBaseline8Bit) > max(order.index(uid) for uid in uncompressed)


def test_it_offers_storage_verification_and_find():
    contexts = {cx.abstract_syntax: cx for cx in make_ae().supported_contexts}

    assert len(contexts[CTImageStorage].transfer_syntax) == len(ALL_TRANSFER_SYNTAXES)
    assert Verification in contexts
    assert StudyRootQueryRetrieveInformationModelFind in contexts
