"""The send core's writer: many sends, many conversations, one transaction, one outcome each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation
from django_tenants.utils import tenant_context
from psycopg import _queries as psycopg_queries

from accounts.models import Customer
from billing.models import UsageRecord
from customers.models import Block
from messaging import events
from messaging.errors import MessagingError
from messaging.group_commit import write_batch
from messaging.models import Contact, Conversation, Event, Message
from messaging.sending import SendResult, check_agent_send, check_customer_send, check_template_send, do_send_messages
from messaging.services import message_send_customer
from tests.conftest import World, unique
from tests.messaging.conftest import make_customer


def test_one_group_writes_many_conversations_with_one_outcome_each(world: World) -> None:
    business = world.business_a
    ann, bob, blocker = make_customer("Ann"), make_customer("Bob"), make_customer("Blocker")
    Block.objects.create(customer=blocker, business=business)
    with tenant_context(business):
        start = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        opened = do_send_messages(business=business, requests=[check_customer_send(customer=ann, body="open")])
        assert isinstance(opened[0], SendResult)
        ann_conversation = opened[0].message.conversation_id
        requests = [
            check_customer_send(customer=ann, body="one", client_msg_id="x"),
            check_customer_send(customer=bob, body="two", client_msg_id="x"),  # another author: not a duplicate
            check_customer_send(customer=ann, body="one again", client_msg_id="x"),  # same author and id
            check_agent_send(
                business=business, user=world.agent_a, conversation_id=ann_conversation, body="reply", client_msg_id="r"
            ),
            check_customer_send(customer=blocker, body="let me in"),
            check_template_send(
                customer=blocker, template_name="t", body="news", category="utility", author_key="api:k"
            ),
            check_agent_send(business=business, user=world.agent_a, conversation_id=10**12, body="nobody"),
            check_customer_send(customer=ann, body="after the reply"),
        ]
        outcomes = do_send_messages(business=business, requests=requests)

        one, two, again, reply, blocked, blocked_template, missing, after = outcomes
        assert isinstance(one, SendResult) and isinstance(two, SendResult) and not one.duplicate
        assert isinstance(again, SendResult) and again.duplicate and again.message is one.message
        assert isinstance(blocked, MessagingError) and blocked.code == "blocked"
        assert isinstance(blocked_template, MessagingError) and blocked_template.code == "blocked"
        assert isinstance(missing, MessagingError) and missing.code == "not_found"
        # A refused send writes nothing: no contact, no conversation, no bill for the blocker.
        assert not Contact.objects.filter(customer_id=blocker.pk).exists()
        assert not UsageRecord.objects.filter(customer_id=blocker.pk).exists()

        # The reply read what came before it in the same group, not what came after.
        assert isinstance(reply, SendResult) and isinstance(after, SendResult)
        statuses = dict(Message.objects.filter(conversation_id=ann_conversation).values_list("body", "status"))
        assert statuses == {"open": "read", "one": "read", "reply": "sent", "after the reply": "sent"}
        conversation = Conversation.objects.get(pk=ann_conversation)
        assert conversation.unread_count == 1 and conversation.assignee_id == world.agent_a.pk
        assert UsageRecord.objects.filter(customer_id=ann.pk, category="service").count() == 1

        # One event id each, dense, in request order; each names its conversation's previous one.
        rows = list(Event.objects.filter(id__gt=start).order_by("id"))
        assert [e.id for e in rows] == list(range(start + 1, start + 1 + len(rows)))
        created = [e for e in rows if e.type == "message.created"]
        assert [e.id for e in created] == sorted(
            r.message.event_id for r in (opened[0], one, two, reply, after) if isinstance(r, SendResult)
        )
        types = [e.type for e in rows if e.conversation_id == ann_conversation]
        assert types == [
            "message.created",
            "conversation.updated",  # open
            "message.created",
            "conversation.updated",  # one
            "message.status",
            "message.created",
            "conversation.updated",  # reply: read up to "one" first
            "message.created",
            "conversation.updated",  # after the reply
        ]
        ann_events = [e.id for e in rows if e.conversation_id == ann_conversation]
        assert conversation.last_event_id == ann_events[-1]


def test_a_template_needs_an_active_business(world: World) -> None:
    business = world.business_b
    customer = make_customer()
    business.status = business.Status.SUSPENDED
    business.save(update_fields=["status"])
    with tenant_context(business):
        outcomes = do_send_messages(
            business=business,
            requests=[
                check_template_send(customer=customer, template_name="t", body="b", category="utility", author_key="a"),
                check_customer_send(customer=customer, body="the customer may still write"),
            ],
        )
    refused, written = outcomes
    assert isinstance(refused, MessagingError) and refused.code == "suspended"
    assert isinstance(written, SendResult)


def test_checks_refuse_before_anything_is_queued(world: World) -> None:
    customer = make_customer()
    with pytest.raises(MessagingError) as empty:
        check_customer_send(customer=customer, body="   ")
    assert empty.value.code == "empty"
    with pytest.raises(MessagingError) as member:
        check_agent_send(business=world.business_a, user=world.agent_b, conversation_id=1, body="x")
    assert member.value.code == "not_found"
    with pytest.raises(ValueError):
        check_template_send(customer=customer, template_name="t", body="b", category="nope", author_key="a")


def test_each_refusal_in_a_group_is_worded_in_its_senders_language(world: World) -> None:
    """A group holds several sockets' sends; the writer runs in the first sender's context,
    and each refusal must still be in the language of the page that sent it."""
    business = world.business_a
    german, english = make_customer("Greta"), make_customer("Emma")
    for customer in (german, english):
        Block.objects.create(customer=customer, business=business)
    with translation.override("de"):
        from_german = check_customer_send(customer=german, body="Hallo")
    with translation.override("en"):
        from_english = check_customer_send(customer=english, body="Hello")
    with tenant_context(business), translation.override("de"):  # the group's leader: German
        refused_de, refused_en = do_send_messages(business=business, requests=[from_german, from_english])
    assert isinstance(refused_de, MessagingError) and isinstance(refused_en, MessagingError)
    assert refused_de.code == refused_en.code == "blocked"
    assert refused_de.message.startswith("Sie haben dieses Unternehmen blockiert.")
    assert refused_en.message == "You blocked this business. Unblock it on your Parley page to chat."


# --- the stream counter taken with the COMMIT (events.execute_numbered) ---------------------------


def test_a_frame_template_marks_only_its_own_ids() -> None:
    mark = events.placeholder(0)
    data = {
        "message": {"id": 7, "event_id": mark, "body": '{"id":-1,"event_id":-1} \x01 -1', "reply_to": {"event_id": 3}},
        "other": {"event_id": -12},
    }
    frame = events.event_frame(event_id=mark, type="message.created", data=data)
    template = events.frame_template(frame, mark)
    numbered = events.Numbered(first_id=500).frame(template, 500)
    decoded = json.loads(numbered)
    assert decoded["id"] == 500 and decoded["message"]["event_id"] == 500
    # The body (which spells the placeholder and holds the mark's character), another event's id
    # and another placeholder's digits come through unchanged.
    assert decoded["message"]["body"] == '{"id":-1,"event_id":-1} \x01 -1'
    assert decoded["message"]["reply_to"] == {"event_id": 3} and decoded["other"] == {"event_id": -12}
    assert events.Numbered(first_id=500).id(events.placeholder(2)) == 502
    assert events.Numbered(first_id=500).id(41) == 41 and events.Numbered(first_id=500).id(0) == 0


def test_a_group_numbered_with_its_commit_stores_and_returns_the_same_ids(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several customers and a reply in one group: each message's event id, its stored frame, its
    conversation's pointers and the published frames agree, body text that spells a placeholder
    included."""
    business = world.business_a
    tricky = '{"id":-1,"type":"x"} "event_id":-2, \x01'
    customers = [make_customer(f"Numbered {n}") for n in range(3)]
    with tenant_context(business):
        firsts = [
            message_send_customer(business=business, customer=c, body="hi", client_msg_id=unique("n"))
            for c in customers
        ]
        conversation_id = firsts[0].message.conversation_id
        requests = [check_customer_send(customer=c, body=tricky, client_msg_id=unique("n")) for c in customers] + [
            check_agent_send(
                business=business,
                user=world.agent_a,
                conversation_id=conversation_id,
                body="reply",
                client_msg_id=unique("r"),
            )
        ]
        publishes: list[Any] = []
        monkeypatch.setattr(
            events, "publish_numbered_on_commit", lambda *, schema_name, numbered: publishes.append(numbered)
        )
        outcomes = write_batch(business, requests)
        published = [publish()[0] for publish in publishes]
        assert all(isinstance(o, SendResult) and not o.duplicate for o in outcomes)
        messages = [o.message for o in outcomes if isinstance(o, SendResult)]
        rows = {m.pk: m for m in Message.objects.filter(pk__in=[m.pk for m in messages])}
        stored = {e.pk: e for e in Event.objects.filter(pk__in=[m.event_id for m in messages])}
        for message in messages:
            assert message.event_id > 0 and rows[message.pk].event_id == message.event_id
            frame = json.loads(stored[message.event_id].frame)
            assert frame["id"] == message.event_id
            assert frame["message"]["id"] == message.pk and frame["message"]["event_id"] == message.event_id
            if message.direction == "in":
                assert frame["message"]["body"] == tricky == rows[message.pk].body
        # Every event the group stored was published, byte for byte, with a chain of real ids.
        events_sent = [e for batch in published for e in batch]
        assert events_sent and all(e.id > 0 and e.prev_event_id >= 0 for e in events_sent)
        for event in events_sent:
            assert Event.objects.get(pk=event.id).frame == event.frame
        conversation = Conversation.objects.get(pk=conversation_id)
        assert conversation.last_event_id == max(e.id for e in events_sent if e.conversation_id == conversation_id)
        assert conversation.last_public_event_id == max(
            e.id for e in events_sent if e.conversation_id == conversation_id and e.audience == "all"
        )


def test_a_group_that_makes_a_conversation_takes_its_message_ids_behind_that_lock(world: World) -> None:
    """A customer's first message: the ids its messages use are reserved after the new
    conversation is locked (a writer that made it first then committed its ids before ours)."""
    business = world.business_a
    customer = make_customer("First contact")
    with tenant_context(business), CaptureQueriesContext(connection) as captured:
        (outcome,) = write_batch(business, [check_customer_send(customer=customer, body="hi", client_msg_id="f1")])
    assert isinstance(outcome, SendResult)
    sql = [q["sql"] for q in captured.captured_queries]
    locks = [n for n, s in enumerate(sql) if "FOR UPDATE OF c" in s]  # prepared: "… - PARAMS = …"
    reservations = [n for n, s in enumerate(sql) if "nextval(" in s]
    assert len(locks) == 2 and len(reservations) == 2  # the first lock found no conversation
    assert locks[1] < reservations[1]
    with tenant_context(business):
        assert outcome.message.pk == Message.objects.get(client_msg_id="f1").pk


def test_locked_rows_are_the_models_the_orm_would_load(world: World) -> None:
    """The writers' lock builds its models without Model.__init__ (messaging.locks): each must be
    what a queryset with the same select_related loads — every field, loaded from the database,
    not adding — with its contact, customer and assignee cached."""
    from messaging.locks import conversations_lock

    customer = make_customer("Lock Rows")
    with tenant_context(world.business_a):
        hello = message_send_customer(business=world.business_a, customer=customer, body="hello").message
        conversation_id = hello.conversation_id
        Conversation.objects.filter(pk=conversation_id).update(assignee=world.agent_a)
        expected = Conversation.objects.select_related("contact__customer", "assignee").get(pk=conversation_id)
        with CaptureQueriesContext(connection) as queries:
            (row,) = conversations_lock(business_id=world.business_a.pk, ids=[conversation_id])
            locked = row.conversation
            related = (locked.contact, locked.contact.customer, locked.assignee)
        assert len(queries) == 1  # the related objects are cached, not fetched

    def fields(instance: Any) -> dict[str, Any]:
        return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}

    pairs = [
        (locked, expected),
        (related[0], expected.contact),
        (related[1], expected.contact.customer),
        (related[2], expected.assignee),
    ]
    for got, want in pairs:
        assert type(got) is type(want) and fields(got) == fields(want)
        assert (got._state.adding, got._state.db) == (False, want._state.db)
        # Timestamps in UTC as Django loads them, though psycopg's own loader read them
        # (config.sql.prepared_cursor): equal instants in another zone would pass `==` above.
        for name, value in fields(got).items():
            if isinstance(value, datetime):
                assert value.tzinfo is getattr(want, name).tzinfo is UTC, name
    # The customer's "hello" is the latest unread inbound message.
    assert not row.customer_blocked
    assert row.last_unread_inbound_id == hello.pk


def test_a_writer_checked_seat_refuses_only_its_own_send(world: World) -> None:
    """A websocket's agent send leaves the seat to the writer (its lookup goes out with the
    conversations' lock, one round trip for both): a user without a seat in this business is
    refused `not_found` and writes nothing, and the other sends of the group are written."""
    from accounts.models import User

    business = world.business_a
    ann = make_customer("Ann")
    outsider = User.objects.create_user(f"outsider-{unique('u')}@elsewhere.test", "x-Passw0rd-x")
    with tenant_context(business):
        opened = do_send_messages(business=business, requests=[check_customer_send(customer=ann, body="open")])
        assert isinstance(opened[0], SendResult)
        conversation_id = opened[0].message.conversation_id

        def reply(user: Any, client_msg_id: str) -> Any:
            return check_agent_send(
                business=business,
                user=user,
                conversation_id=conversation_id,
                body="reply",
                client_msg_id=client_msg_id,
                defer_membership=True,
            )

        outcomes = do_send_messages(
            business=business,
            requests=[
                reply(outsider, "o-1"),
                reply(world.agent_a, "m-1"),
                check_customer_send(customer=ann, body="thanks", client_msg_id="c-1"),
            ],
        )
        refused, member, customer = outcomes
        assert isinstance(refused, MessagingError) and refused.code == "not_found"
        assert isinstance(member, SendResult) and not member.duplicate
        assert isinstance(customer, SendResult) and not customer.duplicate
        assert not Message.objects.filter(author_key=f"user:{outsider.pk}").exists()
        written = Message.objects.filter(conversation_id=conversation_id, client_msg_id__in=["m-1", "c-1"])
        assert written.count() == 2

        # A group of outsiders only: every send refused, nothing written, no event taken.
        last_event = Event.objects.order_by("-id").values_list("id", flat=True).first()
        alone = do_send_messages(business=business, requests=[reply(outsider, "o-2"), reply(outsider, "o-3")])
        assert [getattr(o, "code", None) for o in alone] == ["not_found", "not_found"]
        assert Event.objects.order_by("-id").values_list("id", flat=True).first() == last_event
        assert not Message.objects.filter(author_key=f"user:{outsider.pk}").exists()


def _generic_plan(sql: str, params: list[Any], *, settings: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[Any]]:
    """A writer's statement (Django's %s placeholders) as the writer runs it, a prepared
    statement's generic plan: its EXPLAIN ANALYZE plan and its rows. `settings`: planner
    settings for this transaction (SET LOCAL)."""
    import re

    numbers = iter(range(1, 100))
    arguments = ", ".join(["%s"] * len(params))
    with connection.cursor() as cursor:
        for setting in ("plan_cache_mode = force_generic_plan", *settings):
            cursor.execute(f"SET LOCAL {setting}")
        cursor.execute("PREPARE writer_statement AS " + re.sub("%s", lambda _m: f"${next(numbers)}", sql))
        try:
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE writer_statement({arguments})", params)
            plan = cursor.fetchone()[0][0]["Plan"]
            cursor.execute(f"EXECUTE writer_statement({arguments})", params)
            return plan, cursor.fetchall()
        finally:
            cursor.execute("DEALLOCATE writer_statement")


def _scans_of_messages(plan: dict[str, Any]) -> list[dict[str, Any]]:
    def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    scans = [n for n in nodes(plan) if n.get("Relation Name") == Message._meta.db_table]
    assert scans, plan
    return scans


def _unread_messages(conversation: Conversation, author_key: str, count: int) -> list[int]:
    """`count` unread inbound messages of `conversation` (each with its own client_msg_id),
    written in bulk; their ids. (bench.history writes read ones, as a long past is.)"""
    from collab.bulk import reserve_event_ids

    start = reserve_event_ids(count)
    written = Message.objects.bulk_create(
        Message(
            conversation=conversation,
            direction=Message.Direction.INBOUND,
            author_kind=Message.Author.CUSTOMER,
            author_key=author_key,
            body="earlier",
            event_id=start + n,
            client_msg_id=f"earlier-{start + n}",
        )
        for n in range(count)
    )
    return [m.pk for m in written]


def test_the_latest_unread_lookup_reads_one_entry_however_many_messages_wait(world: World) -> None:
    """The send core's lock finds each conversation's latest unread inbound message by reading
    message_awaiting_receipt backwards from the newest entry: one entry, however many wait. With
    a status filter beside it the planner, once ANALYZE had seen most messages read, expected
    one row to pass it and fetched and sorted every unread message of the conversation instead
    (issue 9: the lock's time 5x under autovacuum). Checked on the prepared statement's generic
    plan, the one the writer runs."""
    from bench.history import conversations_lengthen
    from messaging.locks import _lock_params, _lock_sql
    from tenancy.services import business_create

    # A business of its own: the statistics ANALYZE gathers are of this test's messages alone.
    business = business_create(owner=world.owner_a, name="Many Unread", slug=unique("many-unread-"))
    customer = make_customer("Many Unread")
    with tenant_context(business):
        first = message_send_customer(business=business, customer=customer, body="first").message
        waiting = _unread_messages(first.conversation, first.author_key, 300)
        # Then 3,000 read ones, and statistics as autovacuum keeps them (bench.history ANALYZEs).
        conversations_lengthen(business, [first.conversation_id], 3301)
        sql, _names, _bounds = _lock_sql(True)
        plan, (row,) = _generic_plan(sql, _lock_params(business.pk, [first.conversation_id], []))

    for scan in _scans_of_messages(plan):
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan") and scan["Scan Direction"] == "Backward", scan
        assert scan["Actual Rows"] == 1, scan
    assert row[-2] == max(waiting)  # the latest unread inbound message, as before


def test_the_dedupe_lookup_probes_the_index_per_key_whatever_join_the_planner_prefers(world: World) -> None:
    """A send group looks up its keys' earlier messages (client_msg_id) with a prepared
    statement whose generic plan is made once per connection and kept until an ANALYZE. As a
    join, a plan made while the business had few messages hashed the whole messages table for
    every group, however large it had grown since (issue 9: 10 ms a group at 40,000 messages,
    seen with auto_explain under load). Each key now probes the partial unique index in a
    LATERAL subquery. Here the planner is told to avoid nested loops — as the cost of a small
    table made it prefer hashing — and the lookup still reads the index, one probe a key."""
    from messaging.sending import _existing_send

    customer = make_customer("Dedupe Plan")
    others = [make_customer(f"Dedupe Plan {n}") for n in range(31)]
    with tenant_context(world.business_a):
        first = message_send_customer(
            business=world.business_a, customer=customer, body="first", client_msg_id="dedupe-plan-1"
        ).message
        _unread_messages(first.conversation, first.author_key, 3000)
        # A group of 32 customers' sends (keyed by customer, as theirs are): one sent before.
        keys: list[Any] = [(None, customer.pk, first.author_key, "dedupe-plan-1")]
        keys += [(None, other.pk, f"customer:{other.pk}", "dedupe-plan-1") for other in others]
        statements: list[tuple[str, list[Any]]] = []

        class Recorder:
            def execute(self, sql: str, params: list[Any]) -> None:
                statements.append((sql, params))

        _existing_send(Recorder(), keys)
        ((sql, params),) = statements
        plan, found = _generic_plan(sql, params, settings=("enable_nestloop = off",))

    for scan in _scans_of_messages(plan):
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan
        assert scan.get("Index Name") == "message_unique_client_msg_id", scan
    assert [row[0] for row in found] == [first.pk]  # the one key sent before, found


def test_a_new_message_is_the_instance_init_would_make() -> None:
    """The writer makes its messages without Model.__init__ (messaging.locks.model_new): the
    same unsaved instance as `Message(*fields)` — the given values, None in every other field,
    adding — and, once an init signal has a receiver for the model, __init__ itself."""
    from django.db.models import signals

    from messaging.locks import model_new

    values = {"conversation_id": 7, "direction": Message.Direction.INBOUND, "body": "Moin", "choice_id": ""}
    names = [f.attname for f in Message._meta.concrete_fields]
    made = model_new(Message, values)
    want = Message(*[values.get(name) for name in names])  # type: ignore[misc]
    assert {n: made.__dict__[n] for n in names} == {n: want.__dict__[n] for n in names}
    assert made.pk is None and made.created_at is None and made.body == "Moin"
    assert (made._state.adding, made._state.db) == (True, None) == (want._state.adding, want._state.db)

    heard: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs["instance"])

    signals.post_init.connect(receiver, sender=Message)
    try:
        again = model_new(Message, values)
    finally:
        signals.post_init.disconnect(receiver, sender=Message)
    assert heard == [again] and again.body == "Moin" and again.author_key is None


def test_a_groups_numbered_statement_is_scanned_once_however_long(world: World) -> None:
    """psycopg turns a statement's placeholders into PostgreSQL's by scanning its text in Python,
    and keeps the result only for texts up to a length: a send group's numbered statement is
    longer than psycopg's own limit (4,096 characters), and config.sql raises the limit so that
    it is scanned on its first run only, not on every group's."""
    business = world.business_a
    ann, bob = make_customer("Ann"), make_customer("Bob")
    statements: list[str] = []

    def recorded(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    def group(n: int, senders: tuple[Customer, ...] = (ann, bob)) -> None:
        requests = [check_customer_send(customer=c, body=f"{c.pk}: {n}", client_msg_id=unique("g")) for c in senders]
        outcomes = do_send_messages(business=business, requests=requests)
        assert all(isinstance(outcome, SendResult) for outcome in outcomes)

    scanned = mock.patch.object(psycopg_queries, "_query2pg_nocache", wraps=psycopg_queries._query2pg_nocache)
    with tenant_context(business):
        group(0)  # opens both conversations
        # The two conversations differ as a loaded inbox's do: unread counts, one assigned.
        group(1, (ann,))
        Conversation.objects.filter(contact__customer_id=ann.pk).update(
            assignee=world.agent_a, assigned_at=timezone.now()
        )
        group(2)  # the first group of this shape: its statements are scanned (or were before)
        with connection.execute_wrapper(recorded), scanned as scan:
            group(3)
    numbered = [sql for sql in statements if sql.startswith("WITH counter AS")]
    assert len(numbered) == 1
    assert len(numbered[0]) > 4096  # past psycopg's own limit: the case this is about
    assert scan.call_count == 0, [len(call.args[0]) for call in scan.call_args_list]
