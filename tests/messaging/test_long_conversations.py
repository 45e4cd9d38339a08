"""Issue 9: a long conversation costs its sends and acks no more reads than a new one.

The send core's lock asks for the latest unread inbound message, an agent's reply marks the
customer's messages read, and the ack writer looks for what an ack changes and recounts the
unread ones. Each of those looked at every message of the conversation (a conversation of 20,000
messages cost ~3 ms of server time per send, under the group's locks); through the index of
messages awaiting a receipt they look only at the unread ones.

Counted with PostgreSQL's own statistics for this transaction (`pg_stat_xact_user_tables`): the
heap rows a statement read from the messages table, by scans of any kind. Real statements, the
real planner, statistics fresh as autovacuum keeps them (ANALYZE).
"""

from __future__ import annotations

from typing import Any

from django_tenants.utils import tenant_context

from bench.history import conversations_lengthen
from messaging import services
from messaging.models import Conversation, Message
from messaging.receipts import Mark, marks_write
from tests.conftest import World
from tests.messaging.conftest import StepReads, make_customer, prepared_statements

HISTORY = 3000


def _reads_per_step(world: World, conversation: Conversation, customer: Any) -> dict[str, int]:
    """A customer's message, the agent's reply (which reads it), the customer reading the reply
    and the agent acking a second message: the heap rows each step read."""
    business = world.business_a
    step = StepReads(business.schema_name, [Message._meta.db_table])
    inbound = step(
        "customer send",
        lambda: services.message_send_customer(business=business, customer=customer, body="Wo ist mein Koffer?"),
    ).message
    reply = step(
        "agent reply",
        lambda: services.message_send_agent(
            business=business, user=world.agent_a, conversation_id=conversation.pk, body="Wir suchen ihn."
        ),
    ).message
    second = services.message_send_customer(business=business, customer=customer, body="Danke!").message
    outcomes = step(
        "acks",
        lambda: marks_write(
            business=business,
            marks=[
                Mark(up_to=reply.pk, read=True, customer=customer),
                Mark(up_to=second.pk, read=True, user=world.agent_a, conversation_id=conversation.pk),
            ],
        ),
    )
    # The steps did their work: the reply read the customer's message; the customer read the
    # agent's greeting and the reply, the agent the customer's second message.
    assert outcomes == [2, 1]
    assert Message.objects.get(pk=inbound.pk).status == Message.Status.READ
    assert Message.objects.get(pk=reply.pk).status == Message.Status.READ
    assert Conversation.objects.get(pk=conversation.pk).unread_count == 0
    return step.reads


def test_a_long_conversation_costs_its_sends_and_acks_no_more_reads(world: World) -> None:
    with tenant_context(world.business_a):
        short_customer, long_customer = make_customer("Kurz"), make_customer("Lang")
        conversations = {}
        for customer in (short_customer, long_customer):
            first = services.message_send_customer(business=world.business_a, customer=customer, body="Hallo").message
            services.message_send_agent(
                business=world.business_a, user=world.agent_a, conversation_id=first.conversation_id, body="Hallo!"
            )
            conversations[customer.pk] = Conversation.objects.get(pk=first.conversation_id)
        conversations_lengthen(world.business_a, [conversations[long_customer.pk].pk], HISTORY)

        short = _reads_per_step(world, conversations[short_customer.pk], short_customer)
        long = _reads_per_step(world, conversations[long_customer.pk], long_customer)

    for name, count in long.items():
        # As many rows as for the new conversation (the unread messages; at most the business's
        # unread ones, where the planner finds one scan of those cheaper), however long the
        # conversation: reading it would take thousands.
        assert count <= short[name] + 10, (name, short, long)
        assert count < HISTORY // 10, (name, short, long)


def test_the_prepared_send_statements_still_read_only_the_unread_messages_once_warm(world: World) -> None:
    """The send core's lock, dedupe and stream-counter statements are prepared on their
    connection (config.sql.prepared_cursor). After five runs PostgreSQL may plan such a statement
    once for all values (a generic plan, blind to them) where it estimates that no worse: run
    them well past that, then a long conversation must still cost its steps only its unread
    messages."""
    with tenant_context(world.business_a):
        customer = make_customer("Lang, oft")
        first = services.message_send_customer(business=world.business_a, customer=customer, body="Hallo").message
        conversation = Conversation.objects.get(pk=first.conversation_id)
        conversations_lengthen(world.business_a, [conversation.pk], HISTORY)
        replies = []
        for n in range(8):
            services.message_send_customer(business=world.business_a, customer=customer, body=f"Noch da? {n}")
            replies.append(
                services.message_send_agent(
                    business=world.business_a, user=world.agent_a, conversation_id=conversation.pk, body=f"Ja. {n}"
                ).message
            )
        # Read up to the last reply but one: one left unread, as the greeting in the steps' other test.
        marks_write(business=world.business_a, marks=[Mark(up_to=replies[-2].pk, read=True, customer=customer)])
        # Prepared and run again and again on this connection, not parsed afresh each time.
        assert sum(runs for _name, runs in prepared_statements("FOR UPDATE OF c")) >= 16
        assert sum(runs for _name, runs in prepared_statements("WITH counter AS")) >= 16
        reads = _reads_per_step(world, conversation, customer)

    for name, count in reads.items():
        assert count < HISTORY // 10, (name, reads)
