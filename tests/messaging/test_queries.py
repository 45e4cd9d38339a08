"""Query budgets: list views and receipts cost a fixed number of queries, whatever the size.

django-tenants sends `SET search_path` before every query, so each budget counts every
query twice."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context, tenant_context

from directory.models import CustomerThread
from messaging import selectors
from messaging.models import Conversation, Event, Message
from messaging.services import (
    MessagingError,
    message_send_agent,
    message_send_customer,
    messages_mark_by_agent,
    messages_mark_by_customer,
)
from tests.conftest import World, business_client, unique
from tests.messaging.conftest import make_customer


def test_a_customer_read_receipt_is_cheap_and_leaves_the_thread_consistent(
    world: World, django_assert_max_num_queries: Any
) -> None:
    customer = make_customer()
    business = world.business_a
    with tenant_context(business):
        first = message_send_customer(business=business, customer=customer, body="hi").message
        for body in ("one", "two"):
            reply = message_send_agent(
                business=business, user=world.agent_a, conversation_id=first.conversation_id, body=body
            ).message
        assert CustomerThread.objects.get(customer=customer, business=business).unread_count == 2
        with django_assert_max_num_queries(2 * 12):
            changed = messages_mark_by_customer(business=business, customer=customer, up_to=reply.pk, read=True)
        assert changed == 2
        assert not Message.objects.filter(conversation_id=first.conversation_id, direction="out", read_at=None)
    assert CustomerThread.objects.get(customer=customer, business=business).unread_count == 0


def test_the_inbox_list_costs_the_same_for_many_conversations(world: World, django_assert_max_num_queries: Any) -> None:
    with tenant_context(world.business_a):
        for _ in range(5):
            message_send_customer(business=world.business_a, customer=make_customer("Q"), body="hello")
        with django_assert_max_num_queries(2 * 1):
            page = selectors.conversation_page(user=world.agent_a, filters=selectors.ConversationFilters())
        assert len(page["conversations"]) >= 5
        with django_assert_max_num_queries(2 * 1):
            counts = selectors.inbox_counts(user=world.agent_a)
        assert counts["all"] >= 5 and counts["unassigned"] >= 5
        with django_assert_max_num_queries(2 * 1):
            contacts = selectors.contacts_list()
            # What the contacts page reads per row; a missing conversation is cached as missing.
            with_conversation = [c for c in contacts if c.customer.phone_number and hasattr(c, "conversation")]
        assert with_conversation


def test_only_the_first_delivered_ack_takes_the_conversation_lock(
    world: World, django_assert_max_num_queries: Any
) -> None:
    customer = make_customer()
    business = world.business_a
    with tenant_context(business):
        message = message_send_customer(business=business, customer=customer, body="hi").message
        kwargs = {"business": business, "conversation_id": message.conversation_id, "up_to": message.pk}
        assert messages_mark_by_agent(user=world.agent_a, read=False, **kwargs) == 1
        # Every other open inbox acks the same message: membership and one read, no lock.
        with django_assert_max_num_queries(2 * 2) as captured:
            assert messages_mark_by_agent(user=world.owner_a, read=False, **kwargs) == 0
        assert not any("FOR UPDATE" in q["sql"] for q in captured.captured_queries)
        message.refresh_from_db()
        assert message.status == "delivered"
        with pytest.raises(MessagingError) as missing:
            messages_mark_by_agent(user=world.agent_a, read=False, **{**kwargs, "conversation_id": 10**12})
        assert missing.value.code == "not_found"


@pytest.mark.parametrize("path", ["/inbox/api/conversations/", "/contacts/"])
def test_list_pages_do_not_query_per_row(world: World, path: str) -> None:
    """One matching row, then five: the same number of queries. (A search keeps rows that
    earlier committed tests left in the shared business out of the lists.)"""
    name = unique("Row ")
    client = business_client(world.business_a, world.agent_a)

    def add_conversation() -> None:
        with tenant_context(world.business_a):
            sent = message_send_customer(business=world.business_a, customer=make_customer(name), body="hi")
            message_send_agent(
                business=world.business_a,
                user=world.agent_a,
                conversation_id=sent.message.conversation_id,
                body="hello",
            )
        connection.set_schema_to_public()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path, {"q": name})
        assert response.status_code == 200
        return len(captured.captured_queries)

    add_conversation()
    client.get(path, {"q": name})  # warm up the session and the tenant's caches
    before = queries()
    for _ in range(4):
        add_conversation()
    assert queries() == before


# What one send costs as a consumer makes it: the business's schema entered fresh (one
# `SET search_path`), no transaction around it; BEGIN and COMMIT not counted. Before the send
# core (counted the same way, plus BEGIN/COMMIT): 36 statements for a customer send, 17 of them
# `SET search_path`; 44 for an agent reply. The agent's budget includes billing's statements for
# the reply that opens a billable conversation (its lock, lookup, monthly counter and record).
CUSTOMER_SEND_BUDGET = 7
AGENT_REPLY_BUDGET = 12


def _statements(business: Any, send: Any) -> list[str]:
    connection.set_schema_to_public()
    with CaptureQueriesContext(connection) as captured, schema_context(business.schema_name):
        send()
    return [q["sql"] for q in captured.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]


def test_a_send_is_a_few_statements(live_db: World, settings: Any) -> None:
    # The assignment settings are read once per TTL per process (an amortised statement); on a
    # slow run the first send's copy could expire before the measured one, so hold it.
    settings.PARLEY_ASSIGNMENT_SETTINGS_TTL = 3600
    business = live_db.business_a
    customer = make_customer()
    with schema_context(business.schema_name):
        first = message_send_customer(business=business, customer=customer, body="hi", client_msg_id=unique("c"))
    conversation_id = first.message.conversation_id

    customer_sql = _statements(
        business,
        lambda: message_send_customer(business=business, customer=customer, body="again", client_msg_id=unique("c")),
    )
    agent_sql = _statements(
        business,
        lambda: message_send_agent(
            business=business, user=live_db.agent_a, conversation_id=conversation_id, body="hello", client_msg_id="a"
        ),
    )
    print(f"customer send: {len(customer_sql)} statements; agent reply: {len(agent_sql)} statements")
    for statements, budget in ((customer_sql, CUSTOMER_SEND_BUDGET), (agent_sql, AGENT_REPLY_BUDGET)):
        assert len(statements) <= budget, "\n".join(statements)
        assert sum(s.startswith("SET search_path") for s in statements) == 1
        # No per-message get_or_create, no refresh: the conversation is read once, under its lock.
        assert sum('FROM "messaging_conversation"' in s for s in statements) == 1
    with schema_context(business.schema_name):
        conversation = Conversation.objects.get(pk=conversation_id)
        assert conversation.unread_count == 0 and conversation.assignee_id == live_db.agent_a.pk
        assert Message.objects.filter(conversation_id=conversation_id, direction="in", status="read").count() == 2
        assert conversation.last_event_id == Event.objects.filter(conversation_id=conversation_id).latest("id").pk
