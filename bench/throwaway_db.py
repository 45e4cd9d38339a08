"""A throwaway PostgreSQL database for one benchmark run, so a bench never touches real data.

    with throwaway_database(keep=args.keep):
        run(...)

Sets Django up, creates `bench_<random>` through the configured database, points the
default connection at it for the run and drops it afterwards (unless kept). `reuse=NAME` points
at a database an earlier run kept instead (it must be a `bench_` one) and keeps it again, so a
bench with an expensive seed can skip it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def throwaway_database(*, keep: bool = False, reuse: str | None = None) -> Iterator[str]:
    import django
    from django.conf import settings

    django.setup()
    from django.db import connection, connections

    configured = settings.DATABASES["default"]["NAME"]
    if reuse is not None:
        # Only ever a bench database: reusing means keeping, and nothing real may be benchmarked on.
        if not re.fullmatch(r"bench_[0-9a-f]{8}", reuse):
            raise ValueError(f"{reuse!r} is not a bench database (bench_<8 hex digits>)")
        name, keep = reuse, True
    else:
        name = f"bench_{uuid.uuid4().hex[:8]}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    # A connection pool (DEBUG off) keeps the database it was opened on: close it, or every later
    # connection of the run would still go to the configured database instead of the throwaway one.
    close_pool = getattr(connection, "close_pool", None)
    if close_pool is not None:
        close_pool()
    settings.DATABASES["default"]["NAME"] = name
    connection.settings_dict["NAME"] = name
    try:
        yield name
    finally:
        connections.close_all()
        if close_pool is not None:
            close_pool()
        settings.DATABASES["default"]["NAME"] = configured
        connection.settings_dict["NAME"] = configured
        if keep:
            print(f"kept the bench database {name}")
        else:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
