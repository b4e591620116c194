#!/usr/bin/env python
"""DICOMweb benchmark: QIDO-RS, WADO-RS /metadata, /frames and /rendered at 100,000 studies.

A fresh PostgreSQL database receives the real 275-slice CT (imported and derived by a real
Celery worker), then 100,000 synthetic studies written straight into the index tables with
COPY: one patient per ~2.5 studies, one series per study, no instances and no files. They
are labelled: StudyDescription "SYNTHETIC BENCH ...", InstitutionName "SYNTHETIC", PatientID
"SYN...". uvicorn then serves the archive and one keep-alive HTTP client per thread measures:

- QIDO-RS /studies by patient-name prefix, by a 3-month StudyDate range and by modality
  (limit=25; values vary between requests so no single row stays hot);
- WADO-RS series /metadata of the real CT, plain and with Accept-Encoding: gzip;
- WADO-RS /frames over all 275 instances, sequentially and with 4 threads;
- WADO-RS /rendered of a 512x512 frame as JPEG (and once as PNG).

    .venv/bin/python bench/dicomweb.py [--studies N] [--requests N] [--keep]

Needs PostgreSQL (postgres@127.0.0.1:5432, trust) and Redis (127.0.0.1:6379, db 13 is
flushed). Figures go to docs/performance.md by hand, with the machine and the date.
"""

import argparse
import datetime
import gzip
import http.client
import itertools
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "testdata" / "ct-lidc-0314"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "lightbox_bench_dicomweb"
REDIS_BENCH_URL = "redis://127.0.0.1:6379/13"
PYTHON = sys.executable
sys.path[:0] = [str(REPO / "bench"), str(REPO)]

from dimse import free_port, spawn  # noqa: E402
from ingest import environment, postgres_available, run, start_worker, stop  # noqa: E402

from backend.archive.attributes import search_key  # noqa: E402  (no Django needed)

DICOM_JSON = "application/dicom+json"
FRAMES_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
WARMUP = 10
THREADS = 4
CT_TIMEOUT_S = 900
REQUESTS = itertools.count()  # every GET sent; next() is atomic, so threads may share it

# ---------------------------------------------------------------------------------------
# Synthetic index rows
# ---------------------------------------------------------------------------------------

SURNAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter "
    "Roberts Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch Richter "
    "Klein Wolf Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Müller "
    "Schröder Bernard Dubois Durand Lefèvre Moreau Laurent Simon Michel Garnier Faure "
    "Rousseau Blanc Guérin Muller Henry Roussel Nicolas Perrin Morin Mathieu Clément "
    "Gauthier Dumont Lopes Fontaine Chevalier Robin Rossi Russo Ferrari Esposito Bianchi "
    "Romano Colombo Ricci Marino Greco Bruno Gallo Conti Costa Giordano Mancini Rizzo "
    "Lombardi Moretti García Fernández González Rodríguez López Martínez Sánchez Pérez "
    "Gómez Martín Jiménez Ruiz Hernández Díaz Moreno Muñoz Álvarez Romero Alonso Gutiérrez "
    "Navarro Núñez Jansen Visser Smit Bakker Janssen Nowak Kowalski Wiśniewski Wójcik "
    "Kowalczyk Novák Svoboda Dvořák Černý Procházka Nielsen Jensen Hansen Pedersen Andersen "
    "Sørensen Johansson Karlsson Nilsson Eriksson Larsson Öberg Åkesson Virtanen Korhonen "
    "Mäkinen Nieminen Yılmaz Kaya Demir Şahin Çelik Öztürk Papadopoulos Murphy Kelly "
    "O'Sullivan Walsh Byrne Ryan Dupont Lemaître Benoît Kim Park Choi Chen Wang Li Zhang Liu "
    "Yamada Tanaka Suzuki Sato Watanabe Ito Nakamura Kobayashi Silva Santos Oliveira Souza"
).split()
GIVEN_NAMES = (
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa "
    "Anthony Betty Mark Margaret Paul Sandra Steven Ashley Andrew Emily Peter Anna Hans "
    "Jürgen Günther Uwe Jörg Renée Hélène Zoé Élodie François Jérôme Léa Céline Noël José "
    "María Jesús Ángel Inés Íñigo Raúl Sofía Lucía Marco Giulia Luca Chiara Søren Åsa Björn "
    "Märta Łukasz Małgorzata Jiří Zdeněk Ayşe Oğuz Seán Siobhán Tarou Hanako Wei Ming"
).split()
MIDDLE_INITIALS = "ABCDEFGHJKLMNPRSTW"
# modality: (weight, instances per series, body parts)
MODALITIES = {
    "CT": (25, (60, 600), ("CHEST", "ABDOMEN", "HEAD", "PELVIS")),
    "MR": (20, (100, 400), ("BRAIN", "KNEE", "SPINE", "ABDOMEN")),
    "CR": (20, (1, 3), ("CHEST", "HAND", "KNEE")),
    "US": (10, (5, 60), ("ABDOMEN", "THYROID", "HEART")),
    "DX": (15, (1, 4), ("CHEST", "SPINE", "FOOT")),
    "MG": (5, (4, 8), ("BREAST",)),
    "PT": (5, (200, 500), ("WHOLEBODY",)),
}
FIRST_STUDY_DATE = datetime.date(2015, 1, 1)
STUDY_DAYS = 3652  # ten years
BYTES_PER_INSTANCE = 520_000
PATIENT_COLUMNS = (
    "id patient_id issuer_of_patient_id patient_name patient_name_search patient_birth_date "
    "patient_sex created_at"
).split()
STUDY_COLUMNS = (
    "id study_instance_uid patient_id study_date study_time accession_number study_id "
    "study_description study_description_search referring_physician_name "
    "referring_physician_search institution_name modalities_in_study number_of_series "
    "number_of_instances size_bytes created_at updated_at"
).split()
SERIES_COLUMNS = (
    "id series_instance_uid study_id modality series_number series_description series_date "
    "series_time body_part_examined frame_of_reference_uid number_of_instances "
    "derive_requested derived_version derive_scheduled derived_at thumbnail_key "
    "metadata_key created_at updated_at"
).split()


def zipf_weights(count: int) -> list[float]:
    """Name frequencies fall off like real surnames: a few common, a long tail."""
    return [1 / (rank + 1) ** 0.8 for rank in range(count)]


SURNAME_WEIGHTS = zipf_weights(len(SURNAMES))


def person_name(rng: random.Random) -> str:
    """A PN value: Family^Given[^Middle], a few with an ideographic group (PS3.5 §6.2.1)."""
    surname = rng.choices(SURNAMES, weights=SURNAME_WEIGHTS)[0]
    name = f"{surname}^{rng.choice(GIVEN_NAMES)}"
    if rng.random() < 0.2:
        name += f"^{rng.choice(MIDDLE_INITIALS)}"
    if rng.random() < 0.01:
        name += "=山田^太郎"
    return name


def patient_rows(rng: random.Random, count: int, first_id: int, now: datetime.datetime):
    for i in range(count):
        name = person_name(rng)
        birth = datetime.date(1930, 1, 1) + datetime.timedelta(days=rng.randrange(33_000))
        sex = rng.choice("MMMFFFO")
        yield (first_id + i, f"SYN{i:07d}", "", name, search_key(name), birth, sex, now)


def study_and_series_rows(rng, count, first_id, patient_ids, now):
    """One study and its single series at a time; every patient gets at least one study."""
    modalities = list(MODALITIES)
    weights = [MODALITIES[m][0] for m in modalities]
    for i in range(count):
        pk = first_id + i
        patient = patient_ids[i] if i < len(patient_ids) else rng.choice(patient_ids)
        modality = rng.choices(modalities, weights=weights)[0]
        _, (low, high), parts = MODALITIES[modality]
        instances, part = rng.randint(low, high), rng.choice(parts)
        day = FIRST_STUDY_DATE + datetime.timedelta(days=rng.randrange(STUDY_DAYS))
        clock = datetime.time(rng.randrange(7, 20), rng.randrange(60), rng.randrange(60))
        description = f"SYNTHETIC BENCH {modality} {part}"
        referring = person_name(rng)
        study = (
            pk, f"2.25.{rng.getrandbits(128)}", patient, day, clock,
            f"SYNACC{i:08d}", str(i % 10_000), description, search_key(description),
            referring, search_key(referring), "SYNTHETIC", modality, 1, instances,
            instances * BYTES_PER_INSTANCE, now, now,
        )  # fmt: skip
        series = (
            pk, f"2.25.{rng.getrandbits(128)}", pk, modality, 1,
            description, day, clock, part, "", instances, 0, 0, False, None, "", "", now, now,
        )  # fmt: skip
        yield study, series


def copy_rows(conn, table: str, columns: list[str], rows) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def next_id(conn, table: str) -> int:
    query = sql.SQL("SELECT coalesce(max(id), 0) + 1 FROM {}").format(sql.Identifier(table))
    return conn.execute(query).fetchone()[0]


def reset_sequence(conn, table: str) -> None:
    """COPY wrote explicit ids: move the identity sequence past them."""
    query = sql.SQL("SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT max(id) FROM {}))")
    conn.execute(query.format(sql.Identifier(table)), [table])


def generate(database_url: str, studies: int, seed: int = 314) -> float:
    """Write `studies` synthetic studies (and their patients and series); returns seconds."""
    rng = random.Random(seed)
    now = datetime.datetime.now(datetime.UTC)
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        first_patient = next_id(conn, "archive_patient")
        patients = max(studies * 2 // 5, 1)
        copy_rows(
            conn,
            "archive_patient",
            PATIENT_COLUMNS,
            patient_rows(rng, patients, first_patient, now),
        )
        patient_ids = list(range(first_patient, first_patient + patients))
        rows = list(
            study_and_series_rows(rng, studies, next_id(conn, "archive_study"), patient_ids, now)
        )
        copy_rows(conn, "archive_study", STUDY_COLUMNS, (study for study, _ in rows))
        copy_rows(conn, "archive_series", SERIES_COLUMNS, (series for _, series in rows))
        for table in ("archive_patient", "archive_study", "archive_series"):
            reset_sequence(conn, table)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------
# The archive under test
# ---------------------------------------------------------------------------------------


def fresh_postgres() -> str:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_BENCH_DB}")
    redis.Redis.from_url(REDIS_BENCH_URL).flushdb()
    return f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"


def postgres_facts(database_url: str) -> dict:
    """Server version and sessions opened so far (pg_stat_database, PostgreSQL 14+): a web
    process that keeps its connections opens a handful, not one per request."""
    time.sleep(1)  # a backend's statistics reach pg_stat_database shortly after it exits
    with psycopg.connect(database_url) as conn:
        sessions = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()[0]
        return {"version": conn.info.server_version, "sessions": sessions}


def drop_postgres() -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")


CT_PROBE = """
import json, django
django.setup()
from django.db.models import Count, F
from backend.archive.models import IngestRecord, Instance, Series
series = (
    Series.objects.exclude(study__institution_name="SYNTHETIC")
    .annotate(n=Count("instances")).order_by("-n").select_related("study").first()
)
state = {
    "instances": Instance.objects.count(),
    "unfinished": IngestRecord.objects.filter(state="pending").count(),
    "lagging_series": Series.objects.filter(derived_version__lt=F("derive_requested")).count(),
}
if series is not None:
    instances = series.instances.order_by("slice_index", "instance_number", "pk")
    state.update(
        study=series.study.study_instance_uid,
        series=series.series_instance_uid,
        derived=series.derived_version >= series.derive_requested,
        viewable=instances.filter(viewable=True).count(),
        sop_instance_uids=list(instances.values_list("sop_instance_uid", flat=True)),
        sizes=sorted(set(instances.values_list("rows", "columns"))),
    )
print(json.dumps(state))
"""


def probe_ct(env: dict) -> dict:
    out = run(
        [PYTHON, "-c", CT_PROBE],
        {**env, "DJANGO_SETTINGS_MODULE": "backend.settings"},
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def import_ct(env: dict, source: Path, tmp: Path) -> tuple[dict, float]:
    """Import the real CT with a real worker; wait until indexed and derived."""
    expected = sum(1 for p in source.rglob("*") if p.is_file())
    worker = start_worker(env, tmp / "worker.log")
    try:
        started = time.monotonic()
        run([PYTHON, "manage.py", "import", "-v0", str(source)], env, stdout=subprocess.DEVNULL)
        while True:
            time.sleep(2)  # each probe is a Python process: do not take CPU from the worker
            state = probe_ct(env)
            if state["instances"] >= expected and not state["unfinished"]:
                if not state["lagging_series"] and state.get("derived"):
                    return state, time.monotonic() - started
            if worker.poll() is not None or time.monotonic() - started > CT_TIMEOUT_S:
                log = (tmp / "worker.log").read_text()[-3000:]
                raise RuntimeError(f"CT not indexed and derived: {state}\n{log}")
    finally:
        stop(worker)


def make_token(env: dict) -> str:
    """A superuser `bench` and an API token for it (the command prints only the token)."""
    env = {**env, "DJANGO_SUPERUSER_PASSWORD": uuid.uuid4().hex}
    run(
        [PYTHON, "manage.py", "createsuperuser", "--noinput", "--username", "bench"]
        + ["--email", "b@x.org"],
        env,
        stdout=subprocess.DEVNULL,
    )
    out = run(
        [PYTHON, "manage.py", "apitoken", "create", "bench", "--name", "bench"],
        env,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def start_web(env: dict, tmp: Path) -> tuple[subprocess.Popen, int]:
    """One uvicorn process, as `make run` starts it; returns once /healthz answers."""
    port = free_port()
    log = tmp / "web.log"
    web = spawn(
        [PYTHON, "-m", "uvicorn", "backend.asgi:application", "--host", "127.0.0.1"]
        + ["--port", str(port), "--no-access-log", "--lifespan", "off"],
        env,
        log,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if web.poll() is not None:
            break
        try:
            if Client(port, "").get("/healthz").status == 200:
                return web, port
        except OSError:
            pass
        time.sleep(0.2)
    stop(web)
    raise RuntimeError(f"web server did not answer /healthz:\n{log.read_text()[-3000:]}")


# ---------------------------------------------------------------------------------------
# HTTP measurements
# ---------------------------------------------------------------------------------------


@dataclass
class Response:
    path: str
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class Client:
    """One keep-alive HTTP/1.1 connection carrying the bench user's token."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str, **headers: str) -> Response:
        try:
            return self._get(path, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The server closed an idle keep-alive connection: reconnect once.
            self.conn.close()
            return self._get(path, headers)

    def _get(self, path: str, headers: dict) -> Response:
        next(REQUESTS)
        started = time.perf_counter()
        self.conn.request("GET", path, headers={**self.auth, **headers})
        answer = self.conn.getresponse()
        body = answer.read()
        return Response(path, answer.status, answer.headers, body, time.perf_counter() - started)


@dataclass
class Result:
    """One row of the table: latencies (or a throughput), what came back, the target."""

    case: str
    seconds: list[float] = field(default_factory=list)
    detail: str = ""
    target: str = ""
    verdict: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)  # kind -> descriptions

    def fail(self, response: Response, why: str) -> None:
        body = response.body[:300].decode("utf-8", "replace").replace("\n", " ")
        self.errors.setdefault(f"{response.status} {why}", []).append(
            f"GET {response.path} -> {response.status} {response.content_type!r} "
            f"({response.seconds * 1000:.0f} ms, {len(response.body)} B): {why}; body: {body}"
        )


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def timed(client: Client, result: Result, paths: list[str], headers: dict, check) -> list:
    """GET each path (after WARMUP unmeasured ones); `check` returns None or what is wrong."""
    for path in paths[:WARMUP]:
        client.get(path, **headers)
    responses = []
    for path in paths[WARMUP:]:
        response = client.get(path, **headers)
        problem = check(response)
        if problem:
            result.fail(response, problem)
        else:
            result.seconds.append(response.seconds)
            responses.append(response)
    return responses


def judge(result: Result, stat: str, limit_ms: float) -> Result:
    result.target = f"{stat} ≤ {limit_ms:g} ms"
    if result.errors or not result.seconds:
        result.verdict = "ERROR"
    else:
        value = percentile(result.seconds, 50 if stat == "p50" else 95) * 1000
        result.verdict = "met" if value <= limit_ms else "NOT MET"
    return result


def expect(mime: str, test=None, why: str = ""):
    """A response check: 200, Content-Type `mime` and, if given, `test(body)`. The check
    returns None when all is well, else what is wrong."""

    def check(response: Response) -> str | None:
        if response.status != 200:
            return "expected 200"
        if not response.content_type.startswith(mime):
            return f"expected {mime}"
        return why if test and not test(response.body) else None

    return check


def is_json_array(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), list)
    except ValueError:
        return False


def check_qido(response: Response) -> str | None:
    if response.status == 204:
        return None  # no match (PS3.18 §8.3.4.4 allows 204 No Content)
    return expect(DICOM_JSON, is_json_array, "body is not a JSON array")(response)


def count_matches(response: Response) -> int:
    return len(json.loads(response.body)) if response.status == 200 else 0


def qido_paths(rng: random.Random, n: int) -> dict[str, list[str]]:
    """Three kinds of study query, each value drawn anew for every request."""

    def name() -> str:
        surname = rng.choices(SURNAMES, weights=SURNAME_WEIGHTS)[0]
        return urllib.parse.quote(f"{surname[: rng.choice((2, 3, 4))]}*", safe="*")

    def dates() -> str:
        first = FIRST_STUDY_DATE + datetime.timedelta(days=rng.randrange(STUDY_DAYS - 90))
        last = first + datetime.timedelta(days=90)
        return f"{first:%Y%m%d}-{last:%Y%m%d}"

    queries = {
        "QIDO PatientName=<prefix>*": lambda: f"PatientName={name()}",
        "QIDO StudyDate=<3 months>": lambda: f"StudyDate={dates()}",
        "QIDO ModalitiesInStudy=<one>": lambda: f"ModalitiesInStudy={rng.choice(list(MODALITIES))}",
    }
    return {
        case: [f"/dicomweb/studies?{make()}&limit=25" for _ in range(n + WARMUP)]
        for case, make in queries.items()
    }


def measure_qido(client: Client, n: int) -> list[Result]:
    results = []
    for case, paths in qido_paths(random.Random(1), n).items():
        result = Result(case)
        responses = timed(client, result, paths, {"Accept": DICOM_JSON}, check_qido)
        if responses:
            counts = [count_matches(r) for r in responses]
            result.detail = f"{sum(counts) / len(counts):.1f} matches avg, {min(counts)} min"
        results.append(judge(result, "p95", 50))
    return results


def metadata_instances(response: Response) -> int:
    body = response.body
    if response.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return len(json.loads(body))


def measure_metadata(client: Client, ct: dict, n: int) -> list[Result]:
    path = f"/dicomweb/studies/{ct['study']}/series/{ct['series']}/metadata"
    expected = len(ct["sop_instance_uids"])
    results = []
    for label, extra in (("identity", {}), ("gzip", {"Accept-Encoding": "gzip"})):
        result = Result(f"series /metadata, {label}")
        headers = {"Accept": DICOM_JSON, **extra}
        responses = timed(client, result, [path] * (n + WARMUP), headers, expect(DICOM_JSON))
        if responses:
            last = responses[-1]
            if (found := metadata_instances(last)) != expected:
                result.fail(last, f"{found} instances, expected {expected}")
            encoding = last.headers.get("Content-Encoding", "identity")
            result.detail = f"{len(last.body) / 1e6:.2f} MB on the wire ({encoding})"
        results.append(judge(result, "p95", 100))
    return results


check_frame = expect(
    "multipart/related", lambda body: len(body) >= 512 * 512 * 2, "shorter than a 512x512 frame"
)


def fetch_frames(port: int, token: str, paths: list[str], result: Result) -> int:
    """GET every path on one connection; returns the bytes received."""
    client, received = Client(port, token), 0
    for path in paths:
        response = client.get(path, Accept=FRAMES_ACCEPT)
        if problem := check_frame(response):
            result.fail(response, problem)
        else:
            result.seconds.append(response.seconds)  # list.append is atomic: threads share it
        received += len(response.body)
    return received


def frames_pass(port: int, token: str, paths: list[str], threads: int) -> Result:
    """All frames once over `threads` connections: frames/s and MB/s."""
    result = Result(f"/frames, {threads} connection{'s' if threads > 1 else ''}")
    received = [0] * threads

    def work(k: int) -> None:
        received[k] = fetch_frames(port, token, paths[k::threads], result)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - started
    result.detail = (
        f"{len(paths) / elapsed:.0f} frames/s, {sum(received) / 1e6 / elapsed:.0f} MB/s "
        f"({len(paths)} frames, {sum(received) / 1e6:.0f} MB)"
    )
    result.verdict = "ERROR" if result.errors else ""
    return result


def instance_path(ct: dict, sop_instance_uid: str) -> str:
    return f"/dicomweb/studies/{ct['study']}/series/{ct['series']}/instances/{sop_instance_uid}"


def measure_frames(port: int, token: str, ct: dict) -> list[Result]:
    paths = [instance_path(ct, uid) + "/frames/1" for uid in ct["sop_instance_uids"]]
    frames_pass(port, token, paths, 1)  # warm-up: page cache, connections, code paths
    return [frames_pass(port, token, paths, threads) for threads in (1, THREADS)]


def measure_rendered(client: Client, ct: dict, n: int) -> list[Result]:
    uids = ct["sop_instance_uids"]
    middle = len(uids) // 2
    paths = [
        instance_path(ct, uids[(middle + k) % len(uids)]) + "/frames/1/rendered"
        for k in range(n + WARMUP)
    ]
    jpeg = Result("/rendered 512x512, JPEG")
    is_jpeg = expect("image/jpeg", lambda body: body.startswith(b"\xff\xd8"), "not a JPEG")
    responses = timed(client, jpeg, paths, {"Accept": "image/jpeg"}, is_jpeg)
    if responses:
        jpeg.detail = f"{sum(len(r.body) for r in responses) / len(responses) / 1e3:.0f} kB avg"
    png = Result("/rendered 512x512, PNG, once")
    is_png = expect("image/png", lambda body: body.startswith(b"\x89PNG"), "not a PNG")
    responses = timed(client, png, paths[: WARMUP + 1], {"Accept": "image/png"}, is_png)
    if responses:
        png.detail = f"{len(responses[0].body) / 1e3:.0f} kB"
    png.verdict = "ERROR" if png.errors else ""
    return [judge(jpeg, "p50", 20), png]


# ---------------------------------------------------------------------------------------
# Orchestration and report
# ---------------------------------------------------------------------------------------


def measure_all(port: int, token: str, ct: dict, n: int) -> list[Result]:
    client = Client(port, token)
    return [
        *measure_qido(client, n),
        *measure_metadata(client, ct, n),
        *measure_frames(port, token, ct),
        *measure_rendered(client, ct, n),
    ]


def check_ct(state: dict) -> None:
    sizes = state["sizes"]
    if [512, 512] not in sizes:
        sys.exit(f"expected 512x512 frames in the CT, found {sizes}")
    if state["viewable"] != len(state["sop_instance_uids"]):
        sys.exit(f"only {state['viewable']} of the CT's instances are viewable")


def prepare(args, tmp: Path) -> dict:
    """A fresh archive: the real CT imported and derived, then the synthetic studies."""
    database_url = fresh_postgres()
    env = environment(tmp / "data", database_url, REDIS_BENCH_URL, os.cpu_count() or 2)
    env["DJANGO_SECRET_KEY"] = "bench-dicomweb-" + uuid.uuid4().hex
    run([PYTHON, "manage.py", "migrate", "-v0"], env)
    log(f"importing {args.source.name} with a Celery worker …")
    ct, ct_seconds = import_ct(env, args.source, tmp)
    check_ct(ct)
    log(f"writing {args.studies:,} synthetic studies …")
    generated = generate(database_url, args.studies)
    return {
        "env": env,
        "database_url": database_url,
        "token": make_token(env),
        "ct": ct,
        "ct_s": ct_seconds,
        "generate_s": generated,
    }


def serve_and_measure(setup: dict, requests: int, tmp: Path) -> list[Result]:
    """Start the web server, run every case, note the load and the sessions it opened."""
    web, port = start_web(setup["env"], tmp)
    try:
        log(f"measuring against http://127.0.0.1:{port}/dicomweb …")
        before, sent = postgres_facts(setup["database_url"]), next(REQUESTS)
        setup["load"] = os.getloadavg()[0]
        results = measure_all(port, setup["token"], setup["ct"], requests)
        setup["requests"] = next(REQUESTS) - sent - 1
    finally:
        stop(web)
    after = postgres_facts(setup["database_url"])
    setup["pg_sessions"] = after["sessions"] - before["sessions"] - 1  # less our own probe
    setup["pg_version"] = after["version"]
    return results


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--studies", type=int, default=100_000, help="synthetic studies")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per case")
    parser.add_argument("--keep", action="store_true", help="keep the database and data dir")
    args = parser.parse_args()
    if not args.source.is_dir():
        sys.exit(f"benchmark data not found: {args.source} (see ../shared/testdata/README.md)")
    if not postgres_available():
        sys.exit("needs PostgreSQL (postgres@127.0.0.1:5432) and Redis (127.0.0.1:6379)")
    tmp = Path(tempfile.mkdtemp(prefix="lightbox-dicomweb-"))
    try:
        setup = prepare(args, tmp)
        results = serve_and_measure(setup, args.requests, tmp)
    finally:
        if not args.keep:
            drop_postgres()
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(results, setup, args)
    if args.keep:
        print(f"\nkept (logs in {tmp}); to serve it again:")
        keep = ("DATABASE_URL", "REDIS_URL", "LIGHTBOX_DATA_DIR", "DJANGO_SECRET_KEY")
        print(" ".join(f"{k}={setup['env'][k]}" for k in keep))


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.node()}, {model}, {cores} cores (nproc), Python {platform.python_version()}"


def print_table(results: list[Result], setup: dict, args) -> None:
    ct = setup["ct"]
    print(f"\nLightbox DICOMweb benchmark — {time.strftime('%Y-%m-%d %H:%M')}, {machine()}")
    print(
        f"index: {args.studies:,} SYNTHETIC studies (COPY into the index tables, "
        f"{setup['generate_s']:.1f} s incl. ANALYZE) + the real CT {args.source.name} "
        f"({len(ct['sop_instance_uids'])} instances, imported and derived in "
        f"{setup['ct_s']:.1f} s); PostgreSQL + Redis; 1 uvicorn process; client on the same "
        f"machine; {args.requests} measured requests per latency case after {WARMUP} warm-up"
    )
    header = (
        f"{'case':34} {'n':>4} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}  {'result':44} "
        f"{'target':14} verdict"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.case:34} {latency_columns(r)}  {r.detail:44} {r.target:14} {r.verdict}")
    print(
        f"\nPostgreSQL {setup['pg_version'] // 10000}: the web process opened "
        f"{setup['pg_sessions']} database sessions for {setup['requests']} requests. "
        f"Load average when measuring began: {setup['load']:.2f} (other work on the machine "
        "shows in p95 and max)."
    )
    print(
        "QIDO: /dicomweb/studies?<key>=<value>&limit=25, Accept: application/dicom+json; "
        "values vary per request.\n/metadata target applied to p95. /frames: one pass over all "
        "instances, frame 1 each, after a warm-up pass; latencies per frame."
    )
    for r in results:
        print_errors(r)


def print_errors(r: Result) -> None:
    """The first error of each kind (status and reason), with how many there were."""
    for same in r.errors.values():
        print(f"ERROR {r.case} ({len(same)} like this): {same[0]}")


def latency_columns(r: Result) -> str:
    if not r.seconds:
        return f"{0:>4} {'-':>7} {'-':>7} {'-':>7}"
    p50, p95, top = (percentile(r.seconds, p) * 1000 for p in (50, 95, 100))
    return f"{len(r.seconds):>4} {p50:>7.1f} {p95:>7.1f} {top:>7.1f}"


if __name__ == "__main__":
    main()
