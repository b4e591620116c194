"""Database helpers shared by the ingest path."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def relaxed_commit() -> Iterator[None]:
    """A transaction whose commit need not wait for the disk (PostgreSQL only).

    For bookkeeping that recovery rebuilds anyway (a claim, a record of a file whose
    durable spool copy the sweep adopts): if a crash loses it, nothing acknowledged is lost,
    and it saves a WAL flush per file. SQLite in WAL mode with synchronous=NORMAL already
    behaves like this.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
