"""The garbage collector and long-running processes.

CPython's cyclic garbage collector walks every tracked object in its oldest generation now
and then, and in a worker, the receiver or its recording process most of those objects
were made at start-up and live as long as the process: Django and its apps, pydicom's
dictionaries, the imported modules. On the machines of docs/performance.md such a walk took
80 ms in a worker pool process, several times while a study arrived, each time with the
files of a task waiting. Frozen (gc.freeze), they are left out of every walk.
"""

import gc


def freeze_start_up() -> None:
    """Collect what start-up left unreachable, then keep everything alive now out of the
    collector's walks. Call once set up, before the process starts its real work."""
    gc.collect()
    gc.freeze()
