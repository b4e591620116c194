"""Where files live: a small keyed storage interface and its filesystem implementation.

Keys are validated ("area/<64 hex>[.ext...]") and map to sharded paths
(area/ab/cd/abcd....ext) so no folder grows past a few thousand entries. The index (the
database) is kept apart from the files; the files are never rewritten in place.
"""

import os
import re
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

KEY_RE = re.compile(
    r"^(objects|frames|derived|quarantine)/([0-9a-f]{64})((?:\.[a-z0-9]{1,12}){0,3})$"
)


class StorageError(Exception):
    pass


class Storage(Protocol):
    def create(self, key: str, chunks: Iterable[bytes | memoryview]) -> int: ...
    def read(self, key: str) -> bytes: ...
    def read_range(self, key: str, offset: int, length: int) -> bytes: ...
    def delete(self, key: str) -> None: ...


def fsync_dir(path: Path) -> None:
    """Make a rename or link inside `path` durable (POSIX needs the directory synced too)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectorySync:
    """fsync of one directory shared by concurrent threads (group commit).

    A thread that renamed a file into the directory calls sync(); it returns once an fsync
    that *started after that call* has completed, which makes the rename durable. While one
    fsync runs, later callers wait and the next fsync covers all of them: with N
    associations storing at once, one directory fsync per round instead of N.
    """

    def __init__(self, path: Path):
        self.path = path
        self._cond = threading.Condition()
        self._requested = 0  # tickets handed out
        self._synced = 0  # every ticket up to this one is durable
        self._running = False

    def sync(self) -> None:
        with self._cond:
            self._requested += 1
            ticket = self._requested
            while self._synced < ticket:
                if self._running:
                    self._cond.wait()
                    continue
                self._lead()

    def _lead(self) -> None:
        # Called with the condition held: fsync covers every ticket issued so far.
        covered = self._requested
        self._running = True
        self._cond.release()
        try:
            fsync_dir(self.path)
        finally:
            self._cond.acquire()
            self._running = False
            self._cond.notify_all()
        self._synced = max(self._synced, covered)


_directory_syncs: dict[Path, DirectorySync] = {}
_directory_syncs_lock = threading.Lock()


def shared_directory_sync(path: Path) -> DirectorySync:
    """The process-wide DirectorySync of `path`."""
    found = _directory_syncs.get(path)  # per file received: no lock, no new object
    if found is not None:
        return found
    with _directory_syncs_lock:
        return _directory_syncs.setdefault(Path(path), DirectorySync(Path(path)))


def write_durably(
    path: Path,
    chunks: Iterable[bytes | memoryview],
    tmp_dir: Path | None = None,
    sync_dir: bool = True,
    name_first: bool = False,
) -> int:
    """Write to a temporary file, fsync it, rename it into place, fsync the folder.

    Readers see either nothing or the whole file, and once this returns the file survives a
    power cut. Returns the number of bytes written. With sync_dir=False the caller must
    fsync_dir(path.parent) before relying on it (one sync for a batch of files).

    With name_first, the rename comes before the fsync: the journal commit that makes the
    data durable makes the rename durable too (ext4, XFS, btrfs), and the folder's fsync
    afterwards finds nothing left to commit. But after a crash during that fsync, the file
    under `path` may be incomplete, so the caller must be able to tell (Spool.incomplete).
    """
    tmp_dir = tmp_dir or path.parent
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=".tmp-")
    size = 0
    written = tmp_name  # what to remove if this fails: nobody was told it was received
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
            f.flush()
            if name_first:
                os.replace(tmp_name, path)
                written = str(path)
            os.fsync(f.fileno())
        if not name_first:
            os.replace(tmp_name, path)
    except BaseException:
        _unlink_quietly(written)
        raise
    if sync_dir:
        fsync_dir(path.parent)
    return size


def sync_dirs(paths: Iterable[Path | None]) -> None:
    """fsync each folder once. After the first, the journal commit that made every pending
    link durable has usually happened already, so the others return at once."""
    for path in dict.fromkeys(p for p in paths if p is not None):
        fsync_dir(path)


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class FileSystemStorage:
    """Storage on a local or shared POSIX filesystem (NFS works, as long as it honours fsync)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        match = KEY_RE.fullmatch(key)
        if not match:
            raise StorageError(f"invalid storage key {key!r}")
        area, digest, ext = match.group(1), match.group(2), match.group(3) or ""
        return self.root / area / digest[:2] / digest[2:4] / f"{digest}{ext}"

    def _prepare(self, key: str) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def create(self, key: str, chunks: Iterable[bytes | memoryview]) -> int:
        """Store `chunks` under `key` durably; replaces an existing file atomically."""
        return write_durably(self._prepare(key), chunks)

    def adopt(self, key: str, source: Path, sync: bool = True) -> Path | None:
        """Give an already durable local file a key, without copying (hard link).

        Content-addressed keys make an existing target the same bytes, so it is kept.
        With sync=False the new link is durable only once the caller has passed the returned
        folder to sync_dirs() (one journal commit for a batch instead of one per file);
        None means there is nothing to sync.
        """
        target = self.path(key)
        try:
            _link(source, target)
        except FileExistsError:
            return None
        except OSError:
            # Another filesystem (or no hard links): fall back to a durable copy.
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(source, "rb") as f:
                write_durably(target, iter(lambda: f.read(1 << 20), b""))
            return None
        if not sync:
            return target.parent
        fsync_dir(target.parent)
        return None

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError:
            raise StorageError(f"no stored file for {key}") from None

    def read(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise StorageError("negative range")
        with self.open(key) as f:
            f.seek(offset)
            data = f.read(length)
        if len(data) != length:
            raise StorageError(f"{key} is shorter than {offset}+{length} bytes")
        return data

    def delete(self, key: str) -> None:
        _unlink_quietly(self.path(key))


def _link(source: Path, target: Path) -> None:
    """os.link, making the target's folders when it is the first under its prefix (not
    before every link: the two mkdir calls that fail with EEXIST cost more than it)."""
    try:
        os.link(source, target)
    except FileNotFoundError:
        if not os.path.exists(source):
            raise
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)


def get_storage() -> FileSystemStorage:
    from django.conf import settings

    return FileSystemStorage(settings.DATA_DIR / "store")
