"""1,000 businesses: provisioning (spare schemas vs the copy), a new migration on all of them, and
the inbox with them present.

Run: .venv/bin/python bench/tenants.py --count 1000        (make bench)
     .venv/bin/python bench/tenants.py --count 1000 --no-migrate --load '' --keep   # provisioning only
     .venv/bin/python bench/tenants.py --reuse bench_xxxxxxxx --no-migrate          # the inbox on a kept one
     .venv/bin/python bench/tenants.py --count 100 --executors parley,multiprocessing --load ''
                                                          # both executors on the same schemas
     .venv/bin/python bench/tenants.py --count 300 --signups 0 --load '' --fk-migrations \
         --executors parley@/tmp/migrate_before,parley    # the FK migrations: old tree vs this one

In a throwaway database (`bench_<random>`):
1. provisions --count businesses one after another with the spare pool off (every one a copy of
   the template: tenancy.services.business_create, the domain, the owner's seat) and prints the
   median and p99, overall and per 200;
2. with --count present, --signups rounds of two sign-ups each, one taking a spare schema (the
   pool refilled with one spare before, untimed: that is the refill job's work) and one with the
   pool empty (the copy), in alternating order, and prints both medians and p99s and what a
   spare's copy cost; then what the copy costs with and without its foreign keys into `public`
   (each 3 times, rolled back) and what a new connection's first read of accounts_user and an
   UPDATE of a user cost, with the referential triggers the copies added there;
3. applies a new tenant migration (bench.tenant_probe: a table with an index) to every business
   schema with `migrate_schemas --tenant --executor=<executor>` and prints the wall time, the
   CPU seconds of the command and its children, and how many schemas recorded the migration in
   their django_migrations. With a second executor in --executors, a second new migration
   (bench/tenant_probe/step2_migrations: a column and an index) is applied by it, on the same schemas;
   with --fk-migrations instead, the expensive kind: the real `*_no_constraints_into_public`
   migrations (5 migrations, 11 AlterFields of foreign keys into public as RunSQL + state
   operations) are made unapplied in every business schema (their reverse SQL puts the keys
   back, their django_migrations rows go; timed apart) and applied again by each executor in
   turn, with seconds per schema and the total extrapolated to 1,000. An executor written
   `parley@/path/to/tree` runs `manage.py` of another checkout (e.g. `git archive main`, .venv
   linked): before/after of the executor on the same schemas in one run;
4. runs bench/inbox_load.py with the same small load against that database (1,000 other
   businesses present) and against fresh ones (only the bench business), --inbox-runs times each
   (one business, then the 1,000, then one business again), and prints the latencies side by side (send: customer → agent, agent → customer,
   send → accepted; list: how stale the agents' inbox list is behind a new message).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
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


def ms(values: list[float]) -> str:
    values = sorted(values)
    return (
        f"median {statistics.median(values) * 1000:.0f} ms  p99 {values[math.ceil(len(values) * 0.99) - 1] * 1000:.0f} ms"
        f"  (n={len(values)})"
    )


def provision(count: int, *, reuse: bool = False) -> list[float]:
    """Provision businesses until `count` exist (all of them, or the rest on a reused database)."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from accounts.models import User
    from tenancy.models import Business
    from tenancy.services import business_create
    from tenancy.spares import spares_discard_all

    started = time.perf_counter()
    call_command("parley_setup", verbosity=0)
    print(f"database set-up (shared migrations + template): {time.perf_counter() - started:.1f} s", flush=True)
    # The pool off: every business below is a copy of the template (what sign-up costs without it).
    settings.PARLEY_SPARE_SCHEMAS = 0
    spares_discard_all()
    if reuse:
        owner = User.objects.get(email="tenants-owner@example.com")
    else:
        owner = User.objects.create_user("tenants-owner@example.com", "x" * 16)
        copy_probe()  # with no business yet
    first = Business.objects.filter(slug__startswith="tenant-").count()
    timings: list[float] = []
    for n in range(first, count):
        t0 = time.perf_counter()
        business_create(owner=owner, name=f"Tenant {n}", slug=f"tenant-{n}")
        timings.append(time.perf_counter() - t0)
        if (n + 1) % 100 == 0:
            print(f"  {n + 1} provisioned; the last 100: {ms(timings[-100:])}", flush=True)
    return timings


def pool_vs_copy(rounds: int) -> None:
    """Sign-ups with the pool (a spare renamed) and without (the copy), alternating, at the
    number of businesses present now."""
    from django.conf import settings
    from django.db import connection

    from accounts.models import User
    from tenancy.models import Business
    from tenancy.provisioning import template_schema
    from tenancy.services import business_create
    from tenancy.spares import migrations_fingerprint, spares_refill

    settings.PARLEY_SPARE_SCHEMAS = 0  # no refill job queued: the refill is done here, untimed
    owner = User.objects.get(email="tenants-owner@example.com")
    present = Business.objects.exclude(schema_name="public").count()
    run = uuid.uuid4().hex[:4]
    spare_times: list[float] = []
    copy_times: list[float] = []
    refill_times: list[float] = []
    current = migrations_fingerprint(template_schema())
    for n in range(rounds):
        t0 = time.perf_counter()
        spares_refill(size=1)
        refill_times.append(time.perf_counter() - t0)
        for kind in ("spare", "copy") if n % 2 == 0 else ("copy", "spare"):
            if kind == "copy":
                with connection.cursor() as cursor:  # the pool empty: forget the spare for a moment
                    cursor.execute("UPDATE tenancy_spareschema SET migrations = 'hidden'")
            t0 = time.perf_counter()
            business = business_create(owner=owner, name=f"Signup {kind} {n}", slug=f"signup-{run}-{kind}-{n}")
            (spare_times if kind == "spare" else copy_times).append(time.perf_counter() - t0)
            if kind == "copy":
                with connection.cursor() as cursor:
                    cursor.execute("UPDATE tenancy_spareschema SET migrations = %s", [current])
            assert business.schema_name
    print(f"sign-up with {present} businesses present, {rounds} of each, alternating:", flush=True)
    print(f"  with the pool (a spare renamed): {ms(spare_times)}", flush=True)
    print(f"  without (the template copied):   {ms(copy_times)}", flush=True)
    print(f"  the refill job's copy of a spare: {ms(refill_times)}", flush=True)


PHASES = ("tables and rows", "primary and unique keys", "indexes", "foreign keys", "functions", "triggers", "sequences")


def copy_probe() -> None:
    """Where the copy's time goes now (per phase), what it costs without its foreign keys into
    public and with the copy function before tenancy 0007 (bench/clone_schema_before.sql), and what the referential triggers those keys add to accounts_user cost elsewhere.
    Each copy runs 3 times in a transaction that is rolled back."""
    import psycopg
    from django.db import connection

    from tenancy.provisioning import CLONE_FUNCTION_SQL

    without_fks = CLONE_FUNCTION_SQL.replace(
        "public.parley_clone_schema", "public.bench_clone_without_public_fks"
    ).replace(
        "WHERE n.nspname = source AND con.contype = 'f'",
        "WHERE n.nspname = source AND con.contype = 'f' AND tn.nspname = source",
    )
    assert without_fks != CLONE_FUNCTION_SQL
    # The same function with a notice (the clock) before each of its loops and at its end.
    lines = []
    for line in CLONE_FUNCTION_SQL.replace("public.parley_clone_schema", "public.bench_clone_phased").split("\n"):
        if line.startswith(("    FOR ", "END;")):
            lines.append("    RAISE NOTICE '%', clock_timestamp();")
        lines.append(line)
    phased = "\n".join(lines)
    url = database_url(connection.settings_dict["NAME"])
    before_sql = (ROOT / "bench" / "clone_schema_before.sql").read_text()
    full: list[float] = []
    without: list[float] = []
    before: list[float] = []
    phases: list[list[float]] = [[] for _ in PHASES]
    notices: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.accounts_user'::regclass"
        ).fetchone()[0]  # type: ignore[index]
        customer_triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.accounts_customer'::regclass"
        ).fetchone()[0]  # type: ignore[index]
        for _n in range(3):
            for function, into in (
                ("parley_clone_schema", full),
                ("bench_clone_without_public_fks", without),
                ("bench_clone_before", before),
                ("bench_clone_phased", None),
            ):
                conn.execute("BEGIN")
                conn.execute(before_sql)
                conn.execute(without_fks)
                conn.execute(phased)
                notices.clear()
                t0 = time.perf_counter()
                conn.execute(f"SELECT public.{function}('tenant_template', 'bench_copy_probe')")
                if into is not None:
                    into.append(time.perf_counter() - t0)
                else:
                    stamps = [conn.execute("SELECT %s::timestamptz", [n]).fetchone()[0] for n in notices]  # type: ignore[index]
                    for index, (a, b) in enumerate(itertools.pairwise(stamps)):
                        phases[index].append((b - a).total_seconds())
                conn.execute("ROLLBACK")
    first, update = [], []
    for _n in range(5):
        with psycopg.connect(url, autocommit=True) as fresh:
            t0 = time.perf_counter()
            fresh.execute("SELECT id FROM accounts_user LIMIT 1").fetchall()
            first.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fresh.execute("UPDATE accounts_user SET last_login = now() WHERE email = 'tenants-owner@example.com'")
            update.append(time.perf_counter() - t0)
    split = ", ".join(
        f"{label} {statistics.median(values) * 1000:.0f}"
        for label, values in zip(PHASES, phases, strict=True)
        if values
    )
    print(
        f"the copy: {ms(full)}; without its foreign keys into public: {ms(without)}; "
        f"the copy function before tenancy 0007: {ms(before)}\n"
        f"  per phase (ms, median of 3): {split}\n"
        f"  referential triggers on accounts_user {triggers}, on accounts_customer {customer_triggers}; "
        f"a new connection's first read of accounts_user {ms(first)}; UPDATE of one user {ms(update)}",
        flush=True,
    )


def migrate_all(database: str, executor: str, processes: int, step: int) -> tuple[float, float]:
    """Wall and CPU seconds (the command and every child it waited for) of one migrate_schemas.
    `executor` may name another checkout's manage.py: `parley@/tmp/migrate_before`. Step 0: no
    probe app (the --fk-migrations measurement)."""
    executor, _at, tree = executor.partition("@")
    env = dict(
        os.environ,
        DATABASE_URL=database_url(database),
        DJANGO_SETTINGS_MODULE="bench.tenants_settings" if step else "config.settings",
        PARLEY_MIGRATION_PROCESSES=str(processes),
        PARLEY_PROBE_STEP=str(step),
    )
    command = [sys.executable, "manage.py", "migrate_schemas", "--tenant", f"--executor={executor}", "--verbosity=0"]
    t0 = time.perf_counter()
    child = subprocess.Popen(command, cwd=Path(tree) if tree else ROOT, env=env, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"migrate_schemas --executor={executor} failed ({os.waitstatus_to_exitcode(status)})")
    return seconds, usage.ru_utime + usage.ru_stime


def fk_migrations() -> list[tuple[str, str, str]]:
    """(app, migration, its reverse SQL) of every `*_no_constraints_into_public` migration."""
    from importlib import import_module

    found = []
    for path in sorted(ROOT.glob("*/migrations/*_no_constraints_into_public.py")):
        app, name = path.parent.parent.name, path.stem
        operations = import_module(f"{app}.migrations.{name}").Migration.operations
        found.append((app, name, ";\n".join(str(operation.reverse_sql) for operation in operations)))
    return found


def unapply_fk_migrations(migrations: list[tuple[str, str, str]]) -> None:
    """In every business schema: the foreign keys into public back and the migrations' rows gone,
    as if they had never been applied (they are each app's last migration)."""
    from django.db import connection, transaction

    from tenancy.models import Business

    schemas = list(Business.objects.exclude(schema_name="public").values_list("schema_name", flat=True))
    with connection.cursor() as cursor:
        for schema in schemas:
            with transaction.atomic():
                cursor.execute(f'SET LOCAL search_path TO "{schema}", public')
                for app, name, reverse in migrations:
                    cursor.execute(reverse)
                    cursor.execute(
                        f'DELETE FROM "{schema}".django_migrations WHERE app = %s AND name = %s', [app, name]
                    )


def fk_migrations_recorded(migrations: list[tuple[str, str, str]]) -> tuple[int, int, int]:
    """(business schemas with all of them recorded, business schemas, foreign keys into public
    left in business schemas)."""
    from django.db import connection

    from tenancy.models import Business

    schemas = list(Business.objects.exclude(schema_name="public").values_list("schema_name", flat=True))
    complete = 0
    with connection.cursor() as cursor:
        for schema in schemas:
            cursor.execute(
                f'SELECT count(*) FROM "{schema}".django_migrations WHERE (app, name) IN ('
                + ", ".join(["(%s, %s)"] * len(migrations))
                + ")",
                [value for app, name, _reverse in migrations for value in (app, name)],
            )
            complete += cursor.fetchone()[0] == len(migrations)
        cursor.execute(
            "SELECT count(*) FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE con.contype = 'f' AND n.nspname <> 'public' "
            "AND con.confrelid IN ('public.accounts_user'::regclass, 'public.accounts_customer'::regclass) "
            "AND n.nspname IN (SELECT schema_name FROM tenancy_business)"
        )
        keys = cursor.fetchone()[0]
    return complete, len(schemas), keys


def measure_fk_migrations(database: str, executors: list[str], processes: int) -> None:
    migrations = fk_migrations()
    operations = sum(reverse.count("ADD CONSTRAINT") for _app, _name, reverse in migrations)
    for executor in executors:
        t0 = time.perf_counter()
        unapply_fk_migrations(migrations)
        unapplied = time.perf_counter() - t0
        before = fk_migrations_recorded(migrations)
        seconds, cpu = migrate_all(database, executor, processes, 0)
        complete, schemas, keys = fk_migrations_recorded(migrations)
        print(
            f"the {len(migrations)} *_no_constraints_into_public migrations ({operations} foreign keys) on "
            f"{schemas} business schemas (made unapplied in {unapplied:.0f} s: {before[2]} keys back, recorded "
            f"complete in {before[0]}), executor={executor} ({processes} processes): {seconds:.1f} s wall, "
            f"{cpu:.1f} CPU-s; per schema {seconds / max(schemas, 1) * 1000:.0f} ms wall, "
            f"{cpu / max(schemas, 1) * 1000:.0f} CPU-ms; at 1,000 schemas ≈ {seconds / max(schemas, 1) * 1000:.0f} s; "
            f"recorded in {complete} of {schemas} schemas, {keys} keys into public left",
            flush=True,
        )


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


def inbox(database: str | None, load: list[str]) -> list[dict[str, float]]:
    """One inbox_load run (each of its --rates one measurement): against `database` (already set
    up; a later run there reuses the bench business the first one made) or a fresh one."""
    command = [sys.executable, "bench/inbox_load.py", *load]
    if database:
        command += ["--database", database]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return [
        json.loads(line.removeprefix("figures: "))["parley"]
        for line in done.stdout.splitlines()
        if line.startswith("figures: ")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument(
        "--executors",
        default="parley",
        help="migrate_schemas executors, comma-separated (at most 2): parley (tenancy.migration_executor), "
        "multiprocessing, standard; <executor>@<checkout> runs another checkout's manage.py",
    )
    parser.add_argument("--migrate-processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--load",
        default="--customers 100 --agents 10 --rate 20 --duration 20",
        help="inbox_load.py arguments for the latency comparison ('' skips it)",
    )
    parser.add_argument("--no-migrate", action="store_true", help="skip the new-migration measurement")
    parser.add_argument(
        "--fk-migrations",
        action="store_true",
        help="measure the real *_no_constraints_into_public migrations (made unapplied before each executor) "
        "instead of the probe migrations",
    )
    parser.add_argument("--signups", type=int, default=30, help="sign-up rounds with the pool vs without (0 skips)")
    parser.add_argument("--inbox-runs", type=int, default=2, help="inbox_load runs on each database, alternating")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--reuse", default="", help="a database kept by --keep: provision only up to --count, measure on it (kept)"
    )
    args = parser.parse_args()
    os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)
    os.environ["DEBUG"] = "0"

    database = args.reuse or create_database()
    os.environ["DATABASE_URL"] = database_url(database)
    keep = args.keep or bool(args.reuse)
    try:
        timings = provision(args.count, reuse=bool(args.reuse))
        if timings:
            print(
                f"provisioning up to {args.count} businesses (copies, pool off): {ms(timings)}  "
                f"total {sum(timings):.0f} s",
                flush=True,
            )
        if args.signups:
            pool_vs_copy(args.signups)
            copy_probe()
        if args.fk_migrations and not args.no_migrate:
            measure_fk_migrations(database, args.executors.split(","), args.migrate_processes)
        elif not args.no_migrate:
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
            from tenancy.models import Business

            present = Business.objects.exclude(schema_name="public").count()
            load = args.load.split()
            rate = load[load.index("--rate") + 1] if "--rate" in load else "20"
            # The database with the businesses: one inbox_load with the rate repeated (its set-up
            # once), bracketed by fresh one-business runs.
            runs: dict[str, list[dict[str, float]]] = {"many": [], "one": []}
            runs["one"] += inbox(None, load)
            runs["many"] += inbox(database, [*load, "--rates", ",".join([rate] * args.inbox_runs)])
            if args.inbox_runs > 1:
                runs["one"] += inbox(None, [*load, "--rates", ",".join([rate] * (args.inbox_runs - 1))])
            print(
                f"inbox latency ({args.load}; {args.inbox_runs} run(s) each: one business, {present}, one business), "
                f"{present} other businesses present vs none (median of the runs' figures):"
            )
            for key, label in (
                ("c2a_p50", "send: p50 customer → viewing agent"),
                ("c2a_p99", "send: p99 customer → viewing agent"),
                ("a2c_p99", "send: p99 agent → customer"),
                ("accept_p99", "send: p99 send → accepted"),
                ("stale_p99", "list: p99 inbox list behind a new message"),
            ):
                many_values = [r[key] for r in runs["many"] if r.get(key) is not None]
                one_values = [r[key] for r in runs["one"] if r.get(key) is not None]
                a = statistics.median(many_values) if many_values else None
                b = statistics.median(one_values) if one_values else None
                ratio = f"{a / b:.2f}×" if a and b else "n/a"
                print(f"  {label}: {a * 1000 if a else 0:.1f} ms vs {b * 1000 if b else 0:.1f} ms ({ratio})")
    finally:
        if keep:
            print(f"kept the bench database {database}")
        else:
            drop_database(database)


if __name__ == "__main__":
    main()
