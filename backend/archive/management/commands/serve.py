"""manage.py serve — run every Lightbox process in the foreground until Ctrl-C (`make run`).

Creates the admin account if there is none, starts the web server (uvicorn, ASGI), the
Celery worker (with its periodic sweep) and the DICOM receiver, imports the
demo studies once, and stops everything cleanly on Ctrl-C or SIGTERM.
"""

import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

# pydicom's bundled sample files that make a varied demo: CT, MR, a JPEG 2000 CT, an
# ultrasound cine in YBR, palette colour, RGB RLE multi-frame, and an RT dose grid.
DEMO_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "examples_ybr_color.dcm",
    "examples_palette.dcm",
    "SC_rgb_rle_2frame.dcm",
    "rtdose.dcm",
]


def demo_paths() -> list[str]:
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    return [str(folder / name) for name in DEMO_FILES if (folder / name).exists()]


class Command(BaseCommand):
    help = "Run web, worker and DICOM receiver in the foreground (what `make run` does)."

    def handle(self, *args, **options):
        password_note = ensure_admin()
        processes = self._start()
        self._announce(password_note)
        stop = _StopFlag()
        demo = self._start_demo_import()
        try:
            self._watch(processes, stop, demo)
        finally:
            _terminate(processes + ([demo] if demo else []))

    def _start(self) -> list[subprocess.Popen]:
        python = sys.executable
        web = [
            python,
            "-m",
            "uvicorn",
            "backend.asgi:application",
            "--host",
            settings.HTTP_HOST,
            "--port",
            str(settings.HTTP_PORT),
            "--no-access-log",
            "--lifespan",
            "off",
            # The viewer chooses its frames' encoding itself; the transport compressing
            # every 512 kB frame again cost ~30 ms per frame (backend/live/viewer.py).
            "--ws-per-message-deflate",
            "false",
        ]
        worker = [
            python,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "-B",
            "--loglevel=INFO",
            "--concurrency",
            str(settings.WORKER_CONCURRENCY),
        ]
        dicom = [python, "-m", "worker.dimse"]
        commands = {"web": web, "worker": worker, "dicom": dicom}
        return [_spawn(cmd) for cmd in commands.values()]

    def _announce(self, password_note: str) -> None:
        url = f"http://{settings.HTTP_HOST}:{settings.HTTP_PORT}/"
        self.stdout.write(self.style.SUCCESS(f"\nLightbox is starting: open {url}"))
        self.stdout.write(f"Sign in as 'admin' — {password_note}")
        self.stdout.write(
            f"DICOM: AE title {settings.AE_TITLE}, port {settings.DICOM_PORT}. "
            f"Data: {settings.DATA_DIR}. Stop with Ctrl-C.\n"
        )

    def _start_demo_import(self) -> subprocess.Popen | None:
        marker = settings.DATA_DIR / "demo-imported"
        if not settings.DEMO_IMPORT or marker.exists():
            return None
        paths = demo_paths()
        if not paths:
            return None
        command = [sys.executable, "manage.py", "import", "--verbosity", "0", *paths]
        script = f"{_quote(command)} && touch {_quote([str(marker)])}"
        return subprocess.Popen(["sh", "-c", script], cwd=settings.BASE_DIR)

    def _watch(self, processes, stop, demo) -> None:
        while not stop.requested:
            for process in processes:
                if process.poll() is not None:
                    self.stderr.write(
                        f"{process.args[2]} exited with {process.returncode}; stopping."
                    )
                    return
            if demo is not None and demo.poll() is not None:
                if demo.returncode != 0:
                    self.stderr.write("demo import finished with rejections (see above)")
                demo = None
            time.sleep(0.5)


class _StopFlag:
    def __init__(self):
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._set)

    def _set(self, *_args) -> None:
        self.requested = True


def _quote(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


def _spawn(command: list[str]) -> subprocess.Popen:
    # Own process group: Ctrl-C reaches the supervisor, which shuts children down in order.
    return subprocess.Popen(command, cwd=settings.BASE_DIR, start_new_session=True)


def _terminate(processes: list[subprocess.Popen], grace: float = 20) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def ensure_admin() -> str:
    """Create the 'admin' superuser if no superuser exists; returns how to find the password."""
    User = get_user_model()
    password_file = settings.DATA_DIR / "admin-password"
    given = os.environ.get("LIGHTBOX_ADMIN_PASSWORD")
    if User.objects.filter(is_superuser=True).exists():
        if given:
            return "password from LIGHTBOX_ADMIN_PASSWORD"
        if password_file.exists():
            return f"generated password in {password_file}"
        return "password as set before"
    password = given or secrets.token_urlsafe(12)
    User.objects.create_superuser("admin", email="", password=password)
    if given:
        return "password from LIGHTBOX_ADMIN_PASSWORD"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return f"generated password: {password} (also kept in {password_file})"
