"""manage.py import PATH... — import DICOM files, folders (recursively) and .zip archives.

Every file goes through the shared ingest service: stored durably, then indexed by the
workers. The command waits for the workers' verdict on each file and prints a summary;
it exits 0 only if nothing was rejected.
"""

import os
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from backend.accounts import audit
from backend.archive import ingest
from backend.archive.models import IngestRecord

State = IngestRecord.State
POLL_SECONDS = 0.2
CHUNK_IDS = 500


class Source:
    """One file to import: a path on disk or a member of a zip archive."""

    def __init__(self, label: str, opener):
        self.label = label
        self.open = opener


def iter_sources(paths: list[str]) -> Iterator[Source]:
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield from _file_sources(Path(root) / name)
        else:
            yield from _file_sources(path)


def _file_sources(path: Path) -> Iterator[Source]:
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    yield Source(f"{path}:{info.filename}", lambda a=archive, i=info: a.open(i))
    else:
        yield Source(str(path), lambda p=path: open(p, "rb"))


class Command(BaseCommand):
    help = "Import DICOM files, folders (recursively) and .zip archives into the archive."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="return once every file is stored durably, without waiting for indexing",
        )
        parser.add_argument(
            "--wait-timeout",
            type=float,
            default=300,
            help="give up waiting after this many seconds without progress (default 300)",
        )

    def handle(self, *args, paths, no_wait, wait_timeout, **options):
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise CommandError(f"no such file or folder: {', '.join(missing)}")
        quiet = options["verbosity"] < 1 or not sys.stderr.isatty()
        record_ids, unreadable = self._receive(paths, quiet)
        audit.record(
            "archive.import",
            audit.SUCCESS if record_ids else audit.FAILURE,
            detail={
                "paths": [str(p)[:300] for p in paths[:20]],
                "stored": len(record_ids),
                "rejected": len(unreadable),
            },
        )
        if no_wait:
            self.stdout.write(f"{len(record_ids)} file(s) stored and queued for indexing.")
            for label, reason in unreadable:
                self.stdout.write(f"  rejected {label}: {reason}")
            if unreadable:
                sys.exit(1)
            return
        finished = self._wait(record_ids, wait_timeout, quiet)
        return self._exit(unreadable, finished)

    def _receive(self, paths, quiet) -> tuple[list, list[tuple[str, str]]]:
        record_ids, unreadable = [], []
        total = sum(1 for _ in iter_sources(paths))
        files = ((source.label, source.open) for source in iter_sources(paths))
        with tqdm(total=total, desc="storing ", unit="file", disable=quiet) as bar:
            for received in ingest.receive_many(files, source="cli"):
                if received.record is None:
                    unreadable.append((received.label, received.error))
                else:
                    record_ids.append(received.record.pk)
                bar.update()
        return record_ids, unreadable

    def _wait(self, record_ids: list, timeout: float, quiet: bool) -> dict:
        """Poll until every record has a final state; returns {id: (state, detail, reason)}."""
        remaining = list(record_ids)
        finished: dict = {}
        last_progress = time.monotonic()
        with tqdm(total=len(record_ids), desc="indexing", unit="file", disable=quiet) as bar:
            while remaining:
                done = self._collect_final(remaining)
                if done:
                    finished.update(done)
                    remaining = [r for r in remaining if r not in done]
                    bar.update(len(done))
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > timeout:
                    break
                else:
                    time.sleep(POLL_SECONDS)
        if remaining:
            self.stderr.write(
                f"{len(remaining)} file(s) are stored but not indexed yet after waiting "
                f"{timeout:.0f} s: is a worker running (make run starts one)? They will be "
                "indexed when a worker picks them up."
            )
            for record_id in remaining:
                finished[record_id] = ("waiting", "", "")
        return finished

    def _collect_final(self, remaining: list) -> dict:
        done = {}
        for start in range(0, len(remaining), CHUNK_IDS):
            rows = IngestRecord.objects.filter(
                pk__in=remaining[start : start + CHUNK_IDS], state__in=IngestRecord.FINAL_STATES
            ).values_list("pk", "state", "source_detail", "reason")
            done.update({pk: (state, detail, reason) for pk, state, detail, reason in rows})
        return done

    def _exit(self, unreadable, finished: dict):
        counts = Counter(state for state, _, _ in finished.values())
        rejected = [
            (detail, reason)
            for state, detail, reason in finished.values()
            if state == State.QUARANTINED
        ] + unreadable
        self.stdout.write(
            f"stored: {counts[State.STORED]}, replaced: {counts[State.REPLACED]}, "
            f"already present: {counts[State.DUPLICATE]}, rejected: {len(rejected)}"
            + (f", still waiting: {counts['waiting']}" if counts["waiting"] else "")
        )
        for label, reason in sorted(rejected):
            self.stdout.write(f"  rejected {label}: {reason}")
        if rejected:
            sys.exit(1)
        if counts["waiting"]:
            sys.exit(2)
