"""1,000 businesses: provisioning, a new migration on all of them, and the inbox with them present.

Run: .venv/bin/python bench/tenants.py --count 1000        (make bench)
     .venv/bin/python bench/tenants.py --count 100 --executors parley,multiprocessing --load ''
                                                          # both executors on the same schemas

In a throwaway database (`bench_<random>`):
1. provisions --count businesses one after another (tenancy.services.business_create: a copy of
   the template schema, the domain, the owner's seat) and prints the median and p99;
2. applies a new tenant migration (bench.tenant_probe: a table with an index) to every business
   schema with `migrate_schemas --tenant --executor=<executor>` and prints the wall time, the
   CPU seconds of the command and its children, and how many schemas recorded the migration in
   their django_migrations. With a second executor in --executors, a second new migration
   (bench/tenant_probe/step2_migrations: a column and an index) is applied by it, on the same schemas;
3. runs bench/inbox_load.py with the same small load against that database (1,000 other
   businesses present) and against a fresh one (only the bench business), and prints the
   latencies side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench.inbox_load import create_database, database_url, drop_database  # noqa: E402

PROBE_MIGRATIONS = ("0001_initial", "0002_probe_note")


def provision(count: int) -> list[float]:
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import User
    from tenancy.services import business_create

    started = time.perf_counter()
    call_command("parley_setup", verbosity=0)
    print(f"database set-up (shared migrations + template): {time.perf_counter() - started:.1f} s", flush=True)
    owner = User.objects.create_user("tenants-owner@example.com", "x" * 16)
    timings = []
    for n in range(count):
        t0 = time.perf_counter()
        business_create(owner=owner, name=f"Tenant {n}", slug=f"tenant-{n}")
        timings.append(time.perf_counter() - t0)
        if n and n % 200 == 0:
            print(f"  {n} provisioned, median so far {statistics.median(timings) * 1000:.0f} ms", flush=True)
    return timings


def migrate_all(database: str, executor: str, processes: int, step: int) -> tuple[float, float]:
    """Wall and CPU seconds (the command and every child it waited for) of one migrate_schemas."""
    env = dict(
        os.environ,
        DATABASE_URL=database_url(database),
        DJANGO_SETTINGS_MODULE="bench.tenants_settings",
        PARLEY_MIGRATION_PROCESSES=str(processes),
        PARLEY_PROBE_STEP=str(step),
    )
    command = [sys.executable, "manage.py", "migrate_schemas", "--tenant", f"--executor={executor}", "--verbosity=0"]
    t0 = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"migrate_schemas --executor={executor} failed ({os.waitstatus_to_exitcode(status)})")
    return seconds, usage.ru_utime + usage.ru_stime


def recorded_schemas(migration: str) -> tuple[int, int]:
    """(business schemas whose django_migrations has tenant_probe.<migration>, business schemas)."""
    from django.db import connection

    from tenancy.models import Business

    schemas = list(Business.objects.exclude(schema_name="public").values_list("schema_name", flat=True))
    with connection.cursor() as cursor:
        found = 0
        for schema in schemas:
            cursor.execute(
                f'SELECT count(*) FROM "{schema}".django_migrations WHERE app = %s AND name = %s',
                ["tenant_probe", migration],
            )
            found += cursor.fetchone()[0]
    return found, len(schemas)


def inbox(database: str | None, load: list[str]) -> dict[str, float]:
    command = [sys.executable, "bench/inbox_load.py", *load]
    if database:
        command += ["--database", database]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    figures_line = next(line for line in done.stdout.splitlines() if line.startswith("figures: "))
    figures: dict[str, float] = json.loads(figures_line.removeprefix("figures: "))["parley"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument(
        "--executors",
        default="parley",
        help="migrate_schemas executors, comma-separated (at most 2): parley (tenancy.migration_executor), "
        "multiprocessing, standard",
    )
    parser.add_argument("--migrate-processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--load",
        default="--customers 100 --agents 10 --rate 20 --duration 20",
        help="inbox_load.py arguments for the latency comparison ('' skips it)",
    )
    parser.add_argument("--no-migrate", action="store_true", help="skip the new-migration measurement")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)
    os.environ["DEBUG"] = "0"

    database = create_database()
    os.environ["DATABASE_URL"] = database_url(database)
    try:
        timings = sorted(provision(args.count))
        print(
            f"provisioning {args.count} businesses: median {statistics.median(timings) * 1000:.0f} ms  "
            f"p99 {timings[int(len(timings) * 0.99) - 1] * 1000:.0f} ms  total {sum(timings):.0f} s",
            flush=True,
        )
        if not args.no_migrate:
            executors = args.executors.split(",")
            if len(executors) > 2:
                raise SystemExit("at most 2 executors (there are 2 probe migrations)")
            for step, executor in enumerate(executors, start=1):
                seconds, cpu = migrate_all(database, executor, args.migrate_processes, step)
                found, schemas = recorded_schemas(PROBE_MIGRATIONS[step - 1])
                print(
                    f"new migration {step} ({PROBE_MIGRATIONS[step - 1]}) on {schemas} business schemas, "
                    f"executor={executor} ({args.migrate_processes} processes): {seconds:.1f} s wall, "
                    f"{cpu:.1f} CPU-s, {seconds / max(schemas, 1) * 1000:.0f} ms per schema; "
                    f"recorded in {found} of {schemas} schemas",
                    flush=True,
                )
        if args.load:
            load = args.load.split()
            many = inbox(database, load)
            one = inbox(None, load)
            print(f"inbox latency ({args.load}), {args.count} other businesses present vs none:")
            for key, label in (("c2a_p99", "p99 customer → viewing agent"), ("a2c_p99", "p99 agent → customer")):
                a, b = many.get(key), one.get(key)
                ratio = f"{a / b:.2f}×" if a and b else "n/a"
                print(f"  {label}: {a * 1000 if a else 0:.0f} ms vs {b * 1000 if b else 0:.0f} ms ({ratio})")
    finally:
        if args.keep:
            print(f"kept the bench database {database}")
        else:
            drop_database(database)


if __name__ == "__main__":
    main()
