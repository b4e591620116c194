"""Files received while their Celery messages were lost (broker flushed or restarted without
persistence) are found by the worker's start-up sweep and indexed."""

import pytest

from backend.archive import ingest
from backend.archive.models import Instance, Study

from ..conftest import pydicom_file
from .helpers import wait_all_final, wait_spool_empty

FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"]
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_it_indexes_files_whose_messages_were_lost(start_worker, test_redis, data_dir):
    for name in FILES:
        ingest.receive_path(pydicom_file(name), source="cli")
    assert test_redis.llen("celery") == len(FILES)  # Celery's default queue
    test_redis.flushdb()

    start_worker()
    states = wait_all_final(timeout=30)

    assert states == {"stored": len(FILES)}
    assert Instance.objects.count() == len(FILES)
    assert Study.objects.count() == len(FILES)
    wait_spool_empty(data_dir)
