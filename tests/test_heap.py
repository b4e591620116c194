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


def test_each_worker_pool_process_freezes_once_started_and_warmed_up():
    import worker.celery

    worker.celery.start_up_pool_processes()  # what worker_init runs in the worker
    try:
        receivers = [ref() for _, ref in worker_process_init.receivers]
        warm_up = receivers.index(worker.celery.warm_up)
        assert receivers.index(worker.celery.freeze_start_up) > warm_up
    finally:
        worker_process_init.disconnect(worker.celery.warm_up)
        worker_process_init.disconnect(worker.celery.freeze_start_up)
