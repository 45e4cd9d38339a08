"""Issue 9: a new business's first minute at full rate costs each send group a few reads, not
its whole tables.

A business's schema starts without planner statistics; autovacuum analyzes a table on its next
round after the table's 50th change, up to a minute later (`autovacuum_naptime`). Until then
PostgreSQL takes the tables for ten pages and the send core's prepared statements keep plans that
scan them whole (12,315 rows a group of three at 4,100 messages); and a generic plan made when
a join was a near tie (hashing a table of a thousand rows or looking up three) was kept while
the table grew. The writer queues `messaging.tables_analyze` in its transaction each time the
business's message ids pass a power of two (`sending.STATISTICS_AT_MESSAGES`), and the
conversations' lock reaches each contact, and each customer's conversation, by its key.
"""

from __future__ import annotations

from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Customer, User
from bench.history import analyze_jobs_waiting, run_queued_analyze
from messaging.jobs import tables_analyze
from messaging.models import Contact, Conversation, Message
from messaging.sending import STATISTICS_AT_MESSAGES, check_customer_send, do_send_messages
from tenancy.services import business_create
from tests.conftest import World, unique
from tests.messaging.conftest import StepReads

GROUP = 100
TABLES = (Conversation._meta.db_table, Contact._meta.db_table, Message._meta.db_table)


def _analyze_jobs(schema: str) -> int:
    return len(analyze_jobs_waiting(schema))


def _estimated_messages(schema: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            [schema, Message._meta.db_table],
        )
        row = cursor.fetchone()
    assert row is not None
    return float(row[0])


def _run_analyze_job(schema: str) -> bool:
    """What a worker does with a queued `messaging.tables_analyze`: run it, mark it done."""
    ran = run_queued_analyze(schema)
    assert ran <= 1, "one waiting job per business (its queueing lock)"
    return ran == 1


def test_a_new_business_is_analyzed_each_time_its_messages_double(world: World) -> None:
    owner = User.objects.create(email=f"{unique('owner')}@statistics.test")
    business = business_create(owner=owner, name="Erstflug GmbH", slug=unique("erstflug"))
    schema = business.schema_name
    now = timezone.now()
    # An airline's first minute, as customers' first messages: each group of a hundred makes a
    # hundred conversations and contacts (and reserves its message ids twice: see the writer).
    customers = Customer.objects.bulk_create(
        Customer(phone_number=f"+4916{n:09d}", display_name=f"Gast {n}", country_code="DE", verified_at=now)
        for n in range(4 * STATISTICS_AT_MESSAGES[0])
    )
    analyzed_at: list[int] = []
    with tenant_context(business):
        # A new business's first message id is 1 in production; a spare schema taken by an
        # earlier test whose transaction rolled back kept its sequence where that test left it.
        with connection.cursor() as cursor:
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), 1, false)", [Message._meta.db_table])
        highest = 0
        for start in range(0, len(customers), GROUP):
            requests = [
                check_customer_send(customer=c, body=f"Mein Flug {c.pk}?", client_msg_id=f"f{c.pk}")
                for c in customers[start : start + GROUP]
            ]
            outcomes = do_send_messages(business=business, requests=requests)
            assert not [o for o in outcomes if isinstance(o, Exception)]
            before, highest = highest, Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            passed = [mark for mark in STATISTICS_AT_MESSAGES if before < mark <= highest]
            # The group whose ids passed a mark queued the job, and no other group did.
            assert _analyze_jobs(schema) == (1 if passed else 0), (before, highest)
            if _run_analyze_job(schema):
                analyzed_at.append(Message.objects.count())
                assert _estimated_messages(schema) >= analyzed_at[-1]
        assert len(analyzed_at) == len([m for m in STATISTICS_AT_MESSAGES if m <= highest]) >= 3, analyzed_at
        assert Message.objects.count() == len(customers)

        # A send group into existing conversations reads a few rows, not the tables.
        step = StepReads(schema, TABLES)
        for n in range(7):  # past PostgreSQL's five custom plans of each prepared statement
            step(
                f"group {n}",
                lambda n=n: do_send_messages(
                    business=business,
                    requests=[
                        check_customer_send(customer=c, body=f"Noch eine Frage {n}", client_msg_id=f"q{n}-{c.pk}")
                        for c in customers[n * 3 : n * 3 + 3]
                    ],
                ),
            )
    assert all(reads < 60 for reads in step.reads.values()), step.reads


def test_analyzing_a_business_that_is_gone_does_nothing(world: World) -> None:
    assert tables_analyze("b_no_such_business") is False
