"""Shared fixtures. Each test gets its own data dir; tasks sent to Celery are captured
(unit tests run them inline through the same functions the worker calls; integration tests
in tests/integration use real worker processes instead)."""

import json
from pathlib import Path

import pydicom
import pytest

REPO = Path(__file__).resolve().parent.parent
TESTDATA = REPO.parent / "shared" / "testdata"
SMALL = TESTDATA / "small"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_file(name: str) -> Path:
    return PYDICOM_FILES / name


def needs_testdata(path: Path = SMALL):
    return pytest.mark.skipif(
        not path.exists(), reason=f"real scanner files not found at {path} (../shared/testdata)"
    )


def manifest() -> list[dict]:
    if not (SMALL / "manifest.json").exists():
        return []
    return json.loads((SMALL / "manifest.json").read_text())


# Rows that the post_migrate signal recreates, the same, after every flush.
KEPT_BY_FLUSH = {"django_content_type", "auth_permission"}


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's test databases, emptied after each transactional test with DELETE
    instead of TRUNCATE.

    Django's flush truncates every table at once; on PostgreSQL a TRUNCATE makes new files
    for each of the ~30 tables and their indexes: ~100 ms a test on the CI machine, while
    DELETE empties the few rows a test leaves in under 10 ms. Content types and permissions
    are kept rather than deleted and recreated by post_migrate (which still runs, finds them
    all there and adds nothing): another ~60 ms a test. Every other table ends up empty, as
    before; sequences are not reset (TRUNCATE was not asked to restart them either). Foreign
    keys are DEFERRABLE INITIALLY DEFERRED, so the order of the deletes does not matter
    inside flush's transaction. Flushes asked to reset sequences or cascade keep TRUNCATE.
    """
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or allow_cascade or not tables:
            return truncate(
                self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        return ["SET CONSTRAINTS ALL DEFERRED;"] + [
            f"DELETE FROM {self.quote_name(table)};"  # noqa: S608 - Django's own table names
            for table in tables
            if table not in KEPT_BY_FLUSH
        ]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "sql_flush", sql_flush)
        yield


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    from backend.archive import indexing, viewing

    indexing._parents.clear()  # per-process cache of studies/series from earlier tests
    indexing._sources_noted.clear()
    viewing._parts = viewing._SeriesParts()  # and of the viewer's manifest parts
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    return settings.DATA_DIR


class InlineQueue:
    """Stands in for the broker in unit tests: records sends, runs them on request."""

    def __init__(self):
        self.sent: list[tuple[str, tuple]] = []

    def send(self, name, *args, countdown=None):
        self.sent.append((name, args))

    def run(self) -> None:
        from backend.archive import derive, indexing, queue, recovery
        from backend.nodes import jobs

        handlers = {
            queue.INGEST_FILE: indexing.index_received,
            queue.INGEST_BATCH: indexing.index_batch,
            queue.DERIVE_SERIES: derive.derive_series,
            queue.SWEEP: lambda: recovery.sweep(),
            queue.REMOTE_JOB: jobs.run,
        }
        while self.sent:
            name, args = self.sent.pop(0)
            handlers[name](*args)


@pytest.fixture
def tasks(monkeypatch):
    from backend.archive import queue

    inline = InlineQueue()
    monkeypatch.setattr(queue, "send", inline.send)
    monkeypatch.setattr(queue, "waiting_messages", lambda queue_name="celery": len(inline.sent))
    return inline


def grant_every_study(user):
    """Make `user` a radiologist in a group whose rule selects every study."""
    from backend.accounts.models import AccessGroup, GroupRule, Profile, Role

    Profile.objects.update_or_create(user=user, defaults={"role": Role.RADIOLOGIST})
    group, created = AccessGroup.objects.get_or_create(name="Every study")
    if created:
        GroupRule.objects.create(group=group, attribute=GroupRule.Attribute.ALL)
    group.members.add(user)
    return user
