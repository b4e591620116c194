#!/usr/bin/env python
"""Ingest benchmark: import a real 275-slice CT into a fresh archive, end to end.

For each configuration (the embedded default: SQLite + filesystem broker; and PostgreSQL +
Redis when reachable) this starts a real Celery worker, runs `manage.py import` on the CT
and waits until the last instance is indexed and its series derived (slice order,
thumbnail, /metadata), then prints instances/s and MB/s.

    .venv/bin/python bench/ingest.py [--source DIR] [--workers N] [--runs N]

Figures go to docs/performance.md by hand, with the machine and the date.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "testdata" / "ct-lidc-0314"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "lightbox_bench"
REDIS_BENCH_URL = "redis://127.0.0.1:6379/13"
PYTHON = sys.executable


def run(cmd: list[str], env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=env, check=True, **kwargs)


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            pass
        import redis

        redis.Redis.from_url(REDIS_BENCH_URL, socket_timeout=2).ping()
        return True
    except Exception:
        return False


def fresh_postgres() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_BENCH_DB}")
    import redis

    redis.Redis.from_url(REDIS_BENCH_URL).flushdb()
    return f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"


def environment(data_dir: Path, database_url: str, redis_url: str, workers: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(LIGHTBOX_DATA_DIR=str(data_dir), LIGHTBOX_WORKER_CONCURRENCY=str(workers))
    env.update(LIGHTBOX_LOG_LEVEL="WARNING")
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def start_worker(env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    worker = subprocess.Popen(
        [PYTHON, "-m", "celery", "-A", "worker", "worker", "--loglevel=INFO"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while "ready." not in log_path.read_text():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    return worker


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


PROBE = """
import json, django
django.setup()
from django.db.models import F, Max, Min
from backend.archive.models import IngestRecord, Instance, Series
last = max(
    IngestRecord.objects.aggregate(t=Max("finished_at"))["t"],
    Series.objects.aggregate(t=Max("derived_at"))["t"],
)
print(json.dumps({
    "instances": Instance.objects.count(),
    "viewable": Instance.objects.filter(viewable=True).count(),
    "unfinished": IngestRecord.objects.filter(state__in=["pending", "processing"]).count(),
    "lagging_series": Series.objects.filter(derived_version__lt=F("derive_requested")).count(),
    "last_done": last.timestamp(),
    "first_received": IngestRecord.objects.aggregate(t=Min("received_at"))["t"].timestamp(),
}))
"""


def probe(env: dict) -> dict:
    out = run(
        [PYTHON, "-c", PROBE],
        {**env, "DJANGO_SETTINGS_MODULE": "backend.settings", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, source: Path, database_url: str, redis_url: str, workers: int) -> dict:
    files = sorted(p for p in source.rglob("*") if p.is_file())
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-") as tmp:
        env = environment(Path(tmp) / "data", database_url, redis_url, workers)
        run([PYTHON, "manage.py", "migrate", "-v0"], env)
        worker = start_worker(env, Path(tmp) / "worker.log")
        try:
            started = time.time()
            run([PYTHON, "manage.py", "import", "-v0", str(source)], env, stdout=subprocess.DEVNULL)
            # Each probe is a Python process of its own: wait first, so probing does not
            # take CPU from the derivation being measured.
            time.sleep(2)
            while (state := probe(env))["lagging_series"] or state["unfinished"]:
                time.sleep(1)
            # Timestamps written by the workers, so polling latency does not count.
            elapsed = state["last_done"] - started
        finally:
            stop(worker)
    assert state["instances"] == len(files), state
    return {
        "configuration": name,
        "instances": state["instances"],
        "viewable": state["viewable"],
        "MB": megabytes,
        "wall_s": elapsed,
        "received_s": state["last_done"] - state["first_received"],
        "inst_per_s": len(files) / elapsed,
        "MB_per_s": megabytes / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not args.source.is_dir():
        sys.exit(f"benchmark data not found: {args.source} (see ../shared/testdata/README.md)")
    configurations = [("embedded (SQLite + filesystem broker)", lambda: ("", ""))]
    if postgres_available():
        configurations.append(("PostgreSQL + Redis", lambda: (fresh_postgres(), REDIS_BENCH_URL)))
    else:
        print("PostgreSQL/Redis not reachable on 127.0.0.1: measuring the embedded default only")
    results = []
    for name, prepare in configurations:
        for _ in range(args.runs):
            results.append(measure(name, args.source, *prepare(), workers=args.workers))
    print_table(results, args)


def print_table(results: list[dict], args) -> None:
    print(
        f"\nLightbox ingest benchmark — {time.strftime('%Y-%m-%d')}, {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.workers} worker processes, source {args.source.name}"
    )
    header = (
        f"{'configuration':38} {'run':>3} {'files':>5} {'MB':>5} {'wall s':>6} {'inst/s':>6}"
        f" {'MB/s':>5} | {'from 1st file s':>15} {'inst/s':>6}"
    )
    print(header)
    print("-" * len(header))
    runs: dict[str, int] = {}
    for r in results:
        runs[r["configuration"]] = runs.get(r["configuration"], 0) + 1
        print(
            f"{r['configuration']:38} {runs[r['configuration']]:>3} {r['instances']:>5} "
            f"{r['MB']:>5.0f} {r['wall_s']:>6.2f} {r['inst_per_s']:>6.1f} {r['MB_per_s']:>5.1f}"
            f" | {r['received_s']:>15.2f} {r['instances'] / r['received_s']:>6.1f}"
        )
    print(
        "\nwall s: from starting `manage.py import` (process start included) until the last "
        "instance is indexed and viewable and its series derived (slice order, thumbnail, "
        "/metadata).\nfrom 1st file s: to the same end, from the moment the first file was "
        "durably received (leaves out the command's own start-up)."
    )


if __name__ == "__main__":
    if shutil.which("true") is None:
        sys.exit("needs a POSIX system")
    main()
