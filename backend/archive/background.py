"""A thread per process and purpose, for work a task overlaps with its own (an fsync, an
image encoded while the task writes something else)."""

import os
from concurrent.futures import ThreadPoolExecutor

_threads: dict[str, tuple[int, ThreadPoolExecutor]] = {}  # purpose -> (pid, its executor)


def thread(purpose: str) -> ThreadPoolExecutor:
    """This process's thread for `purpose`, made on first use after a fork (a thread does
    not survive one: a Celery pool process gets its own)."""
    found = _threads.get(purpose)
    if found is None or found[0] != os.getpid():
        found = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix=f"lightbox-{purpose}"))
        _threads[purpose] = found
    return found[1]
