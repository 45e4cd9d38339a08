"""Issue 9: a business that has served many customers costs each send, ack and chat page no
more reads than a new business.

Three ways each of them read every conversation of the business:
- the send core's lock asked for `c.id = ANY(ids) OR ct.customer_id = ANY(customers)`, a
  condition across two tables that no index serves: PostgreSQL joined every conversation to its
  contact and filtered (at 100,000 conversations 200,000 rows, 56 ms a send group, whatever the
  plan);
- a group's rows bound as one parameter per column (config.sql.rows_source) were estimated at
  100 (a set-returning function's default), so joining a group of two acks to a few thousand
  conversations looked cheaper as a hash join over all of them than as two index lookups;
- a customer's chat page counted the conversations assigned in the last hour with no index on
  when they were assigned.

Counted with PostgreSQL's own statistics for this transaction (`pg_stat_xact_user_tables`): the
heap rows each step read from the conversations, contacts and messages tables, by scans of any
kind, with statistics as autovacuum keeps them (ANALYZE) and the statements warm (run past the
five runs after which PostgreSQL may plan a prepared statement once for all values).
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Q
from django_tenants.utils import tenant_context

from accounts.models import Customer
from assignment.selectors import customer_queue_state, in_queue
from bench.history import conversations_add
from messaging import services
from messaging.models import Contact, Conversation, Message
from messaging.receipts import Mark, marks_write
from tests.conftest import World
from tests.messaging.conftest import StepReads, make_customer, prepared_statements

MANY = 4000
TABLES = (Conversation._meta.db_table, Contact._meta.db_table, Message._meta.db_table)


def test_a_business_with_many_conversations_costs_each_step_few_reads(world: World) -> None:
    business = world.business_a
    schema = business.schema_name
    with tenant_context(business):
        regular = make_customer("Stammkundin")
        first = services.message_send_customer(business=business, customer=regular, body="Hallo").message
        conversation_id = first.conversation_id
        before = Conversation.objects.count()
        past = conversations_add(business, MANY)
        assert Conversation.objects.count() == before + MANY
        # Warm: each statement prepared and run well past five times on this connection.
        for n in range(8):
            services.message_send_customer(business=business, customer=regular, body=f"Noch da? {n}")
            services.message_send_agent(
                business=business, user=world.agent_a, conversation_id=conversation_id, body=f"Ja. {n}"
            )
        assert sum(runs for _name, runs in prepared_statements("FOR UPDATE OF c")) >= 16

        step = StepReads(schema, TABLES)
        inbound = step(
            "customer send",
            lambda: services.message_send_customer(business=business, customer=regular, body="Mein Flug?"),
        ).message
        reply = step(
            "agent reply",
            lambda: services.message_send_agent(
                business=business, user=world.agent_a, conversation_id=conversation_id, body="Startet um 14:05."
            ),
        ).message
        returning = step(
            "a past customer writes again",
            lambda: services.message_send_customer(
                business=business, customer=type(regular).objects.get(pk=past[MANY // 2]), body="Wieder da!"
            ),
        ).message
        newcomer = step(
            "a new customer's first message",
            lambda: services.message_send_customer(business=business, customer=make_customer("Neu"), body="Hallo?"),
        ).message
        # The chat page counts the conversations ahead of this one in line and those assigned in
        # the last hour: rows it must read, however few the business's past conversations. On a
        # test database kept between runs, earlier tests' committed conversations wait in line.
        waiting = Conversation.objects.get(pk=newcomer.conversation_id)
        in_line_or_served = Conversation.objects.filter(in_queue() | Q(assigned_at__isnull=False)).count()
        state = step(
            "a customer's chat page (their place in the queue, its pace)",
            lambda: customer_queue_state(conversation=waiting),
        )
        assert state["position"] is not None
        outcomes = step(
            "acks",
            lambda: marks_write(
                business=business,
                marks=[
                    Mark(up_to=reply.pk, read=True, customer=regular),
                    Mark(up_to=inbound.pk, read=True, user=world.agent_a, conversation_id=conversation_id),
                ],
            ),
        )
        # The steps did their work.
        assert Message.objects.get(pk=inbound.pk).status == Message.Status.READ
        assert outcomes[0] >= 1
        assert returning.conversation_id != conversation_id != newcomer.conversation_id
        assert Conversation.objects.get(pk=returning.conversation_id).status == Conversation.Status.OPEN

    for name, count in step.reads.items():
        # A few rows per step (the conversation, its contact, its unread messages); a scan of
        # the business's conversations would read thousands.
        allowed = 60 + (in_line_or_served if name.startswith("a customer's chat page") else 0)
        assert count < allowed, (name, step.reads, allowed)


def test_a_new_business_without_planner_statistics_reads_only_the_rows_of_its_sends(world: World) -> None:
    """A new business's tables have no planner statistics until they are first analyzed (a job
    at its 1,024th message; autovacuum's next round), and a send group's statements run on their
    generic plans: every lookup there must go through an index whatever PostgreSQL assumes of the
    tables. The conversations' lock joined each conversation's customer and assignee, and
    filtered the business's contacts by the customers asked for: its generic plan on unanalyzed
    tables hashed every customer of the platform, every user and every contact, in each group
    (issue 9: 500 + 51 + 500 rows a group in the inbox load); so did billing's lookups."""
    from accounts.models import Membership, User
    from messaging.group_commit import write_batch
    from messaging.sending import check_agent_send, check_customer_send, check_template_send
    from tenancy.services import business_create

    business = business_create(owner=world.owner_a, name="Never Analyzed", slug="never-analyzed")
    Membership.objects.create(user=world.agent_a, business=business, role=Membership.Role.AGENT)
    User.objects.bulk_create(User(email=f"seat{n}@never-analyzed.test") for n in range(60))
    customers = [make_customer(f"Kunde {n}") for n in range(300)]
    with tenant_context(business):
        for start in range(0, len(customers), 50):
            write_batch(
                business, [check_customer_send(customer=c, body="Hallo") for c in customers[start : start + 50]]
            )
        regular = customers[0]
        conversation_id = Conversation.objects.get(contact__customer_id=regular.pk).pk

        def reply(n: int) -> Any:
            request = check_agent_send(
                business=business,
                user=world.agent_a,
                conversation_id=conversation_id,
                body=f"Ja. {n}",
                client_msg_id=f"r{n}",
                defer_membership=True,
            )
            return write_batch(business, [request])

        for n in range(8):  # past the five custom plans: each statement runs on its generic plan
            write_batch(business, [check_customer_send(customer=regular, body=f"Noch da? {n}")])
            reply(n)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = %s AND last_analyze IS NULL "
                "AND last_autoanalyze IS NULL AND relname = ANY(%s)",
                [business.schema_name, [Conversation._meta.db_table, Contact._meta.db_table]],
            )
            assert cursor.fetchone()[0] == 2, "the business's tables were analyzed: the test proves nothing"

        tables = [
            (business.schema_name, Conversation._meta.db_table),
            (business.schema_name, Contact._meta.db_table),
            ("public", Customer._meta.db_table),
            ("public", User._meta.db_table),
        ]
        reads: dict[str, int] = {}

        def step(name: str, action: Any) -> None:
            before = _reads(tables)
            action()
            reads[name] = _reads(tables) - before

        step("customer send", lambda: write_batch(business, [check_customer_send(customer=regular, body="Mein Flug?")]))
        step("agent reply", lambda: reply(99))
        newcomer = make_customer("Neu")
        step(
            "a template to a new customer",
            lambda: write_batch(
                business,
                [
                    check_template_send(
                        customer=newcomer, template_name="hi", body="Hallo", category="utility", author_key="api:t"
                    )
                ],
            ),
        )
    for name, count in reads.items():
        # The group's own conversation, contact, customer and agent, a few times over; a scan
        # of any of these tables reads hundreds.
        assert count < 40, (name, reads)


def _reads(tables: list[tuple[str, str]]) -> int:
    """Heap rows this transaction read from these tables so far, by scans of any kind."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0) "
            "FROM pg_stat_xact_user_tables WHERE (schemaname, relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            [[schema for schema, _t in tables], [table for _s, table in tables]],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0
