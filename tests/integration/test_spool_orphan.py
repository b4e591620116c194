"""A file made durable in the spool by a process that crashed before recording it is adopted
by the worker's start-up sweep and indexed (source 'recovered')."""

import os
import time

import pytest

from backend.archive import ingest
from backend.archive.models import IngestRecord, Instance
from backend.archive.spool import get_spool

from ..conftest import pydicom_file
from .helpers import wait_all_final, wait_spool_empty

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_it_adopts_a_spooled_file_that_has_no_record(start_worker, data_dir):
    with open(pydicom_file("CT_small.dcm"), "rb") as f:
        record_id, _, sha256 = get_spool().receive(ingest.read_chunks(f))
    # The sweep leaves young files alone: their receiver may still be recording them.
    old = time.time() - 60
    os.utime(get_spool().path(record_id), (old, old))

    start_worker()
    states = wait_all_final(timeout=30)

    assert states == {"stored": 1}
    record = IngestRecord.objects.get()
    assert (record.pk, record.source, record.sha256) == (record_id, "recovered", sha256)
    assert Instance.objects.get().sha256 == sha256
    wait_spool_empty(data_dir)
