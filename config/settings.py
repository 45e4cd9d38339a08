"""Parley settings: one module, every environment switch read from the environment.

Safe development defaults everywhere; production sets DEBUG=0, SECRET_KEY, DATABASE_URL,
REDIS_URL, STRIPE_* and PARLEY_SMS_BACKEND.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import django_stubs_ext
from django.utils.translation import gettext_lazy as _

from config.database import database_settings, embedded_database_url

# Lets admin and other generic classes be subscripted at run time, as the type stubs expect.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-insecure-key-change-me-in-production-0123456789")
# Keyed hashes of one-time codes use their own key, so rotating SECRET_KEY (sessions) does
# not invalidate codes in flight and a leak of one does not reveal the other.
OTP_HASH_KEY = os.environ.get("PARLEY_OTP_HASH_KEY", SECRET_KEY + ":otp")

PARLEY_DOMAIN = os.environ.get("PARLEY_DOMAIN", "parley.localhost")
PARLEY_PORT = os.environ.get("PARLEY_PORT", "8000")
PARLEY_SCHEME = os.environ.get("PARLEY_SCHEME", "http")
# Where a business's pages live: <slug>.<PARLEY_DOMAIN>. Used to build absolute URLs.
PARLEY_PUBLIC_URL = os.environ.get(
    "PARLEY_PUBLIC_URL",
    f"{PARLEY_SCHEME}://{PARLEY_DOMAIN}" + (f":{PARLEY_PORT}" if PARLEY_PORT not in {"80", "443", ""} else ""),
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
SESSION_COOKIE_SECURE = PARLEY_SCHEME == "https"
CSRF_COOKIE_SECURE = PARLEY_SCHEME == "https"
SESSION_COOKIE_SAMESITE = "Lax"

SHARED_APPS = [
    "django_tenants",
    "tenancy",
    "accounts",
    "audit",
    "verification",
    "customers",
    "directory",
    "billing",
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
    "procrastinate.contrib.django",
    "channels",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "messaging",
]
INSTALLED_APPS = ["daphne"] + SHARED_APPS + [a for a in TENANT_APPS if a not in SHARED_APPS]

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
# Group commit of sends (messaging.group_commit): at most this many requests queued per business
# and process, written at most this many per transaction; a send that would wait longer than
# PARLEY_SEND_MAX_WAIT seconds is refused at once with `overloaded` and `retry_after`.
PARLEY_SEND_QUEUE_LIMIT = int(os.environ.get("PARLEY_SEND_QUEUE_LIMIT", "2000"))
PARLEY_SEND_BATCH_MAX = int(os.environ.get("PARLEY_SEND_BATCH_MAX", "256"))
PARLEY_SEND_MAX_WAIT = float(os.environ.get("PARLEY_SEND_MAX_WAIT", "0.5"))

MIDDLEWARE = [
    "tenancy.middleware.BusinessHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
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
    DATABASE_URL = os.environ.get("DATABASE_URL") or embedded_database_url()
DATABASES = {"default": database_settings(DATABASE_URL)}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis, cache, channels --------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
# Cache keys are never prefixed implicitly by the current schema: code that caches tenant data
# puts the schema in the key itself (DESIGN: every path carries the tenant explicitly).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # A prefix per deployment (or per test run) keeps pub/sub channels apart on one Redis.
            "CONFIG": {"hosts": [REDIS_URL], "prefix": os.environ.get("PARLEY_CHANNEL_PREFIX", "parley")},
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

# Websocket consumers: database threads per process (each holds at most one connection; see
# tenancy/db.py) and sends waiting or running per process before new ones get "overloaded".
PARLEY_DB_THREADS = int(os.environ.get("PARLEY_DB_THREADS", "8"))
PARLEY_WS_MAX_SENDS = int(os.environ.get("PARLEY_WS_MAX_SENDS", str(PARLEY_DB_THREADS * 8)))

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
MEDIA_ROOT = Path(os.environ.get("PARLEY_MEDIA_ROOT", BASE_DIR / ".media"))
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Parley API",
    "DESCRIPTION": "Send template notifications and read message statuses.",
    "VERSION": "1.0.0",
}

# --- background jobs ------------------------------------------------------------------------
PROCRASTINATE_AUTODISCOVER_MODULE_NAME = "jobs"

# --- external systems -----------------------------------------------------------------------
PARLEY_SMS_BACKEND = os.environ.get("PARLEY_SMS_BACKEND", "outbox")
TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
TWILIO_FROM_NUMBER = os.environ.get("TWILIO_FROM_NUMBER", "")
TWILIO_API_BASE = os.environ.get("TWILIO_API_BASE", "https://api.twilio.com")
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")  # tests point the SDK at a local server
STRIPE_TIMEOUT_SECONDS = float(os.environ.get("STRIPE_TIMEOUT_SECONDS", "20"))
STRIPE_NETWORK_RETRIES = int(os.environ.get("STRIPE_NETWORK_RETRIES", "2"))  # the SDK's own quick retries
# Backoff of the jobs that report usage to Stripe: base * 2^attempt seconds, capped; they never give up.
BILLING_RETRY_BASE_SECONDS = float(os.environ.get("BILLING_RETRY_BASE_SECONDS", "5"))
BILLING_RETRY_MAX_SECONDS = float(os.environ.get("BILLING_RETRY_MAX_SECONDS", "3600"))

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
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "accounts.mailbox.MailboxBackend" if DEBUG else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Parley <no-reply@parley.localhost>")
