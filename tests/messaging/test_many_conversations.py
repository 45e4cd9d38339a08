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

from django.db.models import Q
from django_tenants.utils import tenant_context

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
