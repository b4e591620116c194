"""backend/warm.py: a recording process or a worker pool process sets up at start-up what
its first file would otherwise pay for, and does not wait for a service that is down."""

import os
import subprocess
import sys

from .conftest import REPO

FIRST_USES = """
import io, sys
import django
django.setup()
from backend import warm
warm.indexer()
before = set(sys.modules)
from PIL import Image
from backend.archive import queue
from backend.live import events
queue.send("lightbox.test_only", 1)
assert events._validator.cache_info().currsize == len(events.SCHEMAS)
for format in ("JPEG", "PNG"):
    Image.new("L", (8, 8)).save(io.BytesIO(), format=format)
print(sorted(set(sys.modules) - before))
"""


def run(script: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "LIGHTBOX_DATA_DIR": str(tmp_path / "data"),
        **env,
    }
    # The timeout only keeps a hang from stalling the suite.
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_after_warming_up_the_first_task_sent_imports_nothing(tmp_path):
    done = run(FIRST_USES, tmp_path)  # embedded: SQLite and the filesystem broker

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_warming_up_does_not_wait_for_a_database_or_broker_that_is_down(tmp_path):
    script = "import django; django.setup(); from backend import warm; warm.indexer(); print('up')"
    nothing_listens = "127.0.0.1:9"  # discard: closed here

    done = run(
        script,
        tmp_path,
        DATABASE_URL=f"postgres://postgres@{nothing_listens}/lightbox",
        REDIS_URL=f"redis://{nothing_listens}/0",
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "up"
    assert "broker not reachable at start-up" in done.stderr
