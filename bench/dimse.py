#!/usr/bin/env python
"""DIMSE benchmark: dcmtk storescu sends a real 275-slice CT to Lightbox and to Orthanc.

For each peer, the CT is sent over 1 association and over 4 in parallel (TCP_NODELAY=1 on
both sides). Lightbox runs twice: in its embedded mode (SQLite and a filesystem broker, what
`make run` uses on a bare machine) and, when they answer on 127.0.0.1, on PostgreSQL and
Redis (database lightbox_bench, Redis db 13, as bench/ingest.py), as deployed.

Reported: accepted instances/s (until storescu returns) and, for Lightbox, the seconds until
every instance is indexed and viewable and its series derived (Orthanc indexes before it
answers, so its time to viewable is its acceptance time), and the CPU seconds the receiver
and the worker used until then (Linux; less sensitive to a busy machine than wall time).
Then the ratios.

    .venv/bin/python bench/dimse.py [--source DIR] [--runs N] [--embedded-only]

Needs dcmtk's storescu and the Debian package orthanc (`apt-get install dcmtk orthanc`);
without Orthanc it measures Lightbox alone and says so.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "testdata" / "ct-lidc-0314"
PYTHON = sys.executable
sys.path.insert(0, str(REPO / "bench"))

from ingest import (  # noqa: E402  (the same probe of the index, the same databases)
    REDIS_BENCH_URL,
    fresh_postgres,
    postgres_available,
    probe,
    stop,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s:\n{log.read_text()[-3000:]}")


def wait_for_members(receiver: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """Until every receiver process is ready (the first one logs how many there are)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if listening := re.search(r"listening on [^,\n]*(?:, (\d+) processes)?$", text, re.M):
            count = int(listening[1] or 1)
            if all(f"process {k} of {count} ready" in text for k in range(2, count + 1)):
                return
        if receiver.poll() is not None:
            raise RuntimeError(f"the receiver exited:\n{text[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"the receiver's processes were not ready after {timeout} s")


def spawn(cmd: list[str], env: dict, log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start `cmd` in `cwd`, by default the Lightbox checkout REPO names at the time of the
    call (bench/dimse_compare.py points it at another tree)."""
    return subprocess.Popen(
        cmd,
        cwd=cwd or REPO,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def send(files: list[Path], port: int, called_ae: str, associations: int) -> float:
    """storescu over `associations` parallel associations; returns the seconds taken."""
    groups = [files[i::associations] for i in range(associations)]
    env = {**os.environ, "TCP_NODELAY": "1"}
    started = time.perf_counter()
    senders = [
        subprocess.Popen(
            [
                "storescu",
                "-aet",
                "BENCH",
                "-aec",
                called_ae,
                "127.0.0.1",
                str(port),
                *map(str, group),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for group in groups
    ]
    for sender in senders:
        _, err = sender.communicate(timeout=600)
        if sender.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode()[-2000:]}")
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its live descendants (Linux /proc), or None:
    the receiver's member processes and each one's recording process are counted."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        total, pending = 0.0, [pid]
        while pending:
            each = pending.pop()
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            pending += map(int, Path(f"/proc/{each}/task/{each}/children").read_text().split())
        return total
    except (OSError, ValueError):
        return None


def used(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def lightbox_run(files: list[Path], associations: int, services: bool) -> dict:
    """One run on a fresh archive: embedded (SQLite, filesystem broker) or, with
    `services`, on a new PostgreSQL database and an emptied Redis database."""
    with tempfile.TemporaryDirectory(prefix="lightbox-dimse-") as tmp:
        tmp = Path(tmp)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        if services:
            env.update(DATABASE_URL=fresh_postgres(), REDIS_URL=REDIS_BENCH_URL)
        env.update(
            LIGHTBOX_DATA_DIR=str(tmp / "data"),
            LIGHTBOX_DICOM_PORT=str(port),
            LIGHTBOX_LOG_LEVEL="WARNING",
        )
        subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
        worker = spawn(
            [PYTHON, "-m", "celery", "-A", "worker", "worker", "--loglevel=INFO"],
            env,
            tmp / "worker.log",
        )
        # INFO: the receiver logs when each of its processes is ready (and each association).
        receiver_env = {**env, "LIGHTBOX_LOG_LEVEL": "INFO"}
        receiver = spawn([PYTHON, "-m", "worker.dimse"], receiver_env, tmp / "dimse.log")
        try:
            wait_for_port(port, receiver, tmp / "dimse.log")
            wait_for_members(receiver, tmp / "dimse.log")
            while "ready." not in (tmp / "worker.log").read_text():
                time.sleep(0.1)
            cpu = cpu_seconds(receiver.pid), cpu_seconds(worker.pid)
            started = time.time()
            accepted = send(files, port, "LIGHTBOX", associations)
            receiver_cpu = used(cpu[0], cpu_seconds(receiver.pid))
            worker_cpu_sending = used(cpu[1], cpu_seconds(worker.pid))
            time.sleep(2)
            deadline = time.monotonic() + VIEWABLE_TIMEOUT
            viewable: float | None = None
            while (
                (state := probe(env))["lagging_series"]
                or state["unfinished"]
                or state["instances"] < len(files)
            ):
                if time.monotonic() > deadline:
                    print(f"Lightbox, {associations} association(s): stuck: {state}")
                    break
                time.sleep(1)
            else:
                viewable = state["last_done"] - started
            worker_cpu = used(cpu[1], cpu_seconds(worker.pid))
        finally:
            stop(receiver)
            stop(worker)
    return {
        "accept_s": accepted,
        "viewable_s": viewable,
        "receiver_cpu_s": receiver_cpu,
        "worker_cpu_s": worker_cpu,
        # what indexing took from the transfer: little while indexing waits for the senders
        "worker_cpu_sending_s": worker_cpu_sending,
    }


EMBEDDED = "Lightbox embedded"  # SQLite, filesystem broker: `make run` on a bare machine
SERVICES = "Lightbox PG+Redis"  # PostgreSQL and Redis, as in production

# Beyond this a run counts as stuck (a lost derivation waits for the sweep) and is left out
# of the median.
VIEWABLE_TIMEOUT = 60

ORTHANC_CONFIG = {
    "Name": "bench",
    "DicomAet": "ORTHANC",
    "DicomCheckCalledAet": False,
    "RemoteAccessAllowed": False,
    "AuthenticationEnabled": False,
    "StorageCompression": False,
    "Plugins": [],
}


def orthanc_run(files: list[Path], associations: int, services: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="orthanc-bench-") as tmp:
        tmp = Path(tmp)
        port, http = free_port(), free_port()
        config = {
            **ORTHANC_CONFIG,
            "DicomPort": port,
            "HttpPort": http,
            "StorageDirectory": str(tmp / "storage"),
            "IndexDirectory": str(tmp / "index"),
        }
        (tmp / "orthanc.json").write_text(json.dumps(config))
        env = {**os.environ, "TCP_NODELAY": "1"}
        server = spawn(["Orthanc", str(tmp / "orthanc.json")], env, tmp / "orthanc.log", cwd=tmp)
        try:
            wait_for_port(port, server, tmp / "orthanc.log")
            accepted = send(files, port, "ORTHANC", associations)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    return {"accept_s": accepted, "viewable_s": accepted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--embedded-only",
        action="store_true",
        help="leave out the run on PostgreSQL and Redis",
    )
    args = parser.parse_args()
    if not args.source.is_dir():
        sys.exit(f"benchmark data not found: {args.source} (see ../shared/testdata/README.md)")
    if shutil.which("storescu") is None:
        sys.exit("storescu not found: apt-get install dcmtk")
    files = sorted(p for p in args.source.rglob("*") if p.is_file())
    peers = [(EMBEDDED, lightbox_run, False)]
    if args.embedded_only:
        pass
    elif postgres_available():
        peers.append((SERVICES, lightbox_run, True))
    else:
        print("PostgreSQL/Redis not reachable on 127.0.0.1: measuring the embedded mode only")
    if shutil.which("Orthanc"):
        peers.append(("Orthanc", orthanc_run, False))
    else:
        print("Orthanc not found (apt-get install orthanc): measuring Lightbox only")
    results: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.runs):
        for associations in (1, 4):
            for name, run, services in peers:
                settle()
                results.setdefault((name, associations), []).append(
                    run(files, associations, services)
                )
    report(results, len(files), args)


def settle() -> None:
    """Write back what the previous run left dirty in the page cache (some 140 MB of
    files), so that it is not flushed during the next run, by the next peer's fsyncs."""
    os.sync()
    time.sleep(1)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def report(results: dict, count: int, args) -> None:
    print(
        f"\nLightbox DIMSE benchmark — {time.strftime('%Y-%m-%d')}, {platform.node()}, "
        f"{os.cpu_count()} cores; {count} files from {args.source.name}; "
        f"median of {args.runs} runs"
    )
    header = (
        f"{'peer':18} {'assocs':>6} {'accept s':>9} {'accepted/s':>10} {'viewable s':>10}"
        f" {'recv CPU s':>10} {'worker CPU s':>12}"
    )
    print(header)
    print("-" * len(header))
    for (name, associations), runs in sorted(results.items(), key=lambda kv: kv[0][1]):
        accept = median([r["accept_s"] for r in runs])
        viewable = median_viewable(runs)
        receiver_cpu = _cpu_column([r.get("receiver_cpu_s") for r in runs], 10)
        worker_cpu = _cpu_column([r.get("worker_cpu_s") for r in runs], 12)
        print(
            f"{name:18} {associations:>6} {accept:>9.2f} {count / accept:>10.1f} {viewable:>10.2f}"
            f" {receiver_cpu} {worker_cpu}"
        )
        print(f"{'':18} {'runs':>6} " + ", ".join(_run_text(r) for r in runs))
    for name in (EMBEDDED, SERVICES):
        for associations in (1, 4):
            ours, theirs = results.get((name, associations)), results.get(("Orthanc", associations))
            if ours and theirs:
                accepts = [r["accept_s"] for r in theirs], [r["accept_s"] for r in ours]
                rate = median(accepts[0]) / median(accepts[1])
                view = median_viewable(ours) / median_viewable(theirs)
                print(
                    f"{name}, {associations} association(s): acceptance rate / Orthanc's = "
                    f"{rate:.2f} (target ≥ 1); time to viewable / Orthanc's = {view:.2f} "
                    "(target ≤ 1.5)"
                )


def median_viewable(runs: list[dict]) -> float:
    """Median over the runs that ended (nan if none did)."""
    ended = [r["viewable_s"] for r in runs if r["viewable_s"] is not None]
    return median(ended) if ended else float("nan")


def _run_text(run: dict) -> str:
    viewable = "stuck" if run["viewable_s"] is None else f"{run['viewable_s']:.2f}"
    return f"{run['accept_s']:.2f}/{viewable}"


def _cpu_column(values: list, width: int) -> str:
    known = [v for v in values if v is not None]
    return f"{median(known):>{width}.2f}" if known else f"{'-':>{width}}"


if __name__ == "__main__":
    main()
