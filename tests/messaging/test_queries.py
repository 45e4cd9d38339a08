"""Query budgets: list views and receipts cost a fixed number of queries, whatever the size.

django-tenants sends `SET search_path` before every query, so each budget counts every
query twice."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import psycopg._cursor_base
import psycopg._pipeline_base
import psycopg.generators
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context, tenant_context

from directory.models import CustomerThread
from messaging import selectors
from messaging.group_commit import write_batch
from messaging.models import Conversation, Event, Message
from messaging.receipts import Mark, marks_write
from messaging.sending import check_agent_send, check_customer_send
from messaging.services import (
    MessagingError,
    message_send_agent,
    message_send_customer,
    messages_mark_by_agent,
    messages_mark_by_customer,
)
from tests.conftest import World, business_client, unique
from tests.messaging.conftest import make_customer
from tests.psycopg_waits import socket_waits


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
# One statement more since the messages' ids are reserved behind the lock (session 8): it shares
# the lock's round trip and lets the stream counter go out with the COMMIT (one round trip less).
# One more since the group's statements are planned generically (session 21: `SET LOCAL
# plan_cache_mode`, messaging.sending._plan_generically): it shares the first round trip, and
# PostgreSQL stops planning three statements on every run. One fewer since the customers'
# contacts with the business are recorded in the statement that upserts their threads (session
# 45: directory.services `alongside`; each statement costs the writer ~0.2-0.4 ms of Python).
CUSTOMER_SEND_BUDGET = 7
AGENT_REPLY_BUDGET = 13


def _statements(business: Any, send: Any) -> list[str]:
    connection.set_schema_to_public()
    with CaptureQueriesContext(connection) as captured, schema_context(business.schema_name):
        send()
    return [q["sql"] for q in captured.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]


def _first_send(live_db: World, settings: Any) -> tuple[Any, Any, int]:
    """Business A, a customer and the conversation their first message opened (not measured)."""
    # The assignment settings are read once per TTL per process (an amortised statement); on a
    # slow run the first send's copy could expire before the measured one, so hold it.
    settings.PARLEY_ASSIGNMENT_SETTINGS_TTL = 3600
    business = live_db.business_a
    customer = make_customer()
    with schema_context(business.schema_name):
        first = message_send_customer(business=business, customer=customer, body="hi", client_msg_id=unique("c"))
    return business, customer, first.message.conversation_id


def test_a_send_is_a_few_statements(live_db: World, settings: Any) -> None:
    business, customer, conversation_id = _first_send(live_db, settings)

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
        # The contact is recorded in the threads' upsert, not a statement of its own.
        contacts = [s for s in statements if "customers_businesscontact" in s]
        assert len(contacts) == 1 and "directory_customerthread" in contacts[0], contacts
    with schema_context(business.schema_name):
        conversation = Conversation.objects.get(pk=conversation_id)
        assert conversation.unread_count == 0 and conversation.assignee_id == live_db.agent_a.pk
        assert Message.objects.filter(conversation_id=conversation_id, direction="in", status="read").count() == 2
        assert conversation.last_event_id == Event.objects.filter(conversation_id=conversation_id).latest("id").pk


# Round trips of one send group as the group commit writes it (its own transaction): every time
# the client waits for the server, BEGIN and COMMIT included. On a busy process each one also
# costs a wait for the GIL after the answer (issue 9), so this is the budget that matters more
# than the statement count. Before pipelining (config.sql.pipelined): 9 for a customer send, 14
# for an agent reply (a websocket's: its seat checked in the group); pipelined, 6 and 9; with
# the COMMIT sent in the pipeline's last round trip (`pipelined(commit=True)`), 5 and 8; with the
# customers' threads read after the stream counter's statement (one round trip for both), 4 and
# 7; with BEGIN queued in the pipeline instead of psycopg's BEGIN and sync (config.sql), 3 and
# 6: BEGIN with the locks and the dedupe lookup, the threads with the counter and the messages,
# the rest with COMMIT; with the messages' ids reserved behind the lock and the stream counter
# taken by the statement that goes out with the COMMIT (events.execute_numbered), 2 and 5: BEGIN
# with the locks, the dedupe lookup and the ids; everything else with COMMIT; with the agent's
# seat looked up ahead of the lock and read after its answer (one round trip for both), 2 and 4;
# with the billing windows locked and read behind the conversations' lock (billing's lock was a
# round trip of its own), 2 and 3 — and 2 for a reply into a billable conversation still open
# (the reply that opens one reads its prices with the free tier's count).
CUSTOMER_SEND_ROUND_TRIPS = 2
AGENT_REPLY_ROUND_TRIPS = 3
OPEN_CONVERSATION_REPLY_ROUND_TRIPS = 2


@contextlib.contextmanager
def _round_trips() -> Iterator[list[int]]:
    """Count the client's waits for the server: each statement or command outside a pipeline
    (psycopg's `execute` generator: send, then wait for the answer); inside one, each sync (the
    BEGIN a pipeline's first statement starts, its end) and each fetch of an answer that has
    not arrived yet (one that arrived while the client was busy cost no wait: not counted)."""
    count = [0]
    execute = psycopg.generators.execute
    pipeline = psycopg._pipeline_base.BasePipeline
    sync_gen, exit_gen, fetch_pipeline = pipeline._sync_gen, pipeline._exit_gen, psycopg.Cursor._fetch_pipeline

    def counting_execute(pgconn: Any) -> Any:
        count[0] += 1
        return (yield from execute(pgconn))

    def counting_sync_gen(self: Any) -> Any:
        count[0] += 1
        return (yield from sync_gen(self))

    def counting_exit_gen(self: Any) -> Any:
        count[0] += 1
        return (yield from exit_gen(self))

    def counting_fetch_pipeline(self: Any) -> None:
        if self._execmany_returning is not False and not self.pgresult and self._conn._pipeline:
            count[0] += 1
        fetch_pipeline(self)

    patches = [
        (psycopg.generators, "execute", counting_execute),
        (psycopg._cursor_base, "execute", counting_execute),
        (pipeline, "_sync_gen", counting_sync_gen),
        (pipeline, "_exit_gen", counting_exit_gen),
        (psycopg.Cursor, "_fetch_pipeline", counting_fetch_pipeline),
    ]
    saved = [(target, name, getattr(target, name)) for target, name, _new in patches]
    for target, name, new in patches:
        setattr(target, name, new)
    try:
        yield count
    finally:
        for target, name, old in saved:
            setattr(target, name, old)


def _group_round_trips(business: Any, send: Callable[[], Any]) -> tuple[int, int]:
    """Round trips and socket waits of one group."""
    connection.set_schema_to_public()
    with schema_context(business.schema_name), _round_trips() as count, socket_waits() as waits:
        send()
    return count[0], waits[0]


def test_a_send_group_is_a_few_round_trips(live_db: World, settings: Any) -> None:
    business, customer, conversation_id = _first_send(live_db, settings)
    # As a websocket sends: the seat checked by the writer, so the group is all the send's work.
    with schema_context(business.schema_name):
        reply_request = check_agent_send(
            business=business,
            user=live_db.agent_a,
            conversation_id=conversation_id,
            body="hello",
            client_msg_id=unique("a"),
            defer_membership=True,
        )
        customer_request = check_customer_send(customer=customer, body="again", client_msg_id=unique("c"))
        second_reply = replace(reply_request, client_msg_id=unique("a"))
    customer_trips, customer_waits = _group_round_trips(business, lambda: write_batch(business, [customer_request]))
    agent_trips, agent_waits = _group_round_trips(business, lambda: write_batch(business, [reply_request]))
    joined_trips, _waits = _group_round_trips(business, lambda: write_batch(business, [second_reply]))
    print(f"customer send: {customer_trips} round trips, {customer_waits} socket waits; ", end="")
    print(f"agent reply: {agent_trips} round trips, {agent_waits} socket waits; the next reply: {joined_trips}")
    assert customer_trips <= CUSTOMER_SEND_ROUND_TRIPS
    assert agent_trips <= AGENT_REPLY_ROUND_TRIPS
    assert joined_trips <= OPEN_CONVERSATION_REPLY_ROUND_TRIPS
    # Statements are sent without a wait on the socket (config.sql): the client waits only for
    # a round trip, not once for every statement sent (21 for a customer send, before).
    assert customer_waits <= customer_trips and agent_waits <= agent_trips
    with schema_context(business.schema_name):
        sent = Message.objects.filter(conversation_id=conversation_id, client_msg_id=reply_request.client_msg_id)
        assert sent.get().direction == "out"
        # Again: answered as a duplicate, nothing written twice.
        (again,) = write_batch(business, [reply_request])
        assert not isinstance(again, BaseException) and again.duplicate


# Round trips of one ack group that changes something (an agent's read and a customer's read of
# two conversations, as the ack gatherer writes them): seats, the customers' conversations, which
# acks change anything, then the transaction (BEGIN with the lock, the UPDATE and the recount; the
# customers' threads with the stream counter; the events' statement with COMMIT). Before it was
# pipelined: 12 (the recount, the threads and COMMIT a round trip each of their own); with BEGIN
# queued in the pipeline (it was synced on its own), 8; with the stream counter taken by the
# events' statement that goes out with the COMMIT (events.execute_numbered), 7; with the UPDATE
# and the recount sent behind the lock (messaging.locks), 6.
ACK_GROUP_ROUND_TRIPS = 6


def test_an_ack_group_is_a_few_round_trips(live_db: World, settings: Any) -> None:
    business, customer, conversation_id = _first_send(live_db, settings)
    with schema_context(business.schema_name):
        reply = message_send_agent(
            business=business, user=live_db.agent_a, conversation_id=conversation_id, body="hello"
        ).message
        inbound = message_send_customer(business=business, customer=customer, body="and you?").message
    marks = [
        Mark(up_to=inbound.pk, read=True, user=live_db.agent_a, conversation_id=conversation_id),
        Mark(up_to=reply.pk, read=True, customer=customer),
    ]
    connection.set_schema_to_public()
    with schema_context(business.schema_name), _round_trips() as count, socket_waits() as waits:
        outcomes = marks_write(business=business, marks=marks)
    print(f"ack group: {count[0]} round trips, {waits[0]} socket waits")
    assert outcomes == [1, 1]
    assert count[0] <= ACK_GROUP_ROUND_TRIPS
    assert waits[0] <= count[0]
    with schema_context(business.schema_name):
        conversation = Conversation.objects.get(pk=conversation_id)
        assert conversation.unread_count == 0
        assert not Message.objects.filter(conversation_id=conversation_id, read_at=None).exists()
        assert conversation.last_event_id == Event.objects.filter(conversation_id=conversation_id).latest("id").pk
    assert CustomerThread.objects.get(customer=customer, business=business).unread_count == 0
