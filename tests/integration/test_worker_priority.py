"""The Celery worker lowers its own CPU priority (LIGHTBOX_WORKER_NICE), so indexing gives
way to the DICOM receiver and the web server when the CPU is short."""

import os
from pathlib import Path

import pytest

from worker.celery import niceness

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_worker_and_its_pool_processes_run_at_the_configured_niceness(start_worker):
    worker = start_worker()  # -c 2: the main process and two pool processes
    pids = [worker.popen.pid, *children(worker.popen.pid)]

    assert len(pids) == 3
    expected = max(10, os.getpriority(os.PRIO_PROCESS, 0))  # the default, LIGHTBOX_WORKER_NICE
    assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in pids] == [expected] * 3


def test_niceness_stays_within_what_the_process_may_set():
    current = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness(40) == 19
    assert niceness(-5) == max(current, 0)  # raising the priority needs root: never asked
    assert niceness(current) == current
