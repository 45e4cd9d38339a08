"""The inbox's reads at scale: one business with 100,000 conversations and 1,000,000 messages.

Run: .venv/bin/python bench/inbox_queries.py [--conversations 100000] [--messages 1000000]
     [--runs 200] [--explain] [--keep | --reuse bench_xxxxxxxx]

Seeds a throwaway database (bench/throwaway_db.py) with COPY — customers, contacts,
conversations over 60 days (statuses, 20 agents, labels) and messages in English and German —
then times, each `--runs` times with varying parameters, and prints p50/p99 in milliseconds:

- the inbox list: first page and a deep page (keyset: `messaging.selectors.conversation_page`
  when the assignment lane's keyset list is there, else the same keyset query written here),
- a conversation page (`inbox_thread_page`: the newest 30 messages and the conversation),
- a search (`collab.search.search_conversations`: full text over 1M messages, a common word, a
  rarer one, a phrase with a label filter, a name prefix),
- the Reports page (`GET /reports/` through Django's test client, 30 and 90 days: every figure,
  table and chart rendered; DEBUG off).

The seed takes minutes (~380 s on the 2-core development machine), so `--keep` keeps the
database and prints its name, and `--reuse NAME` times against that database again without
seeding (it brings its schemas up to date first, so a new migration is applied to it).

Goals (issue 12): list p99 ≤ 50 ms, search p99 ≤ 200 ms, reports ≤ 500 ms. `--explain` prints
EXPLAIN (ANALYZE, BUFFERS) of each query once.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Measured as production runs: DEBUG off (no query log, cached templates), which needs a real key.
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))

from bench.throwaway_db import throwaway_database

AGENTS = 20
DAYS = 60

EN = [
    "my flight to {city} was delayed by {n} hours, will I make my connection",
    "my suitcase did not arrive in {city}, the bag tag is {tag}",
    "can I get a refund for the cancelled flight to {city}",
    "I would like to change my booking to {city} to next week",
    "is there a vegetarian meal on the flight to {city}",
    "thank you, that helps a lot",
    "the staff at the gate in {city} were very helpful",
    "can I bring my bike on the flight to {city}",
]
DE = [
    "mein Flug nach {city} hat {n} Stunden Verspätung, erreiche ich meinen Anschluss",
    "mein Koffer ist in {city} nicht angekommen, Gepäckschein {tag}",
    "ich möchte eine Erstattung für den gestrichenen Flug nach {city}",
    "kann ich meine Buchung nach {city} auf nächste Woche umbuchen",
    "vielen Dank für die schnelle Hilfe",
    "gibt es auf dem Flug nach {city} ein vegetarisches Essen",
]
AGENT_EN = [
    "I'm sorry about the delay; your connection in {city} waits for you at gate {gate}",
    "your bag was found and arrives in {city} tonight, we deliver it to your hotel",
    "the refund is approved and reaches your card within 7 working days",
    "I have rebooked you on the flight to {city} on {day}",
]
AGENT_DE = [
    "Ihr Koffer wurde gefunden und kommt heute Abend in {city} an",
    "die Erstattung ist veranlasst und in 5 bis 7 Tagen auf Ihrem Konto",
    "wir haben Sie auf den Flug nach {city} am {day} umgebucht",
]
CITIES = [
    "Lisbon",
    "Wien",
    "Zürich",
    "Madrid",
    "Athens",
    "Hamburg",
    "Rome",
    "Porto",
    "Oslo",
    "Krakow",
    "Sevilla",
    "Dublin",
]
FIRST = [
    "Sophie",
    "Lukas",
    "Elif",
    "Noah",
    "Emma",
    "Leon",
    "Hannah",
    "Paul",
    "Lina",
    "Felix",
    "Clara",
    "Jonas",
    "Marie",
]
LAST = ["Müller", "Schmidt", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann", "Koch", "Yilmaz", "Keller"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument(
        "--only",
        default="list,conversation,search,reports",
        help="comma-separated subset of list, conversation, search, reports (default: all)",
    )
    parser.add_argument("--reuse", metavar="NAME", help="time against a database kept by --keep, without seeding")
    args = parser.parse_args()
    with throwaway_database(keep=args.keep, reuse=args.reuse):
        run(args)


def seed(business: Any, agents: list[Any], conversations: int, messages: int) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from collab.bulk import MESSAGE_COLUMNS, CycleTriggerOff, copy_rows, reserve_event_ids
    from collab.models import ConversationLabel, Label

    rng = random.Random(2026)
    now = timezone.now()
    t0 = time.perf_counter()
    # Customers are global (public schema); phone numbers unique per run.
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(max(id), 0) FROM accounts_customer")
        first_customer = cursor.fetchone()[0] + 1  # type: ignore[index]
    copy_rows(
        "public.accounts_customer",
        ["id", "phone_number", "display_name", "country_code", "verified_at", "created_at"],
        (
            (first_customer + n, f"+49170{n:08d}", f"{rng.choice(FIRST)} {rng.choice(LAST)}", "DE", now, now)
            for n in range(conversations)
        ),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('public.accounts_customer', 'id'), max(id)) FROM public.accounts_customer"
        )
    print(f"  customers: {time.perf_counter() - t0:.1f} s")
    with transaction.atomic(), CycleTriggerOff():
        with connection.cursor() as cursor:
            # Build the full-text index once after the load instead of row by row.
            cursor.execute("DROP INDEX message_search")
        names = {}
        rows_contact = []
        for n in range(conversations):
            names[n + 1] = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            rows_contact.append((n + 1, first_customer + n, names[n + 1], "", now, now))
        copy_rows("messaging_contact", ["id", "customer_id", "name", "notes", "created_at", "updated_at"], rows_contact)
        per = messages / conversations
        plans = []
        for n in range(conversations):
            started = now - timedelta(seconds=rng.uniform(0, DAYS * 86400))
            count = max(1, int(rng.gauss(per, per / 3)))
            plans.append((n + 1, started, count))
        total = sum(p[2] for p in plans)
        scale = messages / total
        plans = [(cid, started, max(1, round(count * scale))) for cid, started, count in plans]
        total = sum(p[2] for p in plans)
        first_event = reserve_event_ids(total)
        conv_rows = []
        msg_rows: list[tuple[Any, ...]] = []
        event_id = first_event
        for cid, started, count in plans:
            at = started
            agent = rng.choice(agents)
            german = rng.random() < 0.5
            last_in = started
            for k in range(count):
                inbound = k == 0 or rng.random() < 0.5
                city = rng.choice(CITIES)
                words = {
                    "city": city,
                    "n": rng.randrange(1, 9),
                    "tag": f"0AU{rng.randrange(10**6):06d}",
                    "gate": f"B{rng.randrange(1, 40)}",
                    "day": "Friday" if not german else "Freitag",
                }
                if inbound:
                    body = rng.choice(DE if german else EN).format(**words)
                    msg_rows.append(
                        (
                            cid,
                            "in",
                            "customer",
                            None,
                            f"customer:{cid}",
                            "text",
                            body,
                            "",
                            "read",
                            "",
                            "",
                            event_id,
                            at,
                            at,
                            at,
                        )
                    )
                    last_in = at
                else:
                    note = rng.random() < 0.08
                    body = rng.choice(AGENT_DE if german else AGENT_EN).format(**words)
                    msg_rows.append(
                        (
                            cid,
                            "internal" if note else "out",
                            "agent",
                            agent.pk,
                            f"user:{agent.pk}",
                            "note" if note else "text",
                            body,
                            "",
                            "read",
                            "",
                            "",
                            event_id,
                            at,
                            at,
                            at,
                        )
                    )
                event_id += 1
                at = at + timedelta(seconds=rng.randrange(30, 3600))
            age = now - started
            status = (
                "resolved"
                if age > timedelta(days=2) and rng.random() < 0.9
                else rng.choice(["open", "open", "pending"])
            )
            assignee = agent.pk if status != "open" or rng.random() < 0.6 else None
            last = min(at, now)
            conv_rows.append(
                (
                    cid,
                    cid,
                    status,
                    assignee,
                    last_in + timedelta(hours=24),
                    last,
                    msg_rows[-1][6][:140],
                    0 if status == "resolved" else rng.randrange(0, 3),
                    0,
                    0,
                    started,
                    last + timedelta(hours=1) if status == "resolved" else last,
                )
            )
        copy_rows(
            "messaging_conversation",
            [
                "id",
                "contact_id",
                "status",
                "assignee_id",
                "window_expires_at",
                "last_message_at",
                "last_message_preview",
                "unread_count",
                "last_public_event_id",
                "last_event_id",
                "created_at",
                "updated_at",
            ],
            conv_rows,
        )
        print(f"  contacts and conversations: {time.perf_counter() - t0:.1f} s")
        copy_rows("messaging_message", list(MESSAGE_COLUMNS), msg_rows)
        print(f"  {len(msg_rows):,} messages copied: {time.perf_counter() - t0:.1f} s")
        with connection.cursor() as cursor:
            for table in ("messaging_contact", "messaging_conversation"):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # check the copied rows' foreign keys now
            cursor.execute("CREATE INDEX message_search ON messaging_message USING gin (search_vector)")
        print(f"  full-text index built: {time.perf_counter() - t0:.1f} s")
        labels = [
            Label.objects.create(name=name, colour=colour)
            for name, colour in (
                ("Baggage", "orange"),
                ("Refund", "red"),
                ("Booking", "teal"),
                ("Flight change", "blue"),
                ("VIP", "purple"),
                ("Complaint", "pink"),
            )
        ]
        ConversationLabel.objects.bulk_create(
            [
                ConversationLabel(conversation_id=cid, label=rng.choice(labels))
                for cid in range(1, conversations + 1)
                if rng.random() < 0.4
            ],
            batch_size=5000,
        )
    print(f"  labels and service cycles: {time.perf_counter() - t0:.1f} s")


def timed(name: str, runs: int, fn: Callable[[int], Any], goal: float | None = None) -> None:
    fn(0)  # warm: plans, caches
    samples = []
    for n in range(runs):
        t = time.perf_counter()
        fn(n)
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    verdict = "" if goal is None else ("  goal met" if p99 <= goal else f"  goal {goal:.0f} ms NOT met")
    print(f"{name:<44} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms{verdict}")


def explain(sql: str, params: list[Any]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        print("\n".join("    " + row[0] for row in cursor.fetchall()))


def run(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection as default_connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from accounts.models import Membership, User
    from collab.search import SearchFilters, search_conversations
    from messaging import selectors as messaging_selectors
    from messaging.models import Conversation
    from messaging.payloads import conversation_payload
    from tenancy.services import business_create

    connection: Any = default_connection  # django-tenants' wrapper (schemas), psycopg's version
    only = set(args.only.split(","))
    call_command("parley_setup", verbosity=0)
    if args.reuse:
        from tenancy.models import Business

        owner = User.objects.get(email="bench-owner@example.com")
        business = Business.objects.get(slug="bench-air")
        agents = [User.objects.get(email=f"agent{n}@bench.example") for n in range(AGENTS)]
        with tenant_context(business):
            counted = Conversation.objects.count()
        print(f"reusing {args.reuse}: {counted:,} conversations in one business")
        args.conversations = counted
    else:
        owner = User.objects.create_user("bench-owner@example.com", "x" * 12, full_name="Bench Owner")
        business = business_create(owner=owner, name="Bench Air", slug="bench-air")
        agents = []
        for n in range(AGENTS):
            agent = User.objects.create_user(f"agent{n}@bench.example", "x" * 12, full_name=f"Agent {n}")
            Membership.objects.create(user=agent, business=business, role="agent")
            agents.append(agent)
        print(f"seeding {args.conversations:,} conversations and {args.messages:,} messages in one business")
        with tenant_context(business):
            seed(business, agents, args.conversations, args.messages)
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    rng = random.Random(7)
    user = agents[0]
    print(f"\n{args.runs} runs each (PostgreSQL {connection.pg_version // 10000}, one connection, warm cache):")
    with tenant_context(business):
        page = getattr(messaging_selectors, "conversation_page", None)
        filters_cls = getattr(messaging_selectors, "ConversationFilters", None)
        ids = list(
            Conversation.objects.order_by("-last_message_at", "-id").values_list("last_message_at", "id")[:20000]
        )

        if page is not None and filters_cls is not None:
            cursor_for = messaging_selectors.encode_cursor  # type: ignore[attr-defined]

            def list_first(n: int) -> Any:
                return page(user=user, filters=filters_cls(tab="all", statuses=("open",)))

            def list_deep(n: int) -> Any:
                at, pk = ids[rng.randrange(len(ids) * 3 // 20, len(ids))]
                return page(user=user, filters=filters_cls(tab="all"), cursor=cursor_for("recent", at, pk))  # type: ignore[arg-type]

            source = "messaging.selectors.conversation_page"
        else:

            def keyset(after: tuple[Any, int] | None, **where: Any) -> list[dict[str, Any]]:
                qs = Conversation.objects.filter(last_message_at__isnull=False, **where)
                if after is not None:
                    from django.db.models import Q

                    qs = qs.filter(Q(last_message_at__lt=after[0]) | Q(last_message_at=after[0], id__lt=after[1]))
                rows = qs.select_related("contact__customer", "assignee").order_by("-last_message_at", "-id")[:51]
                return [conversation_payload(c) for c in rows]

            def list_first(n: int) -> Any:
                return keyset(None, status="open")

            def list_deep(n: int) -> Any:
                return keyset(ids[rng.randrange(len(ids) * 3 // 20, len(ids))])

            source = "keyset query (bench copy of the list)"
        print(f"  list: {source}")
        if "list" in only:
            timed("inbox list, first page (open, 50)", args.runs, list_first, 50)
            timed("inbox list, deep page (3,000-20,000 down)", args.runs, list_deep, 50)
        thread = getattr(messaging_selectors, "inbox_thread_page", None)
        max_id = args.conversations

        def conversation(n: int) -> Any:
            cid = rng.randrange(1, max_id + 1)
            if thread is not None:
                return thread(conversation_id=cid)
            c = messaging_selectors.conversation_for_agent(conversation_id=cid)
            return messaging_selectors.messages_page(conversation=c, include_notes=True)

        if "conversation" in only:
            timed("conversation page (newest 30 messages)", args.runs, conversation, 50)
        queries = ["Koffer", "refund", "vegetarian meal", "Verspätung Anschluss", "Sevilla", "Hannah", "0AU123456"]

        def search(query: str, **extra: Any) -> Callable[[int], Any]:
            return lambda n: search_conversations(user_id=user.pk, filters=SearchFilters(query=query, **extra))

        if "search" in only:
            for query in queries:
                timed(f"search {query!r}", args.runs, search(query), 200)
            label_id = 1
            timed("search 'bag' + label + open", args.runs, search("bag", label_id=label_id, status="open"), 200)
            today = timezone.localdate()
            timed(
                "search 'Flug' in the last 7 days", args.runs, search("Flug", date_from=today - timedelta(days=6)), 200
            )

    client = Client(HTTP_HOST=business.host)
    client.force_login(owner)

    def reports(n: int) -> Any:
        response = client.get("/reports/?days=30")
        assert response.status_code == 200, response.status_code
        connection.set_schema_to_public()

    if "reports" in only:
        timed("reports page, 30 days (HTTP, rendered)", max(20, args.runs // 5), reports, 500)

    def reports90(n: int) -> Any:
        response = client.get("/reports/?days=90")
        assert response.status_code == 200
        connection.set_schema_to_public()

    if "reports" in only:
        timed("reports page, 90 days (HTTP, rendered)", max(20, args.runs // 5), reports90, 500)

    if args.explain:
        with tenant_context(business):
            cases: list[tuple[str, Callable[[int], Any]]] = [
                ("inbox list, first page", list_first),
                ("inbox list, deep page", list_deep),
                ("search 'refund'", search("refund")),
                ("search '0AU123456'", search("0AU123456")),
            ]
            for name, fn in cases:
                with CaptureQueriesContext(connection) as captured:
                    fn(0)
                statements = [q for q in captured.captured_queries if not q["sql"].startswith("SET ")]
                sql = max(statements, key=lambda q: float(q["time"]))["sql"]
                print(f"\nEXPLAIN ANALYZE, {name} (its slowest statement):")
                explain(sql, [])


if __name__ == "__main__":
    main()
