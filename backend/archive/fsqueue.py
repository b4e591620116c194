"""kombu's filesystem transport, made safe between processes (embedded mode only).

kombu's own transport creates a message file and then writes it, so a consumer polling at
that moment can take an empty file and the worker dies on a JSON error. Here a message is
written under a temporary name and renamed into place, so consumers see whole messages
only; a consumer claims one by renaming it into its processing folder (atomic: exactly one
consumer wins). Directory listings are cached between polls, so a deep queue costs one
listing per batch rather than one per message.

Lost messages cost nothing but latency: the sweep re-queues unfinished work from the database.
"""

import os
import uuid
from collections import deque
from itertools import count
from pathlib import Path
from time import monotonic_ns

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

_sequence = count()


class Channel(filesystem.Channel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._listing: dict[str, deque[str]] = {}
        # Producers may start before any worker has created the folders.
        for folder in (self.data_folder_in, self.data_folder_out, self.processed_folder):
            Path(folder).mkdir(parents=True, exist_ok=True)

    def _put(self, queue, payload, **kwargs):
        # Nanosecond clock plus a counter: names sort in the order they were sent.
        name = f"{monotonic_ns():020d}_{next(_sequence):09d}_{uuid.uuid4().hex}.{queue}.msg"
        folder = Path(self.data_folder_out)
        tmp = folder / "tmp"
        tmp.mkdir(exist_ok=True)
        # No fsync: a message lost in a crash is found again by the sweep.
        (tmp / name).write_bytes(str_to_bytes(dumps(payload)))
        os.rename(tmp / name, folder / name)

    def _get(self, queue):
        listing = self._listing.setdefault(queue, deque())
        if not listing:
            suffix = f".{queue}.msg"
            names = sorted(n for n in os.listdir(self.data_folder_in) if n.endswith(suffix))
            listing.extend(names)
        processing = Path(self.processed_folder)
        processing.mkdir(parents=True, exist_ok=True)
        while listing:
            name = listing.popleft()
            claimed = processing / f"{os.getpid()}-{name}"
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except FileNotFoundError:
                continue  # another consumer took it
            try:
                payload = claimed.read_bytes()
            finally:
                claimed.unlink(missing_ok=True)
            return loads(bytes_to_str(payload))
        raise filesystem.Empty()


class Transport(filesystem.Transport):
    Channel = Channel
