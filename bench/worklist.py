#!/usr/bin/env python
"""Worklist benchmark: /api/studies (what the worklist page asks) at 100,000 studies.

A fresh PostgreSQL database gets 100,000 synthetic studies (40,000 patients), written with
COPY exactly as bench/dicomweb.py writes them (labelled "SYNTHETIC BENCH"). One uvicorn
process serves it; a user signs in through the login form like a browser and one keep-alive
client asks for pages of 50 rows with the number that match (counted up to 1,000, then
"1,000+"), as the page does, for every kind of search the page offers:
the default page (newest study date first), deep pages, each search field, date presets,
every sort, and a combined search. Values vary per request so no single row stays hot.
Each answer must be 200 with the page's rows and the total that match.

    .venv/bin/python bench/worklist.py [--studies N] [--requests N] [--keep]

Needs PostgreSQL (postgres@127.0.0.1:5432, trust) and Redis (127.0.0.1:6379, db 13 is
flushed). Figures go to docs/performance.md by hand, with the machine and the date.
"""

import argparse
import datetime
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "bench"), str(REPO)]

import dicomweb  # noqa: E402  (the synthetic index and the HTTP client)
import psycopg  # noqa: E402
from dicomweb import (  # noqa: E402
    FIRST_STUDY_DATE,
    GIVEN_NAMES,
    MODALITIES,
    REDIS_BENCH_URL,
    STUDY_DAYS,
    SURNAME_WEIGHTS,
    SURNAMES,
    Client,
    Response,
    Result,
    generate,
    judge,
    latency_columns,
    machine,
    percentile,
    print_errors,
    start_web,
)
from ingest import environment, postgres_available, run, stop  # noqa: E402

dicomweb.PG_BENCH_DB = "lightbox_bench_worklist"
PYTHON = sys.executable
PASSWORD = uuid.uuid4().hex
WARMUP = 10
PAGE = 50
TARGET_P95_MS = 50


class SignedIn(Client):
    """A keep-alive connection carrying a browser session (the worklist's API takes no
    tokens: it is the page's own)."""

    def __init__(self, port: int):
        super().__init__(port, "")
        login = self.get("/login/")
        csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', login.body)
        cookies = _cookies(login)
        body = urllib.parse.urlencode(
            {"username": "bench", "password": PASSWORD, "csrfmiddlewaretoken": csrf[1].decode()}
        )
        self.conn.request(
            "POST",
            "/login/",
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
                "Referer": f"http://127.0.0.1:{port}/login/",
            },
        )
        answer = self.conn.getresponse()
        answer.read()
        cookies.update(_cookies(answer))
        if answer.status != 302 or "sessionid" not in cookies:
            raise RuntimeError(f"could not sign in: {answer.status}")
        self.auth = {"Cookie": f"sessionid={cookies['sessionid']}"}


def _cookies(response) -> dict[str, str]:
    headers = response.headers if isinstance(response, Response) else response.msg
    found = {}
    for header in headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        found[name.strip()] = rest.split(";", 1)[0]
    return found


def cases(rng: random.Random) -> dict[str, callable]:
    """Each case makes a query string, drawn anew per request."""

    def surname(letters: int | None = None) -> str:
        name = rng.choices(SURNAMES, weights=SURNAME_WEIGHTS)[0]
        return name[: letters or rng.choice((2, 3, 4))].lower()

    def day(span: int = 0) -> tuple[str, str]:
        first = FIRST_STUDY_DATE + datetime.timedelta(days=rng.randrange(STUDY_DAYS - span))
        return first.isoformat(), (first + datetime.timedelta(days=span)).isoformat()

    def q(**params) -> str:
        return urllib.parse.urlencode({**params, "limit": PAGE})

    return {
        "default page (newest first)": lambda: q(),
        "page at offset 50,000": lambda: q(offset=rng.randrange(49_000, 51_000)),
        "last page": lambda: q(offset=99_950),
        "name prefix (2-4 letters)": lambda: q(name=surname()),
        "name: two word prefixes": lambda: q(name=f"{rng.choice(GIVEN_NAMES)[:3]} {surname(3)}"),
        "patient ID prefix": lambda: q(patient_id=f"syn{rng.randrange(400):03d}"),
        "accession prefix": lambda: q(accession=f"SYNACC{rng.randrange(10_000):04d}"),
        "description word": lambda: q(description=rng.choice(("chest", "brain", "knee", "abd"))),
        "modality": lambda: q(modality=rng.choice(list(MODALITIES))),
        "date: one day (today)": lambda: q(date_from=(d := day()[0]), date_to=d),
        "date: last 7 days": lambda: q(**dict(zip(("date_from", "date_to"), day(6), strict=True))),
        "date: 3 months": lambda: q(**dict(zip(("date_from", "date_to"), day(90), strict=True))),
        "sort patient name": lambda: q(sort=rng.choice(("patient_name", "-patient_name"))),
        "sort patient name, offset 20,000": lambda: q(sort="patient_name", offset=20_000),
        "sort images (largest first)": lambda: q(sort="-images"),
        "sort accession, offset 50,000": lambda: q(sort="accession", offset=50_000),
        "name + modality + 1 year": lambda: q(
            name=surname(3),
            modality=rng.choice(list(MODALITIES)),
            **dict(zip(("date_from", "date_to"), day(365), strict=True)),
        ),
    }


def measure(client: Client, n: int) -> list[Result]:
    results = []
    for case, make in cases(random.Random(7)).items():
        result = Result(case)
        totals, rows = [], []
        for i in range(n + WARMUP):
            response = client.get(f"/api/studies?{make()}")
            problem = _check(response)
            if problem:
                result.fail(response, problem)
                continue
            if i >= WARMUP:
                answer = json.loads(response.body)
                result.seconds.append(response.seconds)
                totals.append(answer["total"] + (0 if answer["total_exact"] else 0.5))
                rows.append(len(answer["studies"]))
        if totals:
            counted = [int(t) for t in totals]
            more = "+" if any(t != int(t) for t in totals) else ""
            result.detail = (
                f"{sum(counted) / len(counted):,.0f}{more} match avg, "
                f"{sum(rows) / len(rows):.0f} rows"
            )
        results.append(judge(result, "p95", TARGET_P95_MS))
    return results


def _check(response: Response) -> str | None:
    if response.status != 200:
        return f"status {response.status}"
    try:
        answer = json.loads(response.body)
    except ValueError:
        return "not JSON"
    if not isinstance(answer.get("studies"), list) or not isinstance(answer.get("total"), int):
        return "no studies/total"
    return None


def prepare(args, tmp: Path) -> dict:
    database_url = dicomweb.fresh_postgres()
    env = environment(tmp / "data", database_url, REDIS_BENCH_URL, os.cpu_count() or 2)
    env["DJANGO_SECRET_KEY"] = "bench-worklist-" + uuid.uuid4().hex
    run([PYTHON, "manage.py", "migrate", "-v0"], env)
    run(
        [PYTHON, "manage.py", "createsuperuser", "--noinput", "--username", "bench"]
        + ["--email", "b@x.org"],
        {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        stdout=subprocess.DEVNULL,
    )
    print(f"writing {args.studies:,} synthetic studies …", file=sys.stderr, flush=True)
    seconds = generate(database_url, args.studies)
    # A running archive's tables are vacuumed by autovacuum; a fresh COPY is not yet, and
    # index-only scans would visit every row's page until it is.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    return {
        "env": env,
        "database_url": database_url,
        "generate_s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100_000, help="synthetic studies")
    parser.add_argument("--requests", type=int, default=100, help="measured requests per case")
    parser.add_argument("--keep", action="store_true", help="keep the database and data dir")
    args = parser.parse_args()
    if not postgres_available():
        sys.exit("needs PostgreSQL (postgres@127.0.0.1:5432) and Redis (127.0.0.1:6379)")
    tmp = Path(tempfile.mkdtemp(prefix="lightbox-worklist-"))
    try:
        setup = prepare(args, tmp)
        web, port = start_web(setup["env"], tmp)
        try:
            load = os.getloadavg()[0]
            results = measure(SignedIn(port), args.requests)
        finally:
            stop(web)
    finally:
        if not args.keep:
            dicomweb.drop_postgres()
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nLightbox worklist benchmark — {time.strftime('%Y-%m-%d %H:%M')}, {machine()}")
    print(
        f"index: {args.studies:,} SYNTHETIC studies ({setup['generate_s']:.1f} s to write); "
        f"PostgreSQL; 1 uvicorn process; a signed-in session; pages of {PAGE} rows with the "
        f"total; {args.requests} measured requests per case after {WARMUP} warm-up; load "
        f"average {load:.2f} when measuring began"
    )
    header = f"{'case':34} {'n':>4} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}  {'result':28} target"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.case:34} {latency_columns(r)}  {r.detail:28} {r.target:14} {r.verdict}")
    for r in results:
        print_errors(r)
    slow = [
        r.case for r in results if r.seconds and percentile(r.seconds, 95) * 1000 > TARGET_P95_MS
    ]
    print(f"\n{len(results) - len(slow)}/{len(results)} cases within p95 ≤ {TARGET_P95_MS} ms")


if __name__ == "__main__":
    main()
