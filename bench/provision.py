"""How long it takes to provision a business (schema copy, domain, owner seat).

Run: make bench   (or: .venv/bin/python bench/provision.py --count 200)
Creates businesses named bench-<run>-<n> in a throwaway database and prints seconds per
business (mean, p50, p99) with the spare pool off (each a copy of the template), then 10 sign-ups
that each take a spare schema made ready before (tenancy.spares), and what replaying migrations
would cost instead, for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench.throwaway_db import throwaway_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    args = parser.parse_args()

    with throwaway_database(keep=args.keep):
        run(args.count)


def run(count: int) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import User
    from tenancy.services import business_create
    from tenancy.spares import spares_discard_all, spares_refill

    started = time.perf_counter()
    call_command("parley_setup", verbosity=0)
    print(f"database set-up (shared migrations + template): {time.perf_counter() - started:.2f} s")
    settings.PARLEY_SPARE_SCHEMAS = 0  # copies: what sign-up costs without a spare (no refill job queued)
    spares_discard_all()

    owner = User.objects.create_user("bench-owner@example.com", "x" * 12)
    run_id = uuid.uuid4().hex[:4]
    timings = []
    for n in range(count):
        t0 = time.perf_counter()
        business_create(owner=owner, name=f"Bench {n}", slug=f"bench-{run_id}-{n}")
        timings.append(time.perf_counter() - t0)
    timings.sort()
    print(f"businesses provisioned: {count}")
    print(
        f"seconds per business: mean {statistics.mean(timings):.4f}  p50 {timings[len(timings) // 2]:.4f}  "
        f"p99 {timings[int(len(timings) * 0.99) - 1]:.4f}  total {sum(timings):.2f}"
    )

    spare_timings = []
    for n in range(10):
        spares_refill(size=1)  # the refill job's work, untimed
        t0 = time.perf_counter()
        business_create(owner=owner, name=f"Spare {n}", slug=f"bench-{run_id}-spare-{n}")
        spare_timings.append(time.perf_counter() - t0)
    spare_timings.sort()
    print(f"seconds per business taking a spare schema: p50 {spare_timings[5]:.4f}  max {spare_timings[-1]:.4f}")

    # For comparison: what django-tenants' default (replay every tenant migration) costs.
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "bench_replay"')
    call_command("migrate_schemas", tenant=True, schema_name="bench_replay", interactive=False, verbosity=0)
    connection.set_schema_to_public()  # type: ignore[attr-defined]
    print(f"replaying migrations instead: {time.perf_counter() - t0:.4f} s for one schema")


if __name__ == "__main__":
    main()
