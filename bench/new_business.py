"""A new business's first seconds at full rate: PostgreSQL's CPU per send group as its tables grow.

Run: .venv/bin/python bench/new_business.py [--seconds 40] [--group-size 3] [--every 5] [--messages N]

Uses a throwaway database (like bench/send_core.py) and one new business. For --seconds it sends
groups of --group-size template messages (at most --messages) to customers it never wrote to before (an airline's
first notification run: every message makes a conversation and a contact) through the send
core's writer, one group after another, and every --every seconds prints the messages written,
groups per second and the CPU its PostgreSQL backend spent per group (from /proc: the figure the
machine's load distorts least). A queued `messaging.tables_analyze` is run at once, as a worker
would (checked every 20 groups); the run ends with the message counts it ran at.

Why: a new schema's tables have no planner statistics until autovacuum's next round, and a
prepared statement keeps the plan it made until its tables are analyzed again, so a business's
early plans scanned whole tables in every group (messaging.sending.STATISTICS_AT_MESSAGES).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Measured as production runs: DEBUG off (no query log), which needs a real key.
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))

from bench.history import run_queued_analyze
from bench.throwaway_db import throwaway_database


def _backend_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the PostgreSQL backend `pid` spent so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--group-size", type=int, default=3)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between printed figures")
    parser.add_argument("--messages", type=int, default=60_000, help="stop after this many messages")
    args = parser.parse_args()
    with throwaway_database():
        run(args.seconds, args.group_size, args.every, args.messages)


def run(seconds: float, size: int, every: float, customer_count: int) -> None:
    from django.db import connection
    from django_tenants.utils import schema_context

    from bench.seeding import business_with_customers, flight_notice
    from messaging.sending import do_send_messages

    business, customers = business_with_customers(
        email="bench-new@example.com", name="Erstflug", slug="bench-new", count=customer_count, display_name="Gast"
    )
    analyzed_at: list[int] = []
    with schema_context(business.schema_name):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            row = cursor.fetchone()
        assert row is not None
        pid = int(row[0])
        started = shown = time.perf_counter()
        groups = shown_groups = 0
        cpu_shown = _backend_cpu(pid)
        while time.perf_counter() - started < seconds and (groups + 1) * size <= len(customers):
            chunk = customers[groups * size : (groups + 1) * size]
            outcomes = do_send_messages(
                business=business,
                requests=[flight_notice(c, body="Flug AU 12 startet jetzt um 10:40.") for c in chunk],
            )
            failed = [o for o in outcomes if isinstance(o, Exception)]
            assert not failed, failed[:3]
            groups += 1
            if groups % 20 == 0 and run_queued_analyze(business.schema_name):
                analyzed_at.append(groups * size)
            now_ = time.perf_counter()
            if now_ - shown >= every:
                cpu = _backend_cpu(pid)
                print(
                    f"{now_ - started:5.1f} s: {groups * size:7,d} messages, "
                    f"{(groups - shown_groups) / (now_ - shown):6.1f} groups/s, "
                    f"PostgreSQL CPU {(cpu - cpu_shown) / (groups - shown_groups) * 1000:5.2f} ms per group of {size}",
                    flush=True,
                )
                shown, shown_groups, cpu_shown = now_, groups, cpu
    print(f"{groups * size:,} messages in {groups:,} groups; tables analyzed at {analyzed_at or 'none'} messages")


if __name__ == "__main__":
    main()
