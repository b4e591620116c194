"""Lightbox's one settings module, built from environment variables.

Every variable is listed in deploy/.env.example. With none set, Lightbox runs embedded:
SQLite and files under LIGHTBOX_DATA_DIR, Celery over kombu's filesystem transport and an
in-memory channel layer fed from the database outbox. DATABASE_URL and REDIS_URL switch to
PostgreSQL and Redis without any code change.
"""

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """A variable's value, or the content of the file named by NAME_FILE (for secrets)."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: str) -> bool:
    value = env(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (0/1), got {value!r}")


def envint(name: str, default: str) -> int:
    """An integer; set but empty (`NAME=` as deploy/.env.example lists some) is the default."""
    value = env(name, default).strip() or default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DATA_DIR = Path(env("LIGHTBOX_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    # Generated once into the data dir, so sessions survive restarts without configuration.
    given = env("DJANGO_SECRET_KEY")
    if given:
        return given
    path = DATA_DIR / "secret_key"
    if not path.exists():
        # Written aside and linked into place: processes starting together on a fresh data
        # dir all end up reading the one key that won, never a half-written one.
        tmp = DATA_DIR / f".secret_key.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = envbool("LIGHTBOX_DEBUG", "0")

HTTP_HOST = env("LIGHTBOX_HTTP_HOST", "127.0.0.1")
HTTP_PORT = envint("LIGHTBOX_HTTP_PORT", "8000")
DICOM_PORT = envint("LIGHTBOX_DICOM_PORT", "11112")
AE_TITLE = env("LIGHTBOX_AE_TITLE", "LIGHTBOX")
if not 0 < len(AE_TITLE) <= 16:
    raise ImproperlyConfigured("LIGHTBOX_AE_TITLE must be 1 to 16 characters (PS3.5 §6.2, AE)")

ALLOWED_HOSTS = envlist("LIGHTBOX_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("LIGHTBOX_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "backend.accounts.hardening.LightboxAdminConfig",  # django.contrib.admin, admins only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "backend.archive",
    "backend.live",
    "backend.accounts",
    "backend.nodes",
    "backend.dicomweb",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "backend.accounts.hardening.SecurityHeadersMiddleware",
    "backend.dicomweb.cors.CorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "backend.accounts.sessions.SessionLifetimeMiddleware",
    "backend.accounts.twofactor.TwoFactorEnrolmentMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backend.urls"
ASGI_APPLICATION = "backend.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "backend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL in production; SQLite in WAL mode by default. IMMEDIATE transactions
# make SQLite writers queue on the busy timeout instead of failing with "database is locked".
DATABASE_URL = env("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's ASGI handler runs each request's sync code in a thread of its own, so
        # per-thread persistent connections are never reused by the web process: each request
        # paid a new PostgreSQL connection (~5 ms). A pool per process fixes that.
        DATABASES["default"]["OPTIONS"] = {
            "pool": {
                "min_size": envint("LIGHTBOX_DB_POOL_MIN", "1"),
                "max_size": envint("LIGHTBOX_DB_POOL_MAX", "8"),
                "timeout": 30,
            }
        }
    else:
        DATABASES = {
            "default": dj_database_url.parse(
                DATABASE_URL, conn_max_age=600, conn_health_checks=True
            )
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "lightbox.sqlite3"),
            # Keep connections: Celery closes them after each task otherwise, and opening
            # one (with its PRAGMAs) costs more than indexing a small file.
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Argon2id first (memory-hard, so a stolen hash costs a GPU far more than PBKDF2 does);
# PBKDF2 stays to read older hashes, which Django rehashes with Argon2 at the next sign-in.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": envint("LIGHTBOX_PASSWORD_MIN_LENGTH", "12")},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# A session ends after LIGHTBOX_SESSION_IDLE_MINUTES without use, and at the latest
# LIGHTBOX_SESSION_MAX_HOURS after login (backend/accounts/sessions.py).
LIGHTBOX_SESSION_IDLE_MINUTES = envint("LIGHTBOX_SESSION_IDLE_MINUTES", "30")
LIGHTBOX_SESSION_MAX_HOURS = envint("LIGHTBOX_SESSION_MAX_HOURS", "12")
SESSION_COOKIE_AGE = LIGHTBOX_SESSION_MAX_HOURS * 3600

# Sign-in (backend/accounts/throttle.py, twofactor.py, oidc.py). An account is locked for
# LIGHTBOX_LOCKOUT_MINUTES after LIGHTBOX_LOGIN_MAX_FAILURES failures in a row; an address
# with LIGHTBOX_LOGIN_MAX_FAILURES_PER_ADDRESS failures within the last
# LIGHTBOX_LOGIN_ADDRESS_WINDOW_MINUTES is refused until older ones leave the window.
LIGHTBOX_LOGIN_MAX_FAILURES = envint("LIGHTBOX_LOGIN_MAX_FAILURES", "5")
LIGHTBOX_LOCKOUT_MINUTES = envint("LIGHTBOX_LOCKOUT_MINUTES", "15")
LIGHTBOX_LOGIN_MAX_FAILURES_PER_ADDRESS = envint("LIGHTBOX_LOGIN_MAX_FAILURES_PER_ADDRESS", "20")
LIGHTBOX_LOGIN_ADDRESS_WINDOW_MINUTES = envint("LIGHTBOX_LOGIN_ADDRESS_WINDOW_MINUTES", "15")
# Roles whose users must set up two-factor sign-in (TOTP) before using Lightbox.
LIGHTBOX_REQUIRE_2FA_ROLES = envlist("LIGHTBOX_REQUIRE_2FA_ROLES")
# OpenID Connect single sign-on: on when the issuer and client id are set.
LIGHTBOX_OIDC_ISSUER = env("LIGHTBOX_OIDC_ISSUER").rstrip("/")
LIGHTBOX_OIDC_CLIENT_ID = env("LIGHTBOX_OIDC_CLIENT_ID")
LIGHTBOX_OIDC_CLIENT_SECRET = env("LIGHTBOX_OIDC_CLIENT_SECRET")
LIGHTBOX_OIDC_NAME = env("LIGHTBOX_OIDC_NAME", "single sign-on")
LIGHTBOX_OIDC_SCOPES = env("LIGHTBOX_OIDC_SCOPES", "openid profile email")
LIGHTBOX_OIDC_USERNAME_CLAIM = env("LIGHTBOX_OIDC_USERNAME_CLAIM", "preferred_username")
LIGHTBOX_OIDC_ROLE_CLAIM = env("LIGHTBOX_OIDC_ROLE_CLAIM")
LIGHTBOX_OIDC_ROLE_MAP = envlist("LIGHTBOX_OIDC_ROLE_MAP")
LIGHTBOX_OIDC_CREATE_USERS = envbool("LIGHTBOX_OIDC_CREATE_USERS", "1")
LIGHTBOX_OIDC_LINK_EXISTING = envbool("LIGHTBOX_OIDC_LINK_EXISTING", "0")
if bool(LIGHTBOX_OIDC_ISSUER) != bool(LIGHTBOX_OIDC_CLIENT_ID):
    raise ImproperlyConfigured("LIGHTBOX_OIDC_ISSUER and LIGHTBOX_OIDC_CLIENT_ID go together")
if min(LIGHTBOX_LOGIN_MAX_FAILURES, LIGHTBOX_LOGIN_MAX_FAILURES_PER_ADDRESS) < 1:
    raise ImproperlyConfigured("LIGHTBOX_LOGIN_MAX_FAILURES[_PER_ADDRESS] must be at least 1")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind a TLS proxy (production) cookies are marked secure and HSTS is sent.
BEHIND_TLS_PROXY = envbool("LIGHTBOX_BEHIND_TLS_PROXY", "0")
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = envint("LIGHTBOX_HSTS_SECONDS", "31536000")
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("LIGHTBOX_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [("app", BASE_DIR / "frontend")]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Broker and channel layer: Redis when REDIS_URL is set, else embedded and serverless.
REDIS_URL = env("REDIS_URL")
BROKER_DIR = DATA_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT = "backend.archive.fsqueue:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": True,
        "polling_interval": 0.05,
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery's Django fixup closes every database connection before and after each task
# unless this is set (and, with PostgreSQL's pool, the whole pool): a new connection per
# task of a few files. It is set so high that the fixup never closes them; worker/celery.py
# closes broken or old ones before each task instead, as Django does per request.
CELERY_DB_REUSE_MAX = 1_000_000_000

# Ingestion: decode limits guard workers against hostile files (see docs/operations.md).
INGEST_MAX_PIXEL_BYTES = envint("LIGHTBOX_MAX_PIXEL_BYTES", str(1 << 30))
INGEST_TASK_TIME_LIMIT = envint("LIGHTBOX_INGEST_TIME_LIMIT", "120")
INGEST_WORKER_MEMORY_MB = envint("LIGHTBOX_WORKER_MEMORY_MB", "4096")
INGEST_MAX_ATTEMPTS = envint("LIGHTBOX_INGEST_MAX_ATTEMPTS", "3")
# A received file still not indexed after this many seconds is re-queued by the sweep.
INGEST_STALE_SECONDS = envint("LIGHTBOX_INGEST_STALE_SECONDS", "60")
INGEST_SWEEP_SECONDS = envint("LIGHTBOX_INGEST_SWEEP_SECONDS", "60")
WORKER_CONCURRENCY = envint("LIGHTBOX_WORKER_CONCURRENCY", str(os.cpu_count() or 2))
# CPU priority of the workers (Unix nice, 0-19): indexing yields to the receiver, whose
# senders wait for each acknowledgement, and to the web server, whose users wait for pages.
WORKER_NICE = envint("LIGHTBOX_WORKER_NICE", "10")
DEMO_IMPORT = envbool("LIGHTBOX_DEMO_IMPORT", "1")

# DICOM receiver (worker/dimse, docs/conformance.md). Modalities reach it over the network,
# so it listens on every interface by default; restrict with LIGHTBOX_DICOM_HOST.
DICOM_HOST = env("LIGHTBOX_DICOM_HOST", "0.0.0.0")  # noqa: S104
# 1: any calling AE may store (C-STORE); 0: only registered nodes (manage.py dicomnode).
DICOM_ACCEPT_ANY_STORE = envbool("LIGHTBOX_DICOM_ACCEPT_ANY_STORE", "1")
DICOM_MAX_ASSOCIATIONS = envint("LIGHTBOX_DICOM_MAX_ASSOCIATIONS", "32")
# Receiver processes sharing the port (worker/dimse/members.py): Python runs one thread at a
# time per process, so parallel senders need several. By default one per core, 1 to 4:
# while senders send, indexing waits for them (DICOM_INDEX_HOLD_MS below), so the cores are
# the receiver's (docs/performance.md).
DICOM_PROCESSES = envint("LIGHTBOX_DICOM_PROCESSES", str(min(max(os.cpu_count() or 1, 1), 4)))
# While senders keep sending, what they sent is recorded but queued for indexing only when
# they pause, or after this long at most (0: at once); the first file of each new study at
# once (ingest.BackgroundRecorder, dimse.handlers.RecentStudies).
DICOM_INDEX_HOLD_MS = envint("LIGHTBOX_DICOM_INDEX_HOLD_MS", "2000")
# How long no file may arrive before the senders count as paused. On a machine so loaded
# that a sender stalls this long between files, held tasks go out early (no harm, but the
# indexing then competes with the transfer): raise it there.
DICOM_INDEX_QUIET_MS = envint("LIGHTBOX_DICOM_INDEX_QUIET_MS", "100")
# Largest PDU we accept (bytes, PS3.8 §D.1 Maximum Length); 0 means no limit.
DICOM_MAX_PDU = envint("LIGHTBOX_DICOM_MAX_PDU", str(4 << 20))
# Seconds a peer may stay silent before its association is dropped (ARTIM/network timeout).
DICOM_TIMEOUT = envint("LIGHTBOX_DICOM_TIMEOUT", "60")
# On SIGTERM: seconds open associations get to finish before they are aborted.
DICOM_SHUTDOWN_GRACE = envint("LIGHTBOX_DICOM_SHUTDOWN_GRACE", "30")
# DICOM TLS (PS3.15 §B.1): both set → the DICOM port speaks TLS only. With a CA file, peers
# must present a certificate it signed.
DICOM_TLS_CERT = env("LIGHTBOX_DICOM_TLS_CERT")
DICOM_TLS_KEY = env("LIGHTBOX_DICOM_TLS_KEY")
DICOM_TLS_CA = env("LIGHTBOX_DICOM_TLS_CA")
if bool(DICOM_TLS_CERT) != bool(DICOM_TLS_KEY):
    raise ImproperlyConfigured("LIGHTBOX_DICOM_TLS_CERT and LIGHTBOX_DICOM_TLS_KEY go together")
if (
    DICOM_MAX_ASSOCIATIONS < 1
    or not 0 < DICOM_PORT < 65536
    or not 1 <= DICOM_PROCESSES <= 64
    or not 0 <= DICOM_INDEX_HOLD_MS <= 10_000
    or not 10 <= DICOM_INDEX_QUIET_MS <= 5_000
):
    raise ImproperlyConfigured(
        "LIGHTBOX_DICOM_MAX_ASSOCIATIONS, LIGHTBOX_DICOM_PORT, LIGHTBOX_DICOM_PROCESSES, "
        "LIGHTBOX_DICOM_INDEX_HOLD_MS (0-10000), LIGHTBOX_DICOM_INDEX_QUIET_MS (10-5000): "
        "bad value"
    )

# DICOMweb (docs/dicomweb.md). QIDO results are always paged: a default and a maximum limit.
LIGHTBOX_QIDO_DEFAULT_LIMIT = envint("LIGHTBOX_QIDO_DEFAULT_LIMIT", "100")
LIGHTBOX_QIDO_MAX_LIMIT = envint("LIGHTBOX_QIDO_MAX_LIMIT", "1000")
# A STOW-RS body larger than this is refused (413) before it reaches the disk.
LIGHTBOX_STOW_MAX_BYTES = envint("LIGHTBOX_STOW_MAX_BYTES", str(2 << 30))
# Origins (scheme://host[:port]) of external viewers allowed to call DICOMweb from a browser
# (CORS); none by default.
LIGHTBOX_CORS_ALLOWED_ORIGINS = envlist("LIGHTBOX_CORS_ALLOWED_ORIGINS")
if not 1 <= LIGHTBOX_QIDO_DEFAULT_LIMIT <= LIGHTBOX_QIDO_MAX_LIMIT:
    raise ImproperlyConfigured("LIGHTBOX_QIDO_DEFAULT_LIMIT must be 1..LIGHTBOX_QIDO_MAX_LIMIT")

# Worklist (docs/worklist.md). A study never opened by a user shows as new to them for this
# many hours after it arrived or last grew. Uploads from the worklist are limited in size
# (per file, or per .zip counting what it unpacks to) like STOW-RS bodies.
LIGHTBOX_WORKLIST_NEW_HOURS = envint("LIGHTBOX_WORKLIST_NEW_HOURS", "24")
LIGHTBOX_UPLOAD_MAX_BYTES = envint("LIGHTBOX_UPLOAD_MAX_BYTES", str(2 << 30))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # No patient data in the logs: pydicom quotes the values it finds invalid (a malformed
    # name or birth date), so those are masked; pynetdicom logs every C-FIND identifier and
    # response at INFO, so it speaks from WARNING up (Lightbox logs each association itself).
    "filters": {"no_dicom_values": {"()": "backend.accounts.hardening.MaskDicomValues"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["no_dicom_values"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LIGHTBOX_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "pynetdicom": {"level": "WARNING"}},
}

# Accounts managed on /manage (backend/accounts/manage/). An invitation link
# (new user, or password reset) works once, for this many days.
LIGHTBOX_INVITATION_DAYS = envint("LIGHTBOX_INVITATION_DAYS", "7")
# Most rows one CSV export of the audit log holds (newest first); the rest are left out.
LIGHTBOX_AUDIT_EXPORT_MAX_ROWS = envint("LIGHTBOX_AUDIT_EXPORT_MAX_ROWS", "100000")
if LIGHTBOX_INVITATION_DAYS < 1 or LIGHTBOX_AUDIT_EXPORT_MAX_ROWS < 1:
    raise ImproperlyConfigured(
        "LIGHTBOX_INVITATION_DAYS and LIGHTBOX_AUDIT_EXPORT_MAX_ROWS must be at least 1"
    )

# Audit export and browser hardening (backend/accounts/audit_export.py, hardening.py).
# Every audit event also goes, as a DICOM audit message (PS3.15 §A.5), to this syslog
# collector: udp://HOST[:514], tcp://HOST[:601] or tls://HOST[:6514]. Unset: not sent.
LIGHTBOX_AUDIT_SYSLOG = env("LIGHTBOX_AUDIT_SYSLOG")
# tls:// only: CA bundle the collector's certificate must chain to (default: the system's).
LIGHTBOX_AUDIT_SYSLOG_CA = env("LIGHTBOX_AUDIT_SYSLOG_CA")
if LIGHTBOX_AUDIT_SYSLOG and (
    urlsplit(LIGHTBOX_AUDIT_SYSLOG).scheme not in ("udp", "tcp", "tls")
    or not urlsplit(LIGHTBOX_AUDIT_SYSLOG).hostname
):
    raise ImproperlyConfigured("LIGHTBOX_AUDIT_SYSLOG must be udp://, tcp:// or tls://HOST[:PORT]")
# The session cookie is HttpOnly; the CSRF cookie is not, on purpose: the pages' scripts
# send it back as X-CSRFToken (Django's documented pattern). Both are SameSite=Lax, and
# Secure behind TLS (above).
CSRF_COOKIE_SAMESITE = "Lax"
# 1: HSTS asks to be preloaded into browsers (https://hstspreload.org), which binds the whole
# domain and its subdomains to HTTPS for good; an operator's decision, hence off by default
# and its `check --deploy` warning (security.W021) silenced while off.
LIGHTBOX_HSTS_PRELOAD = envbool("LIGHTBOX_HSTS_PRELOAD", "0")
if BEHIND_TLS_PROXY:
    SECURE_HSTS_PRELOAD = LIGHTBOX_HSTS_PRELOAD
SILENCED_SYSTEM_CHECKS = [] if LIGHTBOX_HSTS_PRELOAD else ["security.W021"]
