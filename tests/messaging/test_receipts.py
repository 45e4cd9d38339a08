"""Issue 9: acks of many sockets are written in one transaction (messaging.receipts), each with
the rules of one ack."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from directory.models import CustomerThread
from messaging import services
from messaging.errors import MessagingError
from messaging.models import Conversation, Event, Message
from messaging.receipts import Mark, marks_write
from tests.conftest import World
from tests.messaging.conftest import make_customer


def _conversation_with_traffic(world: World) -> tuple[Any, Message, Message]:
    """A customer's conversation: two customer messages, then two agent replies."""
    customer = make_customer()
    business = world.business_a
    first = services.message_send_customer(business=business, customer=customer, body="one").message
    second = services.message_send_customer(business=business, customer=customer, body="two").message
    reply = None
    for body in ("a", "b"):
        reply = services.message_send_agent(
            business=business, user=world.agent_a, conversation_id=first.conversation_id, body=body
        ).message
    assert reply is not None
    return customer, second, reply


def test_a_group_of_acks_is_one_transaction_with_each_acks_rules(world: World) -> None:
    business = world.business_a
    with tenant_context(business):
        customer_a, _inbound_a, reply_a = _conversation_with_traffic(world)
        _customer_b, inbound_b, _reply_b = _conversation_with_traffic(world)
        # An agent's reply reads the customer's messages; send two fresh ones to acknowledge.
        fresh_a = services.message_send_customer(business=business, customer=customer_a, body="three").message
        conversation_b = Conversation.objects.get(pk=inbound_b.conversation_id)
        fresh_b = services.message_send_customer(
            business=business, customer=conversation_b.contact.customer, body="three"
        ).message
        start = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        marks = [
            Mark(up_to=fresh_a.pk, read=False, user=world.agent_a, conversation_id=fresh_a.conversation_id),
            Mark(up_to=fresh_b.pk, read=True, user=world.owner_a, conversation_id=fresh_b.conversation_id),
            Mark(up_to=reply_a.pk, read=True, customer=customer_a),
            Mark(up_to=fresh_a.pk, read=False, user=world.owner_a, conversation_id=fresh_a.conversation_id),
            Mark(up_to=1, read=True, user=world.agent_a, conversation_id=10**12),  # no such conversation
            Mark(up_to=1, read=True, user=world.agent_b, conversation_id=fresh_a.conversation_id),  # no seat here
        ]
        with CaptureQueriesContext(connection) as captured:
            outcomes = marks_write(business=business, marks=marks)
        assert outcomes[0] == 1 and outcomes[3] == 1  # merged: the two delivered acks share the count
        assert outcomes[1] == 1
        assert outcomes[2] == 2  # both replies read
        assert isinstance(outcomes[4], MessagingError) and outcomes[4].code == "not_found"
        assert isinstance(outcomes[5], MessagingError) and outcomes[5].code == "not_found"
        statements = [
            q["sql"]
            for q in captured.captured_queries
            if not q["sql"].startswith(("SET ", "SAVEPOINT", "RELEASE SAVEPOINT"))
        ]
        # Seats, customers' conversations, what changes, lock, UPDATE, recount, threads, counter, events.
        assert len(statements) <= 9, statements
        assert sum("FOR UPDATE" in sql for sql in statements) == 1

        fresh_a.refresh_from_db()
        fresh_b.refresh_from_db()
        assert fresh_a.status == "delivered" and fresh_a.delivered_at and not fresh_a.read_at
        assert fresh_b.status == "read" and fresh_b.read_at and fresh_b.delivered_at
        assert not Message.objects.filter(conversation_id=reply_a.conversation_id, direction="out", read_at=None)
        conversation_b.refresh_from_db()
        assert conversation_b.unread_count == 0
        frames = [
            json.loads(f) for f in Event.objects.filter(id__gt=start).order_by("id").values_list("frame", flat=True)
        ]
        statuses = {
            (f["conversation_id"], f["direction"], f["status"], f["up_to"])
            for f in frames
            if f["type"] == "message.status"
        }
        assert statuses == {
            (fresh_a.conversation_id, "in", "delivered", fresh_a.pk),
            (fresh_b.conversation_id, "in", "read", fresh_b.pk),
            (reply_a.conversation_id, "out", "read", reply_a.pk),
        }
        updated = [f for f in frames if f["type"] == "conversation.updated"]
        assert [f["conversation"]["id"] for f in updated] == [fresh_b.conversation_id]
        assert updated[0]["conversation"]["unread"] == 0
        # Each conversation's events are chained: the conversation names its newest event.
        for conversation_id in {fresh_a.conversation_id, fresh_b.conversation_id}:
            last = max(
                e["id"]
                for e in frames
                if e.get("conversation_id", e.get("conversation", {}).get("id")) == conversation_id
            )
            assert Conversation.objects.get(pk=conversation_id).last_event_id == last
    assert CustomerThread.objects.get(customer=customer_a, business=business).unread_count == 0

    # Acked again, nothing changes: no lock, no event.
    with tenant_context(business):
        end = Event.objects.order_by("-id").values_list("id", flat=True).first()
        with CaptureQueriesContext(connection) as captured:
            again = marks_write(business=business, marks=marks[:4])
        assert again == [0, 0, 0, 0]
        assert not any("FOR UPDATE" in q["sql"] for q in captured.captured_queries)
        assert Event.objects.order_by("-id").values_list("id", flat=True).first() == end
