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
    connection.close()
    settings.DATABASES["default"]["NAME"] = name
    try:
        yield name
    finally:
        connections.close_all()
        settings.DATABASES["default"]["NAME"] = configured
        if keep:
            print(f"kept the bench database {name}")
        else:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
