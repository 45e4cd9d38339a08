"""The send core: SQL statements per send, sends per second alone and from many threads.

Run: .venv/bin/python bench/send_core.py [--threads 16] [--sends 50] [--serial 300]
     [--groups 10] [--group-size 100] [--only-groups] [--history 0,2000,20000]

Uses a throwaway database (like bench/billing.py) and publishes through the configured channel
layer (Redis when REDIS_URL is set), as the server does. Prints:
- statements for one customer send and one agent reply (each as a consumer calls it: in the
  business's schema, entered fresh, outside any transaction);
- serial sends per second from one thread (customer sends, then agent replies);
- concurrent customer sends: --threads threads, each its own customer and database connection,
  --sends each, into one business; messages/s, the group-commit batch sizes, refusals, and a
  check that the event ids are gap-free and every message was written once;
- the writer alone (`do_send_messages`), in groups of --group-size: template sends to customers
  without a conversation yet (a notifications delivery job's shape) and customer sends into
  existing conversations (a group commit's shape); CPU-milliseconds per group and per message
  (this process's CPU: the figure the machine's load distorts least; the first group, whose
  statements are counted through Django's query log, is not timed), wall-clock, statements,
  and PostgreSQL's CPU per group (its server process for this connection, when it runs here);
- with --history, agent replies into conversations with that many earlier (read) messages: what
  grows with a conversation's length in the writer.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Measured as production runs: DEBUG off (no query log), which needs a real key.
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))

from bench.throwaway_db import throwaway_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--sends", type=int, default=50, help="sends per thread in the concurrent run")
    parser.add_argument("--serial", type=int, default=300, help="sends in each serial run")
    parser.add_argument("--groups", type=int, default=10, help="groups per shape in the writer run")
    parser.add_argument("--group-size", type=int, default=100, help="sends per group in the writer run")
    parser.add_argument("--only-groups", action="store_true", help="only the writer run")
    parser.add_argument(
        "--history",
        default="",
        help="comma-separated conversation lengths (e.g. 0,2000,20000): also agent replies into "
        "conversations with that many earlier messages, all read (the writer run)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    args = parser.parse_args()
    if args.groups < 2:
        parser.error("--groups must be at least 2: the first counts statements, the others are timed")
    with throwaway_database(keep=args.keep):
        if not args.only_groups:
            run(args.threads, args.sends, args.serial)
        writer_groups(args.groups, args.group_size, [int(h) for h in args.history.split(",") if h.strip()])


def run(threads: int, sends: int, serial: int) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from accounts.models import Customer, User
    from messaging import services
    from messaging.models import Event, Message
    from tenancy.services import business_create

    print(f"DEBUG={settings.DEBUG} TENANT_LIMIT_SET_CALLS={getattr(settings, 'TENANT_LIMIT_SET_CALLS', False)}")
    call_command("parley_setup", verbosity=0)
    owner = User.objects.create_user("bench-owner@example.com", "x" * 12)
    business = business_create(owner=owner, name="Bench Air", slug="bench-air")
    schema = business.schema_name
    customers = [
        Customer.objects.create(
            phone_number=f"+4915100{n:06d}", display_name=f"Bench {n}", country_code="DE", verified_at=timezone.now()
        )
        for n in range(threads + 1)
    ]
    solo = customers[-1]

    def customer_send(customer: Customer, body: str, client_msg_id: str = "") -> Any:
        with schema_context(schema):
            return services.message_send_customer(
                business=business, customer=customer, body=body, client_msg_id=client_msg_id
            )

    def agent_send(conversation_id: int, body: str, client_msg_id: str = "") -> Any:
        with schema_context(schema):
            return services.message_send_agent(
                business=business, user=owner, conversation_id=conversation_id, body=body, client_msg_id=client_msg_id
            )

    # --- statements per send -----------------------------------------------------------------
    first = customer_send(solo, "warm up", "w0")
    conversation_id = first.message.conversation_id
    agent_send(conversation_id, "warm up", "w1")
    with CaptureQueriesContext(connection) as customer_sql:
        customer_send(solo, "count me", "c1")
    with CaptureQueriesContext(connection) as agent_sql:
        agent_send(conversation_id, "count me", "a1")
    for label, captured in (("customer send", customer_sql), ("agent reply", agent_sql)):
        queries = captured.captured_queries
        sets = sum(1 for q in queries if q["sql"].startswith("SET search_path"))
        print(f"{label}: {len(queries)} SQL statements ({sets} SET search_path)")
        if os.environ.get("RICH13_DUMP"):
            for q in queries:
                print("   ", q["sql"][:150])

    # --- serial -------------------------------------------------------------------------------
    start = time.perf_counter()
    for n in range(serial):
        customer_send(solo, f"serial {n}", f"s{n}")
    customer_rate = serial / (time.perf_counter() - start)
    start = time.perf_counter()
    for n in range(serial):
        agent_send(conversation_id, f"reply {n}", f"r{n}")
    agent_rate = serial / (time.perf_counter() - start)
    print(
        f"serial, one thread: {customer_rate:.0f} customer sends/s ({1000 / customer_rate:.2f} ms each), "
        f"{agent_rate:.0f} agent replies/s ({1000 / agent_rate:.2f} ms each)"
    )

    # --- concurrent ---------------------------------------------------------------------------
    with schema_context(schema):
        before_id = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    try:
        from messaging import group_commit
    except ImportError:  # the code before the send core, for a before/after run
        group_commit = None  # type: ignore[assignment]
    gatherer = group_commit.gatherer if group_commit is not None else None
    if gatherer is not None:
        gatherer.stats_reset()
    refused: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(threads)

    def worker(index: int) -> None:
        try:
            barrier.wait()
            n = 0
            while n < sends:
                try:
                    customer_send(customers[index], f"load {index}-{n}", f"l{n}")
                    n += 1
                except services.MessagingError as error:
                    if error.code != "overloaded":
                        raise
                    refused.append(error.retry_after or 0.0)
                    time.sleep(error.retry_after or 0.01)  # a client retries with the same id
        except Exception as error:
            errors.append(repr(error))
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start
    total = threads * sends
    print(f"concurrent: {threads} threads × {sends} customer sends: {total / elapsed:.0f} messages/s")
    if gatherer is not None:
        sizes = gatherer.stats_batches()
        if sizes:
            print(
                f"  batches: {len(sizes)}, size mean {statistics.mean(sizes):.1f}, "
                f"median {statistics.median(sizes):.0f}, max {max(sizes)}"
            )
    print(f"  refused (overloaded, retried): {len(refused)}; errors: {len(errors)} {errors[:3]}")
    with schema_context(schema):
        ids = list(Event.objects.filter(id__gt=before_id).order_by("id").values_list("id", flat=True))
        written = Message.objects.filter(event_id__gt=before_id).count()
    dense = ids == list(range(before_id + 1, before_id + 1 + len(ids)))
    print(f"  messages written: {written} of {total}; event ids gap-free: {dense}")


def writer_groups(groups: int, size: int, histories: list[int] | None = None) -> None:
    """The writer alone: `groups` transactions of `size` sends each, per shape; with
    `histories`, agent replies into conversations that many messages long."""
    from django.core.management import call_command
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from accounts.models import Customer, User
    from bench.history import conversations_lengthen
    from messaging.sending import check_agent_send, check_customer_send, check_template_send, do_send_messages
    from tenancy.models import Business
    from tenancy.services import business_create

    call_command("parley_setup", verbosity=0)  # idempotent: the serial run may have done it
    owner = User.objects.filter(email="bench-groups@example.com").first() or User.objects.create_user(
        "bench-groups@example.com", "x" * 12
    )
    business = Business.objects.filter(slug="bench-groups").first() or business_create(
        owner=owner, name="Bench Groups", slug="bench-groups"
    )
    now = timezone.now()
    customers = Customer.objects.bulk_create(
        [
            Customer(phone_number=f"+4917{n:09d}", display_name=f"Gruppe {n}", country_code="DE", verified_at=now)
            for n in range(groups * size)
        ]
    )

    def measure(label: str, build: Any) -> None:
        cpu: list[float] = []
        wall: list[float] = []
        statements = 0
        with schema_context(business.schema_name):
            backend = _backend_cpu()  # warms the connection too
            server_cpu = 0.0
            for g in range(groups):
                requests = build(customers[g * size : (g + 1) * size], g)
                # Statements are counted on the first group only: the query log (a debug cursor
                # per statement) costs CPU the production server does not spend.
                if g == 0:
                    reset_queries()
                    with CaptureQueriesContext(connection) as captured:
                        outcomes = do_send_messages(business=business, requests=requests)
                    statements = len(captured.captured_queries)
                else:
                    started_cpu, started = time.process_time(), time.perf_counter()
                    outcomes = do_send_messages(business=business, requests=requests)
                    cpu.append(time.process_time() - started_cpu)
                    wall.append(time.perf_counter() - started)
                failed = [o for o in outcomes if isinstance(o, Exception)]
                assert not failed, failed[:3]
            after = _backend_cpu()
            if backend is not None and after is not None and after[0] == backend[0]:  # the same connection
                server_cpu = after[1] - backend[1]
            else:
                backend = None
        # The first group (not timed) warms caches (rate card, assignment settings) too.
        per_group = statistics.median(cpu)
        server = f", PostgreSQL CPU {server_cpu / groups * 1000:.2f} ms per group" if backend is not None else ""
        print(
            f"writer, {label}: {groups} groups of {size}: CPU {per_group * 1000:.1f} ms per group "
            f"({per_group / size * 1e6:.0f} µs per message, {size / per_group:,.0f} messages per CPU-second), "
            f"wall {statistics.median(wall) * 1000:.1f} ms, {statements} statements{server}"
        )

    measure(
        "template sends, new conversations (a delivery job)",
        lambda chunk, g: [
            check_template_send(
                customer=c,
                template_name="flight_change",
                body=f"Flight AU {g} now at 10:40.",
                category="utility",
                author_key="api:1",
                client_msg_id=f"n{c.pk}",
            )
            for c in chunk
        ],
    )
    measure(
        "customer sends, existing conversations (a group commit)",
        lambda chunk, g: [check_customer_send(customer=c, body=f"Danke {g}", client_msg_id=f"c{c.pk}") for c in chunk],
    )
    if histories:
        conversation_of = _conversations(business, customers)
        for written, history in enumerate(sorted(histories), start=1):
            added = conversations_lengthen(business, list(conversation_of.values()), history)
            measure(
                f"agent replies, conversations of {history:,} earlier messages (+{added:,} rows added)",
                lambda chunk, g, written=written: [
                    check_agent_send(
                        business=business,
                        user=owner,
                        conversation_id=conversation_of[c.pk],
                        body=f"Gern {g}",
                        client_msg_id=f"r{written}-{c.pk}",
                        defer_membership=True,
                    )
                    for c in chunk
                ],
            )


def _backend_cpu() -> tuple[int, float] | None:
    """The server process of this connection and the CPU seconds it has used, where PostgreSQL
    runs on this machine (its /proc entry is readable); else None. A mean over the groups, not a median: the
    kernel counts in clock ticks (10 ms), so run enough groups."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return pid, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _conversations(business: Any, customers: list[Any]) -> dict[int, int]:
    from django_tenants.utils import schema_context

    from messaging.models import Conversation

    with schema_context(business.schema_name):
        return dict(
            Conversation.objects.filter(contact__customer_id__in=[c.pk for c in customers]).values_list(
                "contact__customer_id", "pk"
            )
        )


if __name__ == "__main__":
    main()
