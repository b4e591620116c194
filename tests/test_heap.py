"""backend/heap.py: long-running processes keep their start-up objects out of the garbage
collector's full passes."""

import gc

from celery.signals import worker_process_init


def test_freezing_keeps_what_exists_out_of_the_collectors_walks():
    from backend import heap

    before = gc.get_freeze_count()
    try:
        heap.freeze_start_up()
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()


def test_each_worker_pool_process_freezes_once_started():
    import worker.celery

    receivers = [ref() for _, ref in worker_process_init.receivers]
    assert worker.celery.freeze_start_up in receivers
