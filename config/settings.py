"""Parley settings: one module, every environment switch read from the environment.

Safe development defaults everywhere; production sets DEBUG=0, SECRET_KEY, DATABASE_URL,
REDIS_URL, STRIPE_* and PARLEY_SMS_BACKEND.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _

from config.database import database_settings, embedded_database_url, pool_options

# Lets admin and other generic classes be subscripted at run time, as the type stubs expect.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent


env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)

# The development key is public (it is in this file), so only DEBUG may fall back to it:
# sessions, password-reset links and the one-time-code and SMS keys derived below would all be
# forgeable by anyone who has read the source. Production refuses to start instead.
DEVELOPMENT_SECRET_KEY = "dev-only-insecure-key-change-me-in-production-0123456789"
MIN_SECRET_KEY_LENGTH = 50  # what `check --deploy` (security.W009) asks for


def production_secret(name: str, value: str) -> str:
    """A key that must be real when DEBUG is off: set, not the public development key, long."""
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. With DEBUG=0 Parley refuses to start on the public development key: "
            f"set {name} to a random string of at least {MIN_SECRET_KEY_LENGTH} characters, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(64))'"
        )
    if value == DEVELOPMENT_SECRET_KEY or value.startswith("django-insecure-") or len(value) < MIN_SECRET_KEY_LENGTH:
        raise ImproperlyConfigured(
            f"{name} is the public development key or shorter than {MIN_SECRET_KEY_LENGTH} characters; "
            "production needs a random key of its own."
        )
    return value


if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="") or DEVELOPMENT_SECRET_KEY
else:
    SECRET_KEY = production_secret("SECRET_KEY", env.str("SECRET_KEY", default=""))
# Keyed hashes of one-time codes (and the seal on queued SMS) use their own key, so rotating
# SECRET_KEY (sessions) does not invalidate codes in flight and a leak of one does not reveal
# the other. Derived from SECRET_KEY unless set, which is safe only because production's
# SECRET_KEY is checked above.
OTP_HASH_KEY = env.str("PARLEY_OTP_HASH_KEY", default="") or SECRET_KEY + ":otp"

PARLEY_DOMAIN = env.str("PARLEY_DOMAIN", default="parley.localhost")
PARLEY_PORT = env.str("PARLEY_PORT", default="8000")
PARLEY_SCHEME = env.str("PARLEY_SCHEME", default="http")
# Where a business's pages live: <slug>.<PARLEY_DOMAIN>. Used to build absolute URLs.
PARLEY_PUBLIC_URL = env.str(
    "PARLEY_PUBLIC_URL",
    default=f"{PARLEY_SCHEME}://{PARLEY_DOMAIN}" + (f":{PARLEY_PORT}" if PARLEY_PORT not in {"80", "443", ""} else ""),
)

ALLOWED_HOSTS = [f".{PARLEY_DOMAIN}", PARLEY_DOMAIN, "localhost", "127.0.0.1", "testserver"]
CSRF_TRUSTED_ORIGINS = [
    f"{PARLEY_SCHEME}://{PARLEY_DOMAIN}:{PARLEY_PORT}",
    f"{PARLEY_SCHEME}://*.{PARLEY_DOMAIN}:{PARLEY_PORT}",
    f"{PARLEY_SCHEME}://{PARLEY_DOMAIN}",
    f"{PARLEY_SCHEME}://*.{PARLEY_DOMAIN}",
]
# One login across the public site and every business subdomain.
SESSION_COOKIE_DOMAIN = f".{PARLEY_DOMAIN}"
CSRF_COOKIE_DOMAIN = f".{PARLEY_DOMAIN}"
SESSION_COOKIE_SAMESITE = "Lax"

# --- HTTPS -----------------------------------------------------------------------------------
# Served over https (PARLEY_SCHEME=https) the secure switches default on; each can be turned
# off by its own variable (e.g. while a TLS certificate is being set up).
HTTPS = PARLEY_SCHEME == "https"
SESSION_COOKIE_SECURE = env.bool("PARLEY_SECURE_COOKIES", default=HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env.bool("PARLEY_SSL_REDIRECT", default=HTTPS)
# Every business lives on a subdomain of PARLEY_DOMAIN, so HSTS covers them all.
SECURE_HSTS_SECONDS = env.int("PARLEY_HSTS_SECONDS", default=31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("PARLEY_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("PARLEY_HSTS_PRELOAD", default=HTTPS)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
if env.bool("PARLEY_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy on every response (Django's middleware). Scripts and styles come
# from our own static files; the few inline <style> blocks carry the per-request nonce; no
# inline script, no style attributes, no eval. PARLEY_CSP=report-only sends it as
# Content-Security-Policy-Report-Only, PARLEY_CSP=off not at all.
_PARLEY_HOSTS = [f"{PARLEY_SCHEME}://{PARLEY_DOMAIN}:*", f"{PARLEY_SCHEME}://*.{PARLEY_DOMAIN}:*"]
PARLEY_CSP_POLICY = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    # Forms post to this host or, e.g. log out, to the public host; Checkout is a redirect.
    "form-action": [CSP.SELF, *_PARLEY_HOSTS, "https://checkout.stripe.com", "https://billing.stripe.com"],
}
PARLEY_CSP = env.str("PARLEY_CSP", default="enforce")
if PARLEY_CSP not in {"enforce", "report-only", "off"}:
    raise ImproperlyConfigured("PARLEY_CSP must be one of enforce, report-only, off.")
SECURE_CSP = PARLEY_CSP_POLICY if PARLEY_CSP == "enforce" else {}
SECURE_CSP_REPORT_ONLY = PARLEY_CSP_POLICY if PARLEY_CSP == "report-only" else {}

SHARED_APPS = [
    "django_tenants",
    "tenancy",
    "accounts",
    "audit",
    "verification",
    "customers",
    "directory",
    "billing",
    "template_reviews",
    "config",  # composes the apps: seed_demo, rundemo
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",  # billing: exclusion constraint on conversation windows
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files (no CDN)
    "procrastinate.contrib.django",
    "channels",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "messaging",
    "notifications",
    "attachments",
    "assignment",
    "collab",
    "insights",
]
# Daphne's app only makes `runserver` serve websockets (development); loading it costs ~44 MiB per
# server process (Twisted, autobahn), which production (uvicorn, DEBUG off) does not need.
DAPHNE_RUNSERVER = env.bool("PARLEY_DAPHNE_RUNSERVER", default=DEBUG)
INSTALLED_APPS = (
    (["daphne"] if DAPHNE_RUNSERVER else []) + SHARED_APPS + [a for a in TENANT_APPS if a not in SHARED_APPS]
)

TENANT_MODEL = "tenancy.Business"
TENANT_DOMAIN_MODEL = "tenancy.Domain"
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ROOT_URLCONF = "config.urls_tenant"
# New businesses are cloned from this migrated template schema instead of replaying every
# migration (see tenancy.provisioning).
TENANT_BASE_SCHEMA = "tenant_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
# `SET search_path` only when the schema changes, not before every query. Safe here because every
# path sets the schema explicitly (middleware per request, `schema_context` per consumer call and
# job), setting a tenant always re-issues it, and a rollback forgets the cached path.
TENANT_LIMIT_SET_CALLS = True
# Sign-up renames one of this many spare schemas, copied from the template ahead of time
# (tenancy.spares), instead of copying the template while the owner waits; 0 turns it off.
PARLEY_SPARE_SCHEMAS = env.int("PARLEY_SPARE_SCHEMAS", default=3)
# Tenant migrations (`migrate_schemas --tenant`, parley_setup): tenancy.migration_executor builds
# Django's migration loader and states once per process instead of once per schema, and spreads
# the schemas over this many processes; after PARLEY_MIGRATION_MAX_FAILURES failed schemas it
# starts no more (the others continue until then; every failure is listed, the exit is non-zero).
GET_EXECUTOR_FUNCTION = "tenancy.migration_executor.executor_for"
TENANT_MULTIPROCESSING_MAX_PROCESSES = env.int("PARLEY_MIGRATION_PROCESSES", default=os.cpu_count() or 2)
PARLEY_MIGRATION_MAX_FAILURES = env.int("PARLEY_MIGRATION_MAX_FAILURES", default=10)
# Group commit of sends (messaging.group_commit): at most this many requests queued per business
# and process, written at most this many per transaction; a send that would wait longer than
# PARLEY_SEND_MAX_WAIT seconds is refused at once with `overloaded` and `retry_after`.
PARLEY_SEND_QUEUE_LIMIT = env.int("PARLEY_SEND_QUEUE_LIMIT", default=2000)
PARLEY_SEND_BATCH_MAX = env.int("PARLEY_SEND_BATCH_MAX", default=256)
PARLEY_SEND_MAX_WAIT = env.float("PARLEY_SEND_MAX_WAIT", default=0.5)
# Websocket sends: groups written at once per business and process (messaging.group_commit).
# One: with a server process per core the processes' writers already overlap, and each more
# writer is one more transaction waiting for the stream counter's row lock (measured, two
# processes at 500 msgs/s, alternating: customer → viewing agent p50 61–64 ms with one writer
# each, 84–88 ms with two).
PARLEY_SEND_WRITERS = env.int("PARLEY_SEND_WRITERS", default=1)

MIDDLEWARE = [
    "tenancy.middleware.BusinessHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "tenancy.middleware.BusinessMembershipMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenancy.context_processors.parley",
                "customers.context_processors.signed_in_customer",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "config.asgi.application"

# --- database ---------------------------------------------------------------------------
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR as root
    DATABASE_URL = env.str("DATABASE_URL", default="") or embedded_database_url()
# Connections per process (Daphne, each worker): see config/database.py and the README's
# "Database connections" for the sizing rule. PARLEY_DB_POOL=0 turns pooling off (one
# connection per request and per sync_to_async call, closed afterwards).
DATABASE_POOL = (
    pool_options(
        min_size=env.int("PARLEY_DB_POOL_MIN_SIZE", default=2),
        max_size=env.int("PARLEY_DB_POOL_MAX_SIZE", default=10),
        timeout=env.float("PARLEY_DB_POOL_TIMEOUT", default=20.0),
    )
    if env.bool("PARLEY_DB_POOL", default=True)
    else None
)
DATABASES = {"default": database_settings(DATABASE_URL, pool=DATABASE_POOL)}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis, cache, channels --------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Cache keys are never prefixed implicitly by the current schema: code that caches tenant data
# puts the schema in the key itself (DESIGN: every path carries the tenant explicitly).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "config.cache.SharedPoolRedisCache",  # one connection pool per process
            "LOCATION": REDIS_URL,
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "config.layers.PipelinedPubSubChannelLayer",
            # A prefix per deployment (or per test run) keeps pub/sub channels apart on one Redis.
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("PARLEY_CHANNEL_PREFIX", default="parley")},
        }
    }
else:
    # Several processes must agree on rate limits, so without Redis the cache is the database.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "parley_cache",
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Websocket consumers: database threads per process (each holds at most one connection, taken
# from the pool above, so keep it at or below PARLEY_DB_POOL_MAX_SIZE; see tenancy/db.py) and
# sends waiting or running per process before new ones get "overloaded".
PARLEY_DB_THREADS = env.int("PARLEY_DB_THREADS", default=8)
# Send groups written on the event loop's own thread at once per process, each slot with a
# connection of its own outside the pool, closed after PARLEY_LOOP_DB_KEEP_SECONDS without use
# (tenancy/loop_db.py).
PARLEY_LOOP_DB_SLOTS = env.int("PARLEY_LOOP_DB_SLOTS", default=2)
PARLEY_LOOP_DB_KEEP_SECONDS = env.float("PARLEY_LOOP_DB_KEEP_SECONDS", default=60.0)
# A send group's Python holds the loop's thread at most this long before it lets the loop take a
# turn (other sockets read, refusals answered) and goes on (tenancy.loop_db.let_the_loop_in).
PARLEY_LOOP_DB_SLICE = env.float("PARLEY_LOOP_DB_SLICE", default=0.005)
# A database thread keeps its connection while calls keep coming and gives it back after this
# many seconds without one (tenancy/db.py).
PARLEY_DB_KEEP_SECONDS = env.float("PARLEY_DB_KEEP_SECONDS", default=1.0)
# The GIL switch interval of a server process once its database threads start (tenancy/db.py:
# a thread whose query returned waits at most this long for the event loop to let it in).
PARLEY_GIL_SWITCH_INTERVAL = env.float("PARLEY_GIL_SWITCH_INTERVAL", default=0.0005)
# Sends a process holds at once (waiting for their worker, queued or being written) before a
# new one is refused: two full send groups. The business's own queue refuses by expected wait
# first (PARLEY_SEND_MAX_WAIT); this bounds the process across businesses. It was 8 per database thread (64): below what a process carries at 250 msgs/s
# (~100 ms each), so a hiccup of a few hundred milliseconds refused sends with 0.5 s or more to
# wait before their retry (issue 9: the 2–3 s maxima of the 500 msgs/s runs).
PARLEY_WS_MAX_SENDS = env.int("PARLEY_WS_MAX_SENDS", default=2 * PARLEY_SEND_BATCH_MAX)
# After this many websockets ended (and at most every PARLEY_MEMORY_TRIM_INTERVAL seconds) a
# server process collects garbage and trims malloc, so their memory goes back to the OS
# (config/memory.py; 0: never).
PARLEY_MEMORY_TRIM_AFTER_CLOSES = env.int("PARLEY_MEMORY_TRIM_AFTER_CLOSES", default=200)
PARLEY_MEMORY_TRIM_INTERVAL = env.float("PARLEY_MEMORY_TRIM_INTERVAL", default=10.0)
# A server process collects its youngest generation after this many more tracked objects were
# made than freed (CPython's default: 2,000; config/memory.py, `tune_collector`).
PARLEY_GC_YOUNG_THRESHOLD = env.int("PARLEY_GC_YOUNG_THRESHOLD", default=10_000)

# --- auth ---------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Logins, sign-up, email and two-factor (allauth) live in the "accounts" block at the end.

# --- i18n ---------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("de", _("German"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_DOMAIN = SESSION_COOKIE_DOMAIN
TIME_ZONE = "Europe/Berlin"
USE_I18N = True
USE_TZ = True

# --- static and media ---------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / ".staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("PARLEY_MEDIA_ROOT", default=str(BASE_DIR / ".media")))

# --- attachments (attachments/storage.py) ---------------------------------------------------
# Private files: never under MEDIA_ROOT (served as /media/ in development), only through
# short-lived signed URLs. A local folder by default; an S3-compatible bucket (django-storages)
# when PARLEY_S3_BUCKET is set.
PARLEY_ATTACHMENTS_ROOT = Path(env.str("PARLEY_ATTACHMENTS_ROOT", default=str(BASE_DIR / ".media-private")))
PARLEY_S3_BUCKET = env.str("PARLEY_S3_BUCKET", default="")
if PARLEY_S3_BUCKET:
    _ATTACHMENTS_STORAGE: dict[str, Any] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": PARLEY_S3_BUCKET,
            "endpoint_url": env.str("PARLEY_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("PARLEY_S3_REGION", default="") or None,
            "access_key": env.str("PARLEY_S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("PARLEY_S3_SECRET_ACCESS_KEY", default="") or None,
            "location": env.str("PARLEY_S3_PREFIX", default="attachments"),
            "default_acl": "private",
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
else:
    _ATTACHMENTS_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(PARLEY_ATTACHMENTS_ROOT), "base_url": None},
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "attachments": _ATTACHMENTS_STORAGE,
}
# Per kind, in bytes (WhatsApp's limits are 5 MB images, 16 MB audio, 100 MB documents).
PARLEY_ATTACHMENT_LIMITS = {
    "image": env.int("PARLEY_ATTACHMENT_IMAGE_MB", default=16) * 1024 * 1024,
    "audio": env.int("PARLEY_ATTACHMENT_AUDIO_MB", default=16) * 1024 * 1024,
    "document": env.int("PARLEY_ATTACHMENT_DOCUMENT_MB", default=16) * 1024 * 1024,
}
# How long a signed file URL works (seconds): the page asks again each time it shows the file.
PARLEY_ATTACHMENT_URL_SECONDS = env.int("PARLEY_ATTACHMENT_URL_SECONDS", default=300)
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's defaults, with its JSON parser refusing a too deeply nested document as malformed.
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Parley API",
    "DESCRIPTION": (
        "Send template notifications and read message statuses from your own systems. "
        "Authenticate with `Authorization: Bearer <key>` (create keys on your dashboard's API page). "
        "Every POST accepts an `Idempotency-Key` header: the same key gets the same answer for 24 hours. "
        "Errors are `application/problem+json` with a stable `code`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Outgoing webhooks may not call private or loopback addresses (SSRF) unless this allows it
# (development and tests, whose receivers run on 127.0.0.1).
PARLEY_WEBHOOKS_ALLOW_PRIVATE = env.bool("PARLEY_WEBHOOKS_ALLOW_PRIVATE", default=False)

# --- background jobs ------------------------------------------------------------------------
PROCRASTINATE_AUTODISCOVER_MODULE_NAME = "jobs"

# --- external systems -----------------------------------------------------------------------
PARLEY_SMS_BACKEND = env.str("PARLEY_SMS_BACKEND", default="outbox")
# Countries (ISO 3166 alpha-2) whose mobile numbers may be texted a one-time code: the markets
# Parley serves. Anything else is refused before a code is made (SMS pumping, issue 10).
PARLEY_SMS_COUNTRIES = frozenset(
    code.strip().upper()
    for code in env.list(
        "PARLEY_SMS_COUNTRIES",
        default=["DE", "AT", "CH", "LI", "LU", "NL", "BE", "FR", "IT", "ES", "PL", "DK", "GB", "IE", "US", "CA"],
    )
)
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_API_BASE = env.str("TWILIO_API_BASE", default="https://api.twilio.com")
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")  # tests point the SDK at a local server
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=20)
STRIPE_NETWORK_RETRIES = env.int("STRIPE_NETWORK_RETRIES", default=2)  # the SDK's own quick retries
# Backoff of the jobs that report usage to Stripe: base * 2^attempt seconds, capped; they never give up.
BILLING_RETRY_BASE_SECONDS = env.float("BILLING_RETRY_BASE_SECONDS", default=5)
BILLING_RETRY_MAX_SECONDS = env.float("BILLING_RETRY_MAX_SECONDS", default=3600)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"parley": {"level": "INFO"}},
}


# === accounts: allauth, admin login, email delivery ========================================
# (kept together so changes to the sections above merge cleanly)
LOGIN_URL = "account_login"
# The adapter (accounts.adapter) picks the landing page for the host the user is on; this is
# only the fallback for code that reads the setting directly.
LOGIN_REDIRECT_URL = "/"
ACCOUNT_ADAPTER = "accounts.adapter.ParleyAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
# Adds the display name customers see on replies (accounts.forms).
ACCOUNT_SIGNUP_FORM_CLASS = "accounts.forms.SignupDetailsForm"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
# Sign-up must not reveal whether an address is registered: the form always answers "check
# your mail", and the owner of an existing address gets a mail saying so. That only holds
# when nobody can log in before confirming their address, hence mandatory verification.
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_EMAIL_CONFIRMATION_EXPIRE_DAYS = 3
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "Parley: "
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_DEFAULT_HTTP_PROTOCOL = PARLEY_SCHEME
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Parley"

# Development stores mails for /dev/mailbox/ (accounts.mailbox); production sets EMAIL_BACKEND.
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="accounts.mailbox.MailboxBackend" if DEBUG else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Parley <no-reply@parley.localhost>")
