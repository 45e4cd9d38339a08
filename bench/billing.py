"""Throughput of billing's send-path contract, conversation_charge_for_message.

Run: .venv/bin/python bench/billing.py --count 3000 [--threads 4]
Uses a throwaway database (like bench/provision.py). Each call runs in its own transaction, as
in messaging's send. Prints usage records per second for: new conversations (one usage record
each, and a queued Stripe report for the chargeable ones), messages inside an open conversation
(no new record), and new conversations from several threads at once for one business (they
contend for the business's monthly service counter).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench.throwaway_db import throwaway_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    args = parser.parse_args()

    with throwaway_database(keep=args.keep):
        run(args.count, args.threads)


def run(count: int, threads: int) -> None:
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import User
    from billing.models import FREE_SERVICE_CONVERSATIONS_PER_MONTH, UsageRecord
    from billing.services import conversation_charge_for_message
    from tenancy.services import business_create

    call_command("parley_setup", verbosity=0)
    owner = User.objects.create_user("bench-owner@example.com", "x" * 12)
    business = business_create(owner=owner, name="Bench Air", slug="bench-air")
    phones = ["+4915112345678", "+436641234567", "+41791234567", "+12025550123"]
    categories = ["service", "service", "utility", "marketing", "authentication"]

    def send(customer: int, n: int) -> None:
        with transaction.atomic():
            conversation_charge_for_message(
                business=business,
                conversation_id=customer,
                customer_id=customer,
                customer_phone=phones[n % len(phones)],
                category=categories[n % len(categories)],
                sent_at=timezone.now(),
            )

    # Warm up (rate card, connections, query plans).
    for n in range(50):
        send(10_000_000 + n, n)

    t0 = time.perf_counter()
    for n in range(count):
        send(n + 1, n)
    new_seconds = time.perf_counter() - t0
    print(
        f"new conversations, 1 thread:        {count / new_seconds:8.0f} usage records/s  ({new_seconds * 1000 / count:.2f} ms each, {count} records)"
    )

    t0 = time.perf_counter()
    for n in range(count):
        send((n % 500) + 1, n)  # customers whose conversation is open
    repeat_seconds = time.perf_counter() - t0
    print(
        f"messages in an open conversation:   {count / repeat_seconds:8.0f} calls/s          ({repeat_seconds * 1000 / count:.2f} ms each)"
    )

    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for n in range(count // threads):
                send(1_000_000 * (offset + 2) + n, n)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    parallel_seconds = time.perf_counter() - t0
    made = (count // threads) * threads
    print(
        f"new conversations, {threads} threads:       {made / parallel_seconds:8.0f} usage records/s  (errors: {len(errors)})"
    )

    total = UsageRecord.objects.filter(business=business).count()
    free = UsageRecord.objects.filter(business=business, free=True).count()
    service = UsageRecord.objects.filter(business=business, category="service").count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'billing.report_usage_record'")
        queued = cursor.fetchone()[0]
    print(f"ledger: {total} records, {free} free (first 1,000 service conversations), {queued} Stripe reports queued")
    # Small --count runs stay under the free tier: all their service conversations are free.
    assert free == min(FREE_SERVICE_CONVERSATIONS_PER_MONTH, service), "free tier is wrong"
    assert queued == total - free, "queueing is wrong"


if __name__ == "__main__":
    main()
