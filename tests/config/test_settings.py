"""Settings fail closed (issue 10, defect 4): production refuses the public development key,
`check --deploy` is clean under the README's production variables, and every page carries a
Content-Security-Policy."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings

from config.database import database_settings, pool_options
from tests.conftest import ROOT, World, business_client, public_client

# The README's "Production" variables (with a stand-in host and key).
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "PARLEY_SCHEME": "https",
    "PARLEY_DOMAIN": "parley.example",
    "PARLEY_PORT": "443",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "PARLEY_OTP_HASH_KEY"}}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("secret", "complaint"),
    [
        (None, "SECRET_KEY is not set"),
        ("", "SECRET_KEY is not set"),
        ("dev-only-insecure-key-change-me-in-production-0123456789", "public development key"),
        ("short-key", "public development key or shorter than 50"),
    ],
)
def test_production_refuses_to_start_without_a_real_secret_key(secret: str | None, complaint: str) -> None:
    env = dict(PRODUCTION_ENV)
    env.pop("SECRET_KEY")
    if secret is not None:
        env["SECRET_KEY"] = secret
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert complaint in result.stderr


def test_check_deploy_is_clean_under_the_production_variables() -> None:
    result = manage("check", "--deploy", "--fail-level", "DEBUG", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout + result.stderr


def test_https_switches_follow_the_scheme_and_can_be_turned_off() -> None:
    code = (
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS,"
        " s.SECURE_HSTS_INCLUDE_SUBDOMAINS, bool(s.SECURE_CSP), bool(s.SECURE_CSP_REPORT_ONLY))"
    )
    on = manage("shell", "--no-imports", "-c", code, env=PRODUCTION_ENV)
    assert on.stdout.split() == ["True", "True", "True", "31536000", "True", "True", "False"], on.stderr
    off = manage(
        "shell",
        "--no-imports",
        "-c",
        code,
        env={**PRODUCTION_ENV, "PARLEY_SSL_REDIRECT": "0", "PARLEY_HSTS_SECONDS": "0", "PARLEY_CSP": "report-only"},
    )
    assert off.stdout.split() == ["True", "True", "False", "0", "True", "False", "True"], off.stderr


def test_one_time_code_key_is_derived_from_the_real_key_in_production() -> None:
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(s.OTP_HASH_KEY)",
        env=PRODUCTION_ENV,
    )
    assert result.stdout.strip() == PRODUCTION_ENV["SECRET_KEY"] + ":otp"
    assert "dev-only" not in result.stdout


def test_every_page_has_a_content_security_policy_with_a_fresh_nonce(world: World) -> None:
    pages = [
        public_client().get("/"),
        public_client().get("/pricing/"),
        public_client().get("/accounts/login/"),
        business_client(world.business_a, world.owner_a).get("/"),
        business_client(world.business_a, world.owner_a).get("/billing/"),
        business_client(world.business_a, world.owner_a).get("/inbox/"),
    ]
    nonces: list[str] = []
    for response in pages:
        assert response.status_code == 200
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        html = response.content.decode()
        # No style attributes (a strict style-src blocks them); every inline <style>/<script> is nonced.
        assert " style=" not in html, [line for line in html.splitlines() if " style=" in line][:3]
        inline_blocks = [chunk.split(">")[0] for tag in ("<style", "<script>") for chunk in html.split(tag)[1:]]
        if not inline_blocks:
            # Django only adds a nonce to the header when the page used one.
            assert "'nonce-" not in policy
            continue
        script_src = next(part for part in policy.split(";") if part.strip().startswith("script-src"))
        nonce = script_src.split("'nonce-")[1].split("'")[0]
        nonces.append(nonce)
        for opening in inline_blocks:
            assert f'nonce="{nonce}"' in opening, f"inline block without the nonce: {opening!r}"
    assert nonces, "the billing page has an inline <style>: it must have used the nonce"
    assert len(set(nonces)) == len(nonces), "a nonce was reused across responses"


def test_database_url_keeps_socket_directories_and_pools_without_persistent_connections() -> None:
    pool = pool_options(min_size=1, max_size=3, timeout=5)
    embedded = database_settings("postgresql://postgres@/parley?host=/tmp/pg-socket&sslmode=disable", pool=pool)
    assert embedded["HOST"] == "/tmp/pg-socket"
    assert embedded["NAME"] == "parley"
    assert embedded["ENGINE"] == "django_tenants.postgresql_backend"
    # prepare_threshold 0: server-binding cursors (config.sql.prepared_cursor) prepare at once;
    # Django's own cursors bind client-side and never prepare.
    assert embedded["OPTIONS"] == {"sslmode": "disable", "pool": pool, "prepare_threshold": 0}
    assert embedded["CONN_MAX_AGE"] == 0
    tcp = database_settings("postgres://app:s%40cret@db.internal:6543/parley", pool=None)
    assert (tcp["HOST"], tcp["PORT"], tcp["USER"], tcp["PASSWORD"]) == ("db.internal", "6543", "app", "s@cret")
    assert "pool" not in tcp["OPTIONS"]
    assert tcp["OPTIONS"]["prepare_threshold"] == 0
    # The running configuration: pooled, never persistent (Django refuses both at once).
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == 0
    assert settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"] >= 1
