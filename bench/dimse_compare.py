#!/usr/bin/env python
"""Lightbox configurations side by side on the DIMSE benchmark, alternating in one run.

On a shared virtual machine, two runs of bench/dimse.py minutes apart can differ by more
than a change does. This script runs bench/dimse.py's Lightbox measurement (embedded
mode) for each configuration in turn, then Orthanc, and repeats: every configuration meets
the same moments of the machine.

A configuration is NAME=SETTINGS, SETTINGS being environment variables for Lightbox
(KEY:VALUE, comma separated) and optionally `tree:PATH`, another checkout of Lightbox to
run instead of this one (a `git worktree` of an earlier commit, say, with a .venv link).
Lightbox runs embedded, or with --services on PostgreSQL and Redis:

    .venv/bin/python bench/dimse_compare.py --runs 3 --associations 1,4 \\
        one=LIGHTBOX_DICOM_PROCESSES:1 two=LIGHTBOX_DICOM_PROCESSES:2

Printed: each run as it ends (accepted in / viewable at, the receiver's and the worker's
CPU seconds, and the worker's CPU seconds while storescu was still sending), then the
medians and the ratios to Orthanc's median.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dimse  # noqa: E402


def parse(config: str) -> tuple[str, dict[str, str], Path]:
    name, _, settings = config.partition("=")
    env, tree = {}, dimse.REPO
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition(":")
        if key == "tree":
            tree = Path(value).resolve()
        else:
            env[key] = value
    return name, env, tree


def run_with(
    files: list[Path], associations: int, env: dict[str, str], tree: Path, services: bool
) -> dict:
    saved, repo = dict(os.environ), dimse.REPO
    os.environ.update(env)
    dimse.REPO = tree
    try:
        return dimse.lightbox_run(files, associations, services)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        dimse.REPO = repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="NAME=KEY:VALUE,...[,tree:PATH]")
    parser.add_argument("--source", type=Path, default=dimse.DEFAULT_SOURCE)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--associations", default="1,4")
    parser.add_argument("--no-orthanc", action="store_true")
    parser.add_argument(
        "--services",
        action="store_true",
        help="run Lightbox on PostgreSQL and Redis (as bench/dimse.py does), not embedded",
    )
    args = parser.parse_args()
    if args.services and not dimse.postgres_available():
        sys.exit("--services: PostgreSQL and Redis do not answer on 127.0.0.1")
    if not args.source.is_dir():
        sys.exit(f"benchmark data not found: {args.source} (see ../shared/testdata/README.md)")
    files = sorted(p for p in args.source.rglob("*") if p.is_file())
    configs = [parse(c) for c in args.configs]
    counts = [int(a) for a in args.associations.split(",")]
    orthanc = not args.no_orthanc and dimse.shutil.which("Orthanc")
    results: dict[tuple[str, int], list[dict]] = {}
    for run in range(args.runs):
        for associations in counts:
            for name, env, tree in configs:
                dimse.settle()
                result = run_with(files, associations, env, tree, args.services)
                results.setdefault((name, associations), []).append(result)
                print(f"run {run + 1} {name:>12} x{associations}: {_text(result)}", flush=True)
            if orthanc:
                dimse.settle()
                result = dimse.orthanc_run(files, associations)
                results.setdefault(("Orthanc", associations), []).append(result)
                print(f"run {run + 1} {'Orthanc':>12} x{associations}: {_text(result)}", flush=True)
    print()
    for associations in counts:
        theirs = results.get(("Orthanc", associations))
        for name in [c[0] for c in configs] + (["Orthanc"] if theirs else []):
            runs = results[(name, associations)]
            accept = dimse.median([r["accept_s"] for r in runs])
            viewable = dimse.median_viewable(runs)
            line = f"{name:>12} x{associations}: accepted in {accept:.2f} s"
            line += f", viewable at {viewable:.2f} s"
            if theirs and name != "Orthanc":
                rate = dimse.median([r["accept_s"] for r in theirs]) / accept
                view = viewable / dimse.median_viewable(theirs)
                line += f"; ratios to Orthanc {rate:.2f} / {view:.2f}"
            print(line)


def _text(result: dict) -> str:
    viewable = result["viewable_s"]
    text = f"{result['accept_s']:.2f} / {'stuck' if viewable is None else f'{viewable:.2f}'}"
    cpu = [
        (label, result.get(key))
        for label, key in (
            ("receiver CPU", "receiver_cpu_s"),
            ("worker CPU", "worker_cpu_s"),
            ("worker CPU while sending", "worker_cpu_sending_s"),
        )
    ]
    return text + "".join(f", {label} {value:.2f}" for label, value in cpu if value is not None)


if __name__ == "__main__":
    main()
