"""The spool: received files that are durable but not yet indexed.

A file lands here (temporary file, fsync, atomic rename) before any sender is told it was
received, and leaves only after its outcome is committed to the database. So listing the
spool after a crash finds exactly the work that is not finished.
"""

import errno
import hashlib
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .storage import fsync_dir, shared_directory_sync, write_durably

_BATCH_PREFIX = "batch-"  # of a batch's attempt marker (Spool.begin_batch)
# Ids of files spooled by receive_whole(): RFC 9562 version 8 UUIDs whose first 48 bits are
# the file's size, the rest (but the version and variant bits) random: 74 random bits.
_SIZE_BITS = 48


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, record_id: uuid.UUID) -> Path:
        return self.root / f"{record_id}.dcm"

    def receive(self, chunks: Iterable[bytes], sync_dir: bool = True) -> tuple[uuid.UUID, int, str]:
        """Durably spool a file; returns its new id, its size and its SHA-256.

        With sync_dir=False the file's name is durable only after sync(), which a batch
        calls once for all its files. Otherwise the spool directory's fsync is shared
        between threads spooling at the same time (storage.DirectorySync): each still
        returns only once its own rename is durable.
        """
        digest = hashlib.sha256()

        def hashed() -> Iterator[bytes]:
            for chunk in chunks:
                digest.update(chunk)
                yield chunk

        record_id = uuid.uuid4()
        size = write_durably(self.path(record_id), hashed(), tmp_dir=self.tmp, sync_dir=False)
        if sync_dir:
            shared_directory_sync(self.root).sync()
        return record_id, size, digest.hexdigest()

    def receive_whole(self, parts: Sequence[bytes | memoryview]) -> tuple[uuid.UUID, int]:
        """Durably spool a file held in memory (its parts, in order) without hashing it
        (hash_file() later, off the sender's path); returns its new id and size. For the
        DICOM receiver, which waits on this before it acknowledges.

        The file gets its name before its fsync, so one journal commit makes both the
        data and the name durable, where receive() needs two (file, then folder): one
        wait for the disk less per C-STORE. A crash before the
        fsync returns may leave a shorter file under that name; it was never
        acknowledged, and its id, which carries the size, tells the sweep (incomplete()).
        """
        size = sum(len(part) for part in parts)
        record_id = sized_id(size)
        write_durably(
            self.path(record_id), parts, tmp_dir=self.tmp, sync_dir=False, name_first=True
        )
        shared_directory_sync(self.root).sync()
        return record_id, size

    def incomplete(self, record_id: uuid.UUID) -> bool:
        """Whether a spooled file is shorter or longer than receive_whole() was given (a
        crash cut its writing short; nobody was told it was received)."""
        expected = size_in_id(record_id)
        if expected is None:
            return False
        try:
            return self.path(record_id).stat().st_size != expected
        except FileNotFoundError:
            return False

    def hash_file(self, record_id: uuid.UUID) -> str:
        """SHA-256 of a spooled file."""
        with open(self.path(record_id), "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    def sync(self) -> None:
        fsync_dir(self.root)

    def waiting(self, older_than_seconds: float = 0) -> Iterator[uuid.UUID]:
        """Ids of spooled files, oldest first (a few thousand at most in normal running)."""
        cutoff = time.time() - older_than_seconds
        entries = []
        with os.scandir(self.root) as it:
            for entry in it:
                if not entry.name.endswith(".dcm") or not entry.is_file():
                    continue
                mtime = entry.stat().st_mtime
                if mtime <= cutoff:
                    entries.append((mtime, entry.name))
        for _, name in sorted(entries):
            try:
                yield uuid.UUID(name.removesuffix(".dcm"))
            except ValueError:
                continue

    def remove(self, record_id: uuid.UUID) -> None:
        for path in (self.path(record_id), self._attempts_path(record_id)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    # Attempts are counted in a small marker beside the spooled file rather than in the
    # database: a write transaction per file is what SQLite serialises on, and a marker
    # survives what it must survive (a worker killed by a hostile file), while a power cut
    # only resets the count.

    def _attempts_path(self, record_id: uuid.UUID) -> Path:
        return self.root / f"{record_id}.attempts"

    def _read_attempts(self, record_id: uuid.UUID) -> dict:
        try:
            return json.loads(self._attempts_path(record_id).read_text())
        except (FileNotFoundError, ValueError):
            return {"count": 0, "error": ""}

    def begin_attempt(self, record_id: uuid.UUID) -> int:
        """Count one more attempt at indexing a spooled file; returns its number (1-based)."""
        state = self._read_attempts(record_id)
        state["count"] += 1
        self._write_attempts(record_id, state)
        return state["count"]

    def count_at_least(self, record_id: uuid.UUID, attempts: int) -> None:
        """Count `attempts` attempts at a file, unless more were (a batch's, which its
        marker counted)."""
        state = self._read_attempts(record_id)
        if state["count"] < attempts:
            state["count"] = attempts
            self._write_attempts(record_id, state)

    def note_error(self, record_id: uuid.UUID, error: str, attempts: int = 0) -> None:
        """Keep the error of the latest attempt; `attempts`: how many were made at least
        (an attempt in a batch has no marker of its own to count it)."""
        state = self._read_attempts(record_id)
        state["count"] = max(state["count"], attempts)
        state["error"] = error[:2000]
        self._write_attempts(record_id, state)

    def _write_attempts(self, record_id: uuid.UUID, state: dict) -> None:
        # On a full disk the marker is not kept, as after a power cut: indexing is what
        # empties the spool, so it must not stop because the spool is full.
        try:
            self._attempts_path(record_id).write_text(json.dumps(state))
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise

    def attempted(self, record_id: uuid.UUID) -> bool:
        """Whether an attempt at this file was counted (its marker is there)."""
        return self._attempts_path(record_id).exists()

    # A batch (index_batch) has one marker for all its files, listing them: a marker per
    # file was a file created and deleted in the spool folder per file indexed, which took
    # 0.1-0.4 ms each while the receiver wrote to that folder. The batch's marker goes when
    # the batch is done; one that a killed worker left tells its next delivery, and the
    # sweep, that the batch was begun.

    def begin_batch(self, record_ids: Sequence[uuid.UUID]) -> bool:
        """Mark a batch of spooled files as being indexed; False if it was begun before
        (the broker delivered it again after its worker died)."""
        path = self._batch_path(record_ids)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, "\n".join(map(str, record_ids)).encode())
            finally:
                os.close(fd)
        except FileExistsError:
            return False
        except OSError as exc:
            # On a full disk the marker is not kept, as a file's (_write_attempts).
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            path.unlink(missing_ok=True)
        return True

    def end_batch(self, record_ids: Sequence[uuid.UUID]) -> None:
        try:
            os.unlink(self._batch_path(record_ids))
        except FileNotFoundError:
            pass

    def batches(self) -> Iterator[tuple[Path, float, list[uuid.UUID]]]:
        """The batches begun and not ended: (marker, when begun, the files' ids)."""
        for path in self.root.glob(f"{_BATCH_PREFIX}*.attempts"):
            try:
                begun = path.stat().st_mtime
                text = path.read_text(errors="replace")
            except OSError:
                continue  # ended meanwhile
            # A marker cut short by a crash lists fewer files, not none: it is still
            # listed, so that the sweep removes it once those are done.
            yield path, begun, [found for line in text.split() if (found := _uuid(line))]

    def _batch_path(self, record_ids: Sequence[uuid.UUID]) -> Path:
        digest = hashlib.sha256(" ".join(map(str, record_ids)).encode()).hexdigest()[:32]
        return self.root / f"{_BATCH_PREFIX}{digest}.attempts"

    def last_error(self, record_id: uuid.UUID) -> str:
        return self._read_attempts(record_id)["error"]

    def attempt_started(self, record_id: uuid.UUID) -> float | None:
        """When the latest attempt began (epoch seconds), or None if none did."""
        try:
            return self._attempts_path(record_id).stat().st_mtime
        except FileNotFoundError:
            return None

    def clean_tmp(self, older_than_seconds: float = 3600) -> int:
        """Delete half-written temporaries: nobody was ever told they were received."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        for entry in os.scandir(self.tmp):
            if entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        return removed


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def sized_id(size: int) -> uuid.UUID:
    if not 0 <= size < 1 << _SIZE_BITS:
        raise ValueError(f"a file of {size} bytes cannot be spooled")
    value = (size << 80) | secrets.randbits(80)
    value = (value & ~(0xF << 76)) | (0x8 << 76)  # version 8
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # variant RFC 9562
    return uuid.UUID(int=value)


def size_in_id(record_id: uuid.UUID) -> int | None:
    """The size a sized_id() carries, or None for other ids (uuid4)."""
    if (record_id.int >> 76) & 0xF != 0x8 or (record_id.int >> 62) & 0x3 != 0x2:
        return None
    return record_id.int >> 80


def get_spool() -> Spool:
    """The spool under the data directory. One object per directory: making one makes
    its tmp folder, a system call that indexing made several times per file."""
    from django.conf import settings

    root = settings.DATA_DIR / "spool"
    spool = _spools.get(root)
    if spool is None:
        spool = _spools.setdefault(root, Spool(root))
    return spool


_spools: dict[Path, Spool] = {}  # by root (tests change the data directory)
