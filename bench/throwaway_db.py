"""A throwaway PostgreSQL database for one benchmark run, so a bench never touches real data.

    with throwaway_database(keep=args.keep):
        run(...)

Sets Django up, creates `bench_<random>` through the configured database, points the
default connection at it for the run and drops it afterwards (unless kept).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def throwaway_database(*, keep: bool = False) -> Iterator[str]:
    import django
    from django.conf import settings

    django.setup()
    from django.db import connection, connections

    name = f"bench_{uuid.uuid4().hex[:8]}"
    configured = settings.DATABASES["default"]["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    _close(connection)
    settings.DATABASES["default"]["NAME"] = name
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database()")
            assert cursor.fetchone()[0] == name, "the bench would write into the configured database"
        yield name
    finally:
        connections.close_all()
        _close(connection)
        settings.DATABASES["default"]["NAME"] = configured
        if keep:
            print(f"kept the bench database {name}")
        else:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _close(connection: Any) -> None:
    """Close the connection and its pool: psycopg's pool (PARLEY_DB_POOL, on by default) keeps the
    database it was opened for, so without this every query after the switch still went to the
    configured database instead of the throwaway one."""
    connection.close()
    close_pool = getattr(connection, "close_pool", None)
    if close_pool is not None:
        close_pool()
