"""The File Meta Information the receiver writes before a received data set (PS3.10 §7.1):
byte for byte what pydicom writes, and a C001 failure for a malformed UID."""

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pynetdicom.dsutils import create_file_meta

from worker.dimse.handlers import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    part10_header,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def pydicom_header(sop_class_uid, sop_instance_uid, transfer_syntax) -> bytes:
    meta = create_file_meta(
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax=transfer_syntax,
        implementation_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version=IMPLEMENTATION_VERSION_NAME,
    )
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "sop_instance_uid", ["1.2.3", "1.2.34", "1.2.826.0.1.3680043.8.498." + "1" * 37]
)
@pytest.mark.parametrize("transfer_syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"])
def test_it_writes_what_pydicom_writes(sop_instance_uid, transfer_syntax):
    ours = part10_header(CT_IMAGE_STORAGE, sop_instance_uid, transfer_syntax)
    assert ours == pydicom_header(CT_IMAGE_STORAGE, sop_instance_uid, transfer_syntax)


@pytest.mark.parametrize("bad", ["", "1.2.x", "1" * 65, "1.2.3\u00e9"])
def test_it_refuses_a_malformed_uid(bad):
    with pytest.raises(ValueError):
        part10_header(CT_IMAGE_STORAGE, bad, "1.2.840.10008.1.2")
