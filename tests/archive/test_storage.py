"""FileSystemStorage: validated keys, sharded paths, atomic and durable writes."""

import os
from pathlib import Path

import pytest

from backend.archive.storage import FileSystemStorage, StorageError, write_durably

DIGEST = "ab" + "cd" + "0123456789abcdef" * 3 + "0123456789ab"
KEY = f"objects/{DIGEST}"


@pytest.fixture
def storage(tmp_path):
    return FileSystemStorage(tmp_path / "store")


def leftovers(root):
    return [name for _, _, files in os.walk(root) for name in files if name.startswith(".tmp-")]


def test_it_shards_paths_by_digest(storage):
    assert len(DIGEST) == 64
    assert storage.path(KEY) == storage.root / "objects" / "ab" / "cd" / DIGEST
    assert storage.path(f"frames/{DIGEST}.raw") == storage.root / "frames/ab/cd" / f"{DIGEST}.raw"
    assert storage.path(f"derived/{DIGEST}.metadata.json.gz").name == f"{DIGEST}.metadata.json.gz"


@pytest.mark.parametrize(
    "key",
    [
        "../x",
        f"objects/../{DIGEST}",
        f"/objects/{DIGEST}",
        f"/etc/{DIGEST}",
        f"objects/{DIGEST.upper()}",
        f"objects/{DIGEST[:-1]}",
        f"objects/{DIGEST}0",
        f"secrets/{DIGEST}",
        f"objects/{DIGEST}/../../x",
        f"objects/{DIGEST}.a.b.c.d",
        f"objects/{DIGEST}.RAW",
        # `$` also matches before a final newline: two keys would name one file.
        f"objects/{DIGEST}\n",
        "",
    ],
)
def test_it_rejects_invalid_keys(storage, key):
    with pytest.raises(StorageError):
        storage.path(key)
    with pytest.raises(StorageError):
        storage.create(key, [b"x"])
    assert not storage.root.exists() or not any(storage.root.rglob("*"))


def test_it_creates_exact_content_and_leaves_no_temporaries(storage):
    size = storage.create(KEY, [b"abc", b"", b"def" * 1000])
    assert size == 3 + 3000
    assert storage.read(KEY) == b"abc" + b"def" * 1000
    assert leftovers(storage.root) == []


def test_it_replaces_an_existing_file_whole(storage):
    storage.create(KEY, [b"first version"])
    storage.create(KEY, [b"second"])
    assert storage.read(KEY) == b"second"
    assert leftovers(storage.root) == []


def test_it_leaves_nothing_behind_when_the_chunks_fail(tmp_path):
    def failing():
        yield b"half a file"
        raise RuntimeError("sender went away")

    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(RuntimeError):
        write_durably(folder / "target.dcm", failing())
    assert list(folder.iterdir()) == []


def test_it_keeps_the_old_file_when_a_replacement_fails(storage):
    storage.create(KEY, [b"good"])

    def failing():
        yield b"bad"
        raise OSError("disk full")

    with pytest.raises(OSError):
        storage.create(KEY, failing())
    assert storage.read(KEY) == b"good"
    assert leftovers(storage.root) == []


def test_it_reads_ranges(storage):
    storage.create(KEY, [bytes(range(100))])
    assert storage.read_range(KEY, 0, 10) == bytes(range(10))
    assert storage.read_range(KEY, 90, 10) == bytes(range(90, 100))
    assert storage.read_range(KEY, 100, 0) == b""


@pytest.mark.parametrize(("offset", "length"), [(95, 10), (200, 1), (-1, 5), (0, -1)])
def test_it_refuses_ranges_outside_the_file(storage, offset, length):
    storage.create(KEY, [bytes(100)])
    with pytest.raises(StorageError):
        storage.read_range(KEY, offset, length)


def test_it_reports_a_missing_file(storage):
    assert not storage.exists(KEY)
    with pytest.raises(StorageError):
        storage.read(KEY)
    with pytest.raises(StorageError):
        storage.read_range(KEY, 0, 1)


def test_it_deletes_and_tolerates_deleting_twice(storage):
    storage.create(KEY, [b"x"])
    storage.delete(KEY)
    assert not storage.exists(KEY)
    storage.delete(KEY)


def test_it_adopts_a_file_as_a_hard_link(storage, tmp_path):
    source = tmp_path / "spooled.dcm"
    source.write_bytes(b"spooled bytes")
    storage.adopt(KEY, source)
    assert storage.read(KEY) == b"spooled bytes"
    assert os.path.samefile(storage.path(KEY), source)


def test_adopting_into_an_existing_folder_makes_no_folder(storage, tmp_path, monkeypatch):
    first, second = tmp_path / "first.dcm", tmp_path / "second.dcm"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    storage.adopt(KEY, first)  # makes objects/ab/cd
    made = []
    real = Path.mkdir
    monkeypatch.setattr(
        Path, "mkdir", lambda self, *a, **k: made.append(self) or real(self, *a, **k)
    )
    other = KEY[:-1] + ("0" if KEY[-1] != "0" else "1")  # same folder
    storage.adopt(other, second)
    assert made == []
    assert storage.read(other) == b"second"


def test_adopting_a_missing_file_fails(storage, tmp_path):
    with pytest.raises(FileNotFoundError):
        storage.adopt(KEY, tmp_path / "gone.dcm")
    assert not storage.exists(KEY)


def test_adopting_across_filesystems_copies(storage, tmp_path, monkeypatch):
    import errno

    def cross_device(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    source = tmp_path / "spooled.dcm"
    source.write_bytes(b"spooled bytes")
    storage.adopt(KEY, source)  # into a folder that does not exist yet
    assert storage.read(KEY) == b"spooled bytes"
    assert not os.path.samefile(storage.path(KEY), source)


def test_it_keeps_an_existing_target_when_adopting(storage, tmp_path):
    storage.create(KEY, [b"already stored"])
    source = tmp_path / "spooled.dcm"
    source.write_bytes(b"already stored (another inode)")
    storage.adopt(KEY, source)
    assert storage.read(KEY) == b"already stored"
    assert source.exists()
