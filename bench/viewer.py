#!/usr/bin/env python
"""Viewer benchmark: headless Chromium opens the real 275-slice CT; the page's timing marks.

A fresh embedded Lightbox (temporary LIGHTBOX_DATA_DIR, SQLite, filesystem broker; no
DATABASE_URL or REDIS_URL), run from a copy of the working tree, gets the CT imported and
derived by a real Celery worker, which keeps running; uvicorn serves it as `manage.py serve`
does (--ws-per-message-deflate false). Playwright signs a user in. Then each run is a fresh
load of /viewer/<StudyInstanceUID> in a new browser context (own cookies, empty HTTP cache),
with the frames raw and with `?encoding=deflate`, under each condition:

- loopback: no shaping. Targets: first image ≤ 300 ms, series complete ≤ 2 s.
- cdp: DevTools network emulation (Network.emulateNetworkConditions: 20 Mbit/s down and up,
  latency 40 ms). It does apply to WebSocket frames (since Chromium 99), but the page gets
  well under the rate asked, and unevenly: 6-7 Mbit/s in most runs here, once 15 (a plain
  5 MB HTTP download got 9). Chromium throttles per read, in 1,500-byte packets released by
  a timer. The WS Mbit/s column shows what the page really got. Target: first image ≤ 1 s.
- tbf (root only): the server runs in a network namespace behind a veth pair whose two
  ends are shaped by `tc qdisc tbf rate 20mbit`. This kernel has no sch_netem, so the 40 ms
  round trip is DevTools latency, added per request (page, scripts, WebSocket handshake),
  not to frames on the open WebSocket. Target: first image ≤ 1 s.

Per run, from the page: lightbox:first-image and lightbox:series-complete (the marks'
startTime, ms from navigation start), bytes on the wire and peak JS heap; per row, the
median and the best run, the median judged against the target.

How it measures. Pages are driven over a bare DevTools connection, not through Playwright:
Playwright turns on the DevTools Network domain for every page, and Chromium then copies
each WebSocket frame, base64-encoded, to the client; here that made 50 MB of frames arrive
5-9 times slower. Emulation needs that domain on, so only the limited rows pay that cost.
Bytes on the wire = HTTP (transferSize of the navigation and resource timing entries) +
WebSocket (each message received, counted by a wrapper installed in the page before its
scripts, plus its frame header); no TCP/IP headers, no WebSocket handshake. Peak JS heap =
the largest JSHeapUsedSize (DevTools Performance.getMetrics, sampled every ~100 ms); the
frames are ArrayBuffers outside that heap, so their peak (Runtime.getHeapUsage
backingStorageSize) is shown beside it.

    .venv/bin/python bench/viewer.py [--runs N] [--conditions loopback,cdp,tbf] [--keep]

Figures go to docs/performance.md by hand, with the machine and the date.
"""

import argparse
import contextlib
import http.client
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from websockets.sync.client import connect

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "testdata" / "ct-lidc-0314"
PYTHON = sys.executable
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
]
sys.path[:0] = [str(REPO / "bench"), str(REPO)]

from dicomweb import CT_PROBE, check_ct  # noqa: E402  (the CT's study, derived or not)
from dimse import free_port, spawn  # noqa: E402
from ingest import environment, stop  # noqa: E402

LINK_MBIT, RTT_MS = 20, 40
CDP_LIMITED = {"latency": RTT_MS, "downloadThroughput": LINK_MBIT * 1e6 / 8}
CDP_LIMITED["uploadThroughput"] = CDP_LIMITED["downloadThroughput"]
CDP_LATENCY_ONLY = {"latency": RTT_MS, "downloadThroughput": -1, "uploadThroughput": -1}
NETNS_HOST, NETNS_SERVER = "10.251.31.1", "10.251.31.2"  # a /30 on the veth pair
ENCODINGS = ("raw", "deflate")
SAMPLE_S = 0.1
SCRIPT_START_S = 30
CT_TIMEOUT_S = 900


@dataclass
class Condition:
    key: str
    label: str
    origin: str  # where the browser finds the server
    emulate: dict | None  # DevTools Network.emulateNetworkConditions, if any
    first_target_ms: float
    complete_target_ms: float | None = None
    timeout_s: float = 600


@dataclass
class Sample:
    """One page load."""

    condition: str
    encoding: str
    first_ms: float | None = None
    complete_ms: float | None = None
    http_bytes: int = 0
    ws_bytes: int = 0
    ws_mbit: float | None = None  # WebSocket bytes / (last message - first message)
    socket_ms: float | None = None  # when the viewer's script opened its WebSocket
    manifest_ms: float | None = None  # the first WebSocket message (the study manifest)
    frames: int = 0  # binary WebSocket messages, one frame each
    unique: int = 0  # distinct (series, index) among them
    order: tuple = ()  # the indices of the first frames received
    heap_peak: int = 0
    buffers_peak: int | None = None
    error: str = ""
    timeline: list = field(default_factory=list)  # [[what, ms from navigation start], …]

    @property
    def wire_mb(self) -> float:
        return (self.http_bytes + self.ws_bytes) / 1e6


# ---------------------------------------------------------------------------------------
# The archive under test
# ---------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def snapshot(tmp: Path) -> tuple[Path, str]:
    """Copy the code under test (backend, worker, frontend, manage.py) and run it from the
    copy: the working tree is shared, and a static file edited while the server runs is
    served cut short (WhiteNoise, autorefresh off, keeps the sizes it saw at start-up), so
    the page would break mid-benchmark. Returns the copy and what it was copied from."""
    code = tmp / "lightbox"
    for name in ("backend", "worker", "frontend"):
        shutil.copytree(REPO / name, code / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "manage.py", code)
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    changed = len(dirty.stdout.splitlines())
    origin = f"working tree at {commit.stdout.strip() or '?'} ({changed} paths changed or new)"
    return code, f"{origin}, copied {time.strftime('%H:%M')}"


def manage(code: Path, env: dict, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "manage.py", *args], cwd=code, env=env, check=True, **kwargs)


def start_worker(code: Path, env: dict, log_path: Path) -> subprocess.Popen:
    command = [PYTHON, "-m", "celery", "-A", "worker", "worker", "--loglevel=INFO"]
    worker = spawn(command, env, log_path, code)
    deadline = time.monotonic() + 60
    while "ready." not in log_path.read_text():
        if worker.poll() is not None or time.monotonic() > deadline:
            stop(worker)
            raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    return worker


def probe_ct(code: Path, env: dict) -> dict:
    answer = subprocess.run(
        [PYTHON, "-c", CT_PROBE],
        cwd=code,
        env={**env, "DJANGO_SETTINGS_MODULE": "backend.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(answer.stdout.strip().splitlines()[-1])


def import_ct(code: Path, env: dict, source: Path, worker_log: Path) -> dict:
    """Import the CT with the running worker; wait until indexed and derived."""
    log(f"importing {source.name} with a Celery worker …")
    started = time.monotonic()
    manage(code, env, "import", "-v0", str(source), stdout=subprocess.DEVNULL)
    expected = sum(1 for p in source.rglob("*") if p.is_file())
    while True:
        time.sleep(2)  # each probe is a Python process: leave the CPU to the worker
        state = probe_ct(code, env)
        done = state["instances"] >= expected and not state["unfinished"]
        if done and not state["lagging_series"] and state.get("derived"):
            break
        if time.monotonic() - started > CT_TIMEOUT_S:
            raise RuntimeError(
                f"CT not indexed and derived: {state}\n{worker_log.read_text()[-3000:]}"
            )
    check_ct(state)
    log(f"… indexed and derived in {time.monotonic() - started:.0f} s")
    return state


def create_user(code: Path, env: dict) -> str:
    """A superuser `bench` with a random password, which is returned."""
    password = uuid.uuid4().hex
    manage(
        code,
        {**env, "DJANGO_SUPERUSER_PASSWORD": password},
        *("createsuperuser", "--noinput", "--username", "bench", "--email", "b@example.org"),
        stdout=subprocess.DEVNULL,
    )
    return password


def start_web(code: Path, env: dict, log_path: Path, host: str, prefix: tuple = ()) -> tuple:
    """uvicorn as `manage.py serve` starts it; returns (process, origin) once /healthz
    answers. `prefix` runs it elsewhere, e.g. `ip netns exec NAME`."""
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "backend.asgi:application", "--host", host]
    command += ["--port", str(port), "--no-access-log", "--lifespan", "off"]
    command += ["--ws-per-message-deflate", "false"]
    web = spawn([*prefix, *command], env, log_path, code)
    origin = f"http://{host}:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and web.poll() is None:
        if healthy(host, port):
            return web, origin
        time.sleep(0.2)
    stop(web)
    raise RuntimeError(f"web server did not answer /healthz:\n{log_path.read_text()[-3000:]}")


def healthy(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------
# A link shaped by the kernel: veth pair into a network namespace, tbf on both ends
# ---------------------------------------------------------------------------------------


class ShapedLink:
    """The server end lives in namespace `name`; the browser stays in the host's. Each
    end's egress gets `tc qdisc tbf rate 20mbit`: server → browser and browser → server."""

    def __init__(self) -> None:
        suffix = os.getpid() % 100_000
        self.name, self.host_if, self.ns_if = f"lbbench{suffix}", f"lbh{suffix}", f"lbn{suffix}"
        self.prefix = ("ip", "netns", "exec", self.name)

    @staticmethod
    def available() -> str:
        """'' when we can shape, else why not."""
        if os.geteuid() != 0:
            return "not root"
        if not shutil.which("ip") or not shutil.which("tc"):
            return "`ip` or `tc` (iproute2) not installed"
        return ""

    def __enter__(self) -> "ShapedLink":
        self._run("ip", "netns", "add", self.name)
        ns = ("ip", "-n", self.name)
        try:
            self._run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            self._run("ip", "link", "set", self.ns_if, "netns", self.name)
            self._run("ip", "addr", "add", f"{NETNS_HOST}/30", "dev", self.host_if)
            self._run("ip", "link", "set", self.host_if, "up")
            self._run(*ns, "addr", "add", f"{NETNS_SERVER}/30", "dev", self.ns_if)
            self._run(*ns, "link", "set", self.ns_if, "up")
            self._run(*ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def shape(self, mbit: int) -> None:
        tbf = ("root", "tbf", "rate", f"{mbit}mbit", "burst", "32kb", "latency", "50ms")
        self._run("tc", "qdisc", "add", "dev", self.host_if, *tbf)
        self._run("tc", "-n", self.name, "qdisc", "add", "dev", self.ns_if, *tbf)

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    @staticmethod
    def _run(*command: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


# ---------------------------------------------------------------------------------------
# The browser
# ---------------------------------------------------------------------------------------


def sign_in(origins: list[str], password: str) -> dict[str, list[dict]]:
    """Sign `bench` in with Playwright at each origin; returns each origin's cookies."""
    from playwright.sync_api import sync_playwright

    cookies = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for origin in origins:
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{origin}/login/?next=/")
            page.fill("input[name=username]", "bench")
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)
            cookies[origin] = context.cookies()
            context.close()
        browser.close()
    return cookies


class DevTools:
    """A minimal Chrome DevTools Protocol client on the browser's WebSocket: commands and
    their answers; events are skipped unread."""

    def __init__(self, socket):
        self.socket = socket
        self.ids = itertools.count(1)

    def __call__(self, method: str, session: str | None = None, **params) -> dict:
        ident = next(self.ids)
        message = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            text = self.socket.recv(timeout=120)
            if text.startswith('{"method"'):
                continue  # an event (with the Network domain on, every WebSocket frame)
            reply = json.loads(text)
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})


def launch_chromium(profile: Path, origins: list[str]) -> tuple[subprocess.Popen, str]:
    """Chromium with a DevTools port; the shaped origin is treated as a secure context, like
    127.0.0.1, so the page behaves the same under every condition."""
    args = [CHROMIUM, "--headless", *CHROMIUM_ARGS, "--no-first-run"]
    args += ["--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,800"]
    args += [f"--unsafely-treat-insecure-origin-as-secure={','.join(origins)}", "about:blank"]
    profile.mkdir(parents=True, exist_ok=True)
    port_file = profile / "DevToolsActivePort"
    port_file.unlink(missing_ok=True)
    browser = spawn(args, os.environ.copy(), profile.parent / "chromium.log")
    deadline = time.monotonic() + 60
    while not (port_file.exists() and len(port_file.read_text().split()) == 2):
        if browser.poll() is not None or time.monotonic() > deadline:
            stop(browser)
            raise RuntimeError((profile.parent / "chromium.log").read_text()[-3000:])
        time.sleep(0.1)
    port, path = port_file.read_text().split()
    return browser, f"ws://127.0.0.1:{port}{path}"


# Runs before the page's own scripts: counts what every WebSocket receives, with the frame
# header each message had on the wire (server frames are unmasked), and keeps page errors.
INSTRUMENT = """(() => {
  const stats = { sockets: 0, opened: null, bytes: 0, frames: 0, first: null, last: null,
                  firstFrame: null, errors: [] };
  const held = new Set();
  const order = [];
  Object.defineProperty(window, "__bench", { value: { stats, held, order } });
  const utf8 = new TextEncoder();
  const text = new TextDecoder();
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      stats.sockets += 1;
      stats.opened ??= performance.now();
      this.addEventListener("message", ({ data }) => {
        const n = typeof data === "string" ? utf8.encode(data).length : data.byteLength;
        stats.bytes += n + 2 + (n > 65535 ? 8 : n > 125 ? 2 : 0);
        stats.last = performance.now();
        if (stats.first === null) stats.first = stats.last;
        if (typeof data === "string") return;
        stats.firstFrame ??= stats.last;
        const length = new DataView(data).getUint32(0, true);  // see backend/live/viewer.py
        const header = JSON.parse(text.decode(new Uint8Array(data, 4, length)));
        stats.frames += 1;
        held.add(`${header.series} ${header.index}`);
        if (order.length < 12) order.push(header.index);
      });
    }
  };
  addEventListener("error", (event) => stats.errors.push(String(event.message)));
  addEventListener("unhandledrejection", (event) => stats.errors.push(String(event.reason)));
})()"""

STATE = """(() => {
  const mark = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
  const shown = document.querySelector("#error:not([hidden])");
  const bench = window.__bench;
  const entries = [...performance.getEntriesByType("navigation"),
                   ...performance.getEntriesByType("resource")];
  return {
    path: location.pathname,
    first: mark("lightbox:first-image"),
    complete: mark("lightbox:series-complete"),
    shown: shown ? shown.textContent : "",
    errors: bench ? bench.stats.errors : [],
    httpBytes: entries.reduce((sum, entry) => sum + entry.transferSize, 0),
    ws: bench && { ...bench.stats, unique: bench.held.size, order: bench.order },
  };
})()"""


TIMELINE = """(() => {
  const [nav] = performance.getEntriesByType("navigation");
  const ms = (value) => Math.round(value);
  const rows = [["page request sent", ms(nav.requestStart)],
                ["page first byte", ms(nav.responseStart)],
                ["page received", ms(nav.responseEnd)],
                ["DOM interactive", ms(nav.domInteractive)]];
  for (const entry of performance.getEntriesByType("resource")) {
    const name = new URL(entry.name).pathname;
    rows.push([`${name} asked`, ms(entry.startTime)], [`${name} received`, ms(entry.responseEnd)]);
  }
  const stats = window.__bench?.stats || {};
  const first = performance.getEntriesByName("lightbox:first-image")[0];
  rows.push(["WebSocket opened", stats.opened && ms(stats.opened)],
            ["manifest received", stats.first && ms(stats.first)],
            ["first frame received", stats.firstFrame && ms(stats.firstFrame)],
            ["lightbox:first-image", first && ms(first.startTime)]);
  return rows.filter(([, at]) => at !== null && at !== undefined).sort((a, b) => a[1] - b[1]);
})()"""


RESOURCES = """performance.getEntriesByType("resource").map((entry) =>
  `${new URL(entry.name).pathname} ${entry.responseStatus} ${entry.encodedBodySize} B`
).join(", ")"""


def evaluate(devtools: DevTools, session: str, expression: str):
    answer = devtools("Runtime.evaluate", session, expression=expression, returnByValue=True)
    return answer["result"].get("value")


class Page:
    """A new browser context (own cookies, empty HTTP cache) with one page in it."""

    def __init__(self, devtools: DevTools, cookies: list[dict], emulate: dict | None):
        self.devtools = devtools
        self.context = devtools("Target.createBrowserContext")["browserContextId"]
        devtools("Storage.setCookies", cookies=cookies, browserContextId=self.context)
        target = devtools("Target.createTarget", url="about:blank", browserContextId=self.context)
        self.target = target["targetId"]
        self.session = devtools("Target.attachToTarget", targetId=self.target, flatten=True)[
            "sessionId"
        ]
        devtools("Page.enable", self.session)
        devtools("Page.addScriptToEvaluateOnNewDocument", self.session, source=INSTRUMENT)
        devtools("Performance.enable", self.session)
        if emulate:  # takes effect only with the Network domain on (see the docstring)
            devtools("Network.enable", self.session)
            devtools("Network.emulateNetworkConditions", self.session, offline=False, **emulate)

    def heap(self) -> tuple[int, int | None]:
        """JSHeapUsedSize, and ArrayBuffer backing stores when this Chromium reports them."""
        metrics = self.devtools("Performance.getMetrics", self.session)["metrics"]
        used = next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize")
        usage = self.devtools("Runtime.getHeapUsage", self.session)
        return int(used), usage.get("backingStorageSize")

    def close(self) -> None:
        self.devtools("Target.closeTarget", targetId=self.target)
        self.devtools("Target.disposeBrowserContext", browserContextId=self.context)


def cdp_cookies(cookies: list[dict]) -> list[dict]:
    """Playwright's cookie records as DevTools CookieParam."""
    keys = ("name", "value", "domain", "path", "secure", "httpOnly", "sameSite")
    converted = [{k: c[k] for k in keys if k in c} for c in cookies]
    for cookie, original in zip(converted, cookies, strict=True):
        if original.get("expires", -1) > 0:
            cookie["expires"] = original["expires"]
    return converted


def load_once(devtools, condition: Condition, encoding: str, study: str, cookies) -> Sample:
    """Open the viewer once; sample until series-complete, an error or the timeout."""
    sample = Sample(condition.key, encoding)
    page = Page(devtools, cookies, condition.emulate)
    query = "?encoding=deflate" if encoding == "deflate" else ""
    try:
        devtools("Page.navigate", page.session, url=f"{condition.origin}/viewer/{study}{query}")
        started = time.monotonic()
        while True:
            heap, buffers = page.heap()
            sample.heap_peak = max(sample.heap_peak, heap)
            if buffers is not None:
                sample.buffers_peak = max(sample.buffers_peak or 0, buffers)
            state = evaluate(devtools, page.session, STATE) or {}
            if done(state, time.monotonic() - started, condition.timeout_s):
                break
            time.sleep(SAMPLE_S)
        if "no WebSocket" in state.get("fatal", ""):
            state["fatal"] += f" (resources: {evaluate(devtools, page.session, RESOURCES)})"
        record(sample, state)
        sample.timeline = evaluate(devtools, page.session, TIMELINE) or []
    finally:
        page.close()
    return sample


def done(state: dict, elapsed: float, timeout: float) -> bool:
    """Whether to stop sampling: series-complete marked, or `state["fatal"]` says why not."""
    path = state.get("path", "")
    if path.startswith("/viewer/") and state.get("complete") is not None:
        return True
    if state.get("shown"):
        state["fatal"] = f"the viewer says: {state['shown']}"
    elif path.startswith("/login"):
        state["fatal"] = "not signed in: the viewer sent the browser to /login"
    elif elapsed > timeout:
        state["fatal"] = f"no lightbox:series-complete after {timeout:.0f} s"
    elif elapsed > SCRIPT_START_S and not (state.get("ws") or {}).get("sockets"):
        state["fatal"] = f"the viewer opened no WebSocket within {SCRIPT_START_S} s"
    return bool(state.get("fatal"))


def record(sample: Sample, state: dict) -> None:
    sample.first_ms, sample.complete_ms = state.get("first"), state.get("complete")
    sample.error = "; ".join(filter(None, [state.get("fatal"), *state.get("errors", [])]))
    sample.http_bytes = int(state.get("httpBytes") or 0)
    ws = state.get("ws") or {}
    sample.ws_bytes = int(ws.get("bytes") or 0)
    sample.socket_ms, sample.manifest_ms = ws.get("opened"), ws.get("first")
    sample.frames, sample.unique = ws.get("frames", 0), ws.get("unique", 0)
    sample.order = tuple(ws.get("order") or ())
    if ws.get("last") and ws["last"] > ws["first"]:
        sample.ws_mbit = sample.ws_bytes * 8 / ((ws["last"] - ws["first"]) / 1000) / 1e6


# ---------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------


def measure(devtools, conditions, study: str, cookies: dict, runs: int) -> list[Sample]:
    """`runs` loads per condition and encoding, the encodings alternating."""
    samples = []
    for condition in conditions:
        for n, encoding in itertools.product(range(1, runs + 1), ENCODINGS):
            sample = load_once(devtools, condition, encoding, study, cookies[condition.origin])
            samples.append(sample)
            log(f"{condition.key:8} {encoding:7} run {n}: {describe(sample)}")
    return samples


def warm_up(devtools, origin: str, study: str, cookies: dict) -> None:
    """One unmeasured load per encoding: server imports, connections, page cache."""
    warm = Condition("warm-up", "", origin, None, 0, timeout_s=120)
    for encoding in ENCODINGS:
        sample = load_once(devtools, warm, encoding, study, cookies[origin])
        log(f"warm-up  {encoding:7} {origin}: {describe(sample)}")


def describe(s: Sample) -> str:
    first = f"{s.first_ms:.0f}" if s.first_ms is not None else "-"
    complete = f"{s.complete_ms:.0f}" if s.complete_ms is not None else "-"
    rate = f", WS {s.ws_mbit:.1f} Mbit/s" if s.ws_mbit else ""
    text = f"first {first} ms, complete {complete} ms, {s.wire_mb:.1f} MB{rate}"
    return text + (f", ERROR {s.error}" if s.error else "")


def conditions_for(keys: list[str], loopback: str, shaped: str | None) -> list[Condition]:
    available = {
        "loopback": Condition("loopback", "loopback", loopback, None, 300, 2000, timeout_s=120),
        "cdp": Condition(
            "cdp", f"DevTools {LINK_MBIT} Mbit/s {RTT_MS} ms", loopback, CDP_LIMITED, 1000
        ),
    }
    if shaped:
        available["tbf"] = Condition(
            "tbf", f"tbf {LINK_MBIT} Mbit/s + DevTools {RTT_MS} ms", shaped,
            CDP_LATENCY_ONLY, 1000,
        )  # fmt: skip
    return [available[key] for key in keys if key in available]


def start_archive(args, tmp: Path, link: ShapedLink | None, processes: list) -> dict:
    """Copy the code, migrate, start a worker, import the CT, create the user, start the
    web server (and its twin in the shaped namespace). Started processes join `processes`."""
    code, copied = snapshot(tmp)
    env = environment(tmp / "data", "", "", os.cpu_count() or 2)
    manage(code, env, "migrate", "-v0")
    processes.append(start_worker(code, env, tmp / "worker.log"))
    ct = import_ct(code, env, args.source, tmp / "worker.log")
    site = {"code": copied, "study": ct["study"], "instances": len(ct["sop_instance_uids"])}
    site["password"] = create_user(code, env)
    web, site["loopback"] = start_web(code, env, tmp / "web.log", "127.0.0.1")
    processes.append(web)
    site["shaped"] = None
    if link:
        hosts = f"localhost,127.0.0.1,{NETNS_SERVER}"
        shaped_env = {**env, "LIGHTBOX_ALLOWED_HOSTS": hosts}
        web, site["shaped"] = start_web(
            code, shaped_env, tmp / "web-ns.log", NETNS_SERVER, link.prefix
        )
        processes.append(web)
    return site


def run_benchmark(args, tmp: Path, link: ShapedLink | None) -> tuple:
    """Everything, start to finish; returns the samples, the conditions and facts about the
    run. Stops every process it started, whatever happens."""
    processes: list[subprocess.Popen] = []
    try:
        facts = {"load_start": os.getloadavg()}
        site = start_archive(args, tmp, link, processes)
        facts.update(code=site["code"], instances=site["instances"])
        origins = [site["loopback"], *([site["shaped"]] if site["shaped"] else [])]
        log("signing in with Playwright …")
        cookies = {o: cdp_cookies(c) for o, c in sign_in(origins, site["password"]).items()}
        browser, url = launch_chromium(tmp / "profile", origins)
        processes.append(browser)
        with connect(url, max_size=None, open_timeout=30) as socket:
            devtools = DevTools(socket)
            facts["chromium"] = devtools("Browser.getVersion")["product"]
            for origin in origins:  # the shaped server too, before its link is shaped
                warm_up(devtools, origin, site["study"], cookies)
            if link:
                link.shape(LINK_MBIT)
            facts["load_measure"] = os.getloadavg()
            conditions = conditions_for(args.conditions, site["loopback"], site["shaped"])
            samples = measure(devtools, conditions, site["study"], cookies, args.runs)
        facts["load_end"] = os.getloadavg()
        return samples, conditions, facts
    finally:
        for process in reversed(processes):
            stop(process)


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    cores = len(os.sched_getaffinity(0))
    return (
        f"{platform.node()}, {model or platform.processor() or 'unknown CPU'}, {cores} cores "
        f"(nproc), Linux {platform.release()}, Python {platform.python_version()}"
    )


def loads(triple) -> str:
    return "/".join(f"{x:.2f}" for x in triple)


def median_best(values: list[float]) -> tuple[float | None, str]:
    """The median (for the verdict) and "median / best" as text."""
    if not values:
        return None, "-"
    median = statistics.median(values)
    return median, f"{median:.0f} / {min(values):.0f}"


def verdict(median: float | None, target: float | None, reached: int, runs: int) -> str:
    """Median against the target; '*' when some runs never reached the mark."""
    if target is None:
        return ""
    if median is None:
        return "ERROR"
    return ("met" if median <= target else "NOT MET") + ("*" if reached < runs else "")


def median_of(values: list) -> float:
    return statistics.median(values) if values else float("nan")


COLUMNS = (
    f"{'condition':31} {'enc':7} {'ok':>2} | {'first-image ms':>14} {'target':>6} "
    f"{'verdict':8}| {'series-complete':>15} {'target':>6} {'verdict':8}| {'socket':>6} "
    f"{'manifest':>8} {'frames':>7} {'MB wire':>7} {'WS Mbit/s':>9} {'heap MB':>7} {'AB MB':>5}"
)


def row(condition: Condition, encoding: str, group: list[Sample]) -> str:
    """One line of the table: a condition and an encoding over all its runs."""
    firsts = [s.first_ms for s in group if s.first_ms is not None]
    completes = [s.complete_ms for s in group if s.complete_ms is not None]
    first, first_text = median_best(firsts)
    complete, complete_text = median_best(completes)
    first_target, complete_target = condition.first_target_ms, condition.complete_target_ms
    first_verdict = verdict(first, first_target, len(firsts), len(group))
    complete_verdict = verdict(complete, complete_target, len(completes), len(group))
    socket = median_of([s.socket_ms for s in group if s.socket_ms is not None])
    manifest = median_of([s.manifest_ms for s in group if s.manifest_ms is not None])
    frames = (
        f"{median_of([s.frames for s in group]):.0f}/{median_of([s.unique for s in group]):.0f}"
    )
    wire = median_of([s.wire_mb for s in group])
    rate = median_of([s.ws_mbit for s in group if s.ws_mbit])
    heap = median_of([s.heap_peak / 1e6 for s in group])
    buffers = median_of([s.buffers_peak / 1e6 for s in group if s.buffers_peak is not None])
    return (
        f"{condition.label:31} {encoding:7} {len(completes):>2} | {first_text:>14} "
        f"{'≤' + format(first_target, 'g'):>6} {first_verdict:8}| {complete_text:>15} "
        f"{'≤' + format(complete_target, 'g') if complete_target else '-':>6} "
        f"{complete_verdict:8}| {socket:>6.0f} {manifest:>8.0f} {frames:>7} {wire:>7.1f} "
        f"{rate:>9.1f} {heap:>7.1f} {buffers:>5.0f}"
    )


NOTES = f"""
ok: runs that reached series-complete. ms: median / best, from navigation start (the marks'
startTime). verdict: the median against the target; * = some runs never reached the mark.
socket, manifest: median ms from navigation start until the viewer's script opened its
WebSocket, and until the first message on it (the study's manifest) arrived.
frames: median frames received / distinct frames among them (275 slices).
MB wire: median; HTTP transferSize (navigation + resource timing entries) + WebSocket
messages with their frame headers, counted in the page (no TCP/IP headers, no handshake).
WS Mbit/s: WebSocket bytes over the time from the first to the last message received: what
the link really delivered ({LINK_MBIT} Mbit/s asked on the limited rows).
heap MB: median of each run's peak JSHeapUsedSize (Performance.getMetrics, every ~100 ms).
AB MB: the same for ArrayBuffer backing stores (Runtime.getHeapUsage), where frames live.
Conditions: loopback = no shaping. DevTools = Network.emulateNetworkConditions, {LINK_MBIT}
Mbit/s down and up, latency {RTT_MS} ms: it does throttle WebSocket frames in this Chromium,
but to well under the rate asked, and unevenly (WS Mbit/s: the median; the log has each
run). tbf = the server in a network namespace behind
a veth pair with `tc qdisc tbf rate {LINK_MBIT}mbit` on both ends (kernel shaping, exact rate);
this kernel has no sch_netem, so its {RTT_MS} ms is DevTools latency, added per request (page,
scripts, WebSocket handshake) and not to frames on the open WebSocket. Emulation needs the
DevTools Network domain on, which copies every frame to DevTools: limited rows only."""


def print_table(samples: list[Sample], conditions: list[Condition], facts: dict, args) -> None:
    print(f"\nLightbox viewer benchmark — {time.strftime('%Y-%m-%d %H:%M %Z')}, {machine()}")
    print(
        f"{facts['chromium']} headless (SwiftShader), driven over DevTools; CT "
        f"{args.source.name}, {facts['instances']} slices 512x512 16-bit; embedded archive "
        f"(SQLite, filesystem broker), 1 uvicorn + 1 Celery worker; code: {facts['code']}.\n"
        f"{args.runs} runs per row, each a fresh page load in a new browser context (empty "
        f"cache). Load average (1/5/15 min): {loads(facts['load_start'])} at start, "
        f"{loads(facts['load_measure'])} when measuring began, {loads(facts['load_end'])} at "
        "the end (other work on this shared machine shows in the times)."
    )
    print(COLUMNS)
    print("-" * len(COLUMNS))
    for condition in conditions:
        for encoding in ENCODINGS:
            group = [s for s in samples if (s.condition, s.encoding) == (condition.key, encoding)]
            print(row(condition, encoding, group))
    print(NOTES)
    print("\nFirst frames received (slice indices, first run of each row; the viewer opens on")
    print("the middle slice):")
    for condition in conditions:
        for encoding in ENCODINGS:
            group = [s for s in samples if (s.condition, s.encoding) == (condition.key, encoding)]
            if group:
                order = ", ".join(map(str, group[0].order))
                print(f"  {condition.label} {encoding}: {order}")
    for s in samples:
        if s.error:
            print(f"ERROR {s.condition} {s.encoding}: {s.error}")
    for key, why in args.skipped.items():
        print(f"condition {key!r} not measured: {why}")


def print_timelines(samples: list[Sample]) -> None:
    """Each row's first load, step by step: where the time before the first image goes."""
    seen = set()
    for sample in samples:
        if (sample.condition, sample.encoding) in seen:
            continue
        seen.add((sample.condition, sample.encoding))
        heading = f"{sample.condition} {sample.encoding}"
        print(f"\nTimeline, {heading} (first run; ms from navigation start):")
        for what, at in sample.timeline:
            print(f"  {at:6} {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--runs", type=int, default=5, help="page loads per condition/encoding")
    parser.add_argument("--conditions", default="loopback,cdp,tbf", help="comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    parser.add_argument(
        "--timeline", action="store_true", help="print each row's first load step by step"
    )
    args = parser.parse_args()
    args.conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if unknown := set(args.conditions) - {"loopback", "cdp", "tbf"}:
        parser.error(f"unknown conditions {sorted(unknown)}: choose from loopback, cdp, tbf")
    if not args.source.is_dir():
        sys.exit(f"benchmark data not found: {args.source} (see ../shared/testdata/README.md)")
    if not Path(CHROMIUM).exists():
        sys.exit(f"needs Chromium at {CHROMIUM} (Debian package chromium)")
    args.skipped = {}
    if "tbf" in args.conditions and (why := ShapedLink.available()):
        args.skipped["tbf"] = why
    tmp = Path(tempfile.mkdtemp(prefix="lightbox-viewer-"))
    shaping = "tbf" in args.conditions and not args.skipped
    try:
        with ShapedLink() if shaping else contextlib.nullcontext() as link:
            samples, conditions, facts = run_benchmark(args, tmp, link)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(samples, conditions, facts, args)
    if args.timeline:
        print_timelines(samples)
    if args.keep:
        print(f"\nkept: {tmp}")


if __name__ == "__main__":
    main()
