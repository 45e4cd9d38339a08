"""Delivered and read receipts, written in groups: one transaction for any number of acks.

Every open inbox acks the messages it shows and every chat acks the business's replies; written
one by one (seat check, lock, two UPDATEs, a recount, the stream counter, the events: ~8 round
trips each) they cost more database time than the sends they acknowledge (issue 9's profile: 28%
of the database threads at 40 acks/s against 24% for 200 sends/s). Here a group of acks —
whatever sockets and conversations they come from — costs a fixed handful of statements:

    seats (agents) → customers' conversations → which acks change anything (no lock) →
    lock those conversations (id order, as the send core) → one UPDATE of the messages →
    the unread recounts → the customers' threads → the stream counter, last → events and
    conversation rows in one statement → publish after commit.

Per ack the rules are those of one ack: reading up to n reads the messages up to n (and
delivers them), delivering up to n delivers the queued or sent ones; a change emits
`message.status` (up to n), a read recounts the unread messages (an agent's read updates the
conversation's `unread_count` with `conversation.updated`; a customer's their /me/ thread). An
ack that changes nothing takes no lock and writes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Customer, User
from config.sql import pipelined, prepared_cursor, rows_source
from directory.services import customer_threads_set_unread_later
from messaging import events
from messaging.errors import MessagingError, not_found
from messaging.events import Statement
from messaging.locks import conversations_lock
from messaging.models import Contact, Conversation, Event, Message, awaiting_receipt_sql
from messaging.payloads import conversation_payload
from messaging.selectors import seats_send

BIGINT_MAX = 2**63 - 1

IN, OUT = Message.Direction.INBOUND, Message.Direction.OUTBOUND
READ, DELIVERED = Message.Status.READ, Message.Status.DELIVERED


@dataclass(frozen=True)
class Mark:
    """One ack: an agent's (`user`, a conversation) or a customer's (their one conversation)."""

    up_to: int
    read: bool
    user: User | None = None
    conversation_id: int | None = None
    customer: Customer | None = None


@dataclass
class _Key:
    """The acks of one conversation's messages in one direction, merged."""

    conversation_id: int
    direction: str
    read_up_to: int | None = None
    delivered_up_to: int | None = None
    customer_id: int | None = None  # a customer's read: their /me/ thread is recounted
    agent_read: bool = False  # an agent's read: the conversation's unread_count is recounted
    read_changed: int = 0
    delivered_changed: int = 0
    unread: int | None = None


@dataclass
class _Conversation:
    row: Conversation
    pending: list[tuple[str, str, Any]] = field(default_factory=list)  # (type, audience, data)
    unread_changed: bool = False


def _bounded(value: int) -> int:
    return max(0, min(value, BIGINT_MAX))


def _keys(
    business_id: int, marks: Sequence[Mark]
) -> tuple[list[int | MessagingError | None], list[_Key | None], dict[Any, _Key]]:
    """Seats and customers' conversations (a statement each, only if needed); each ack's key."""
    outcomes: list[int | MessagingError | None] = [None] * len(marks)
    refs: list[_Key | None] = [None] * len(marks)
    users = {m.user.pk for m in marks if m.user is not None}
    customers = {m.customer.pk for m in marks if m.customer is not None}
    seated: set[int] = set()
    conversation_of: dict[int, int] = {}
    # Raw SQL: compiling the two querysets cost more than the database spends answering them, at a
    # few dozen ack groups a second per process.
    with connection.cursor() as cursor:
        if users:
            seats_send(cursor, business_id=business_id, user_ids=sorted(users))
            seated = {user_id for user_id, _role in cursor.fetchall()}
        if customers:
            cursor.execute(
                f"SELECT ct.customer_id, c.id FROM {Conversation._meta.db_table} c "
                f"JOIN {Contact._meta.db_table} ct ON ct.id = c.contact_id WHERE ct.customer_id = ANY(%s)",
                [sorted(customers)],
            )
            conversation_of = dict(cursor.fetchall())
    keys: dict[Any, _Key] = {}
    for index, mark in enumerate(marks):
        if mark.customer is not None:
            found = conversation_of.get(mark.customer.pk)
            if found is None:
                outcomes[index] = 0  # no conversation yet: nothing to acknowledge
                continue
            conversation_id, direction = found, OUT
        else:
            if mark.user is None or mark.user.pk not in seated or mark.conversation_id is None:
                outcomes[index] = not_found()
                continue
            if not 0 < mark.conversation_id <= BIGINT_MAX:
                outcomes[index] = not_found()
                continue
            conversation_id, direction = mark.conversation_id, IN
        key = keys.setdefault((conversation_id, direction), _Key(conversation_id, direction))
        refs[index] = key
        up_to = _bounded(mark.up_to)
        if mark.read:
            key.read_up_to = max(up_to, key.read_up_to or 0)
            if mark.customer is not None:
                key.customer_id = mark.customer.pk
            else:
                key.agent_read = True
        else:
            key.delivered_up_to = max(up_to, key.delivered_up_to or 0)
    return outcomes, refs, keys


_KEY_COLUMNS = [
    ("conversation_id", "bigint"),
    ("direction", "varchar"),
    ("read_up_to", "bigint"),
    ("delivered_up_to", "bigint"),
]


def _unnest(keys: list[_Key]) -> tuple[str, list[Any]]:
    """The keys as a row source `v`, bound one parameter per column (the send core's way)."""
    return rows_source(_KEY_COLUMNS, [(k.conversation_id, k.direction, k.read_up_to, k.delivered_up_to) for k in keys])


# A message an ack changes: read up to read_up_to (not read or failed yet, or not delivered), or
# delivered up to delivered_up_to (queued or sent). NULL bounds match nothing. Each of those is
# awaiting a receipt, so the index of those messages finds them (read ones are not in it).
_CHANGES = (
    "((m.id <= v.read_up_to AND (m.status NOT IN ('read', 'failed') OR m.delivered_at IS NULL)) "
    f"OR (m.id <= v.delivered_up_to AND m.status IN ('queued', 'sent'))) AND {awaiting_receipt_sql('m')}"
)
# The unread messages of a key's conversation and direction (the same index).
_UNREAD_COUNT = (
    f"(SELECT count(*) FROM {Message._meta.db_table} m WHERE m.conversation_id = v.conversation_id "
    f"AND m.direction = v.direction AND m.read_at IS NULL AND {awaiting_receipt_sql('m')})"
)


def _needing_work(keys: list[_Key]) -> tuple[set[int], list[_Key]]:
    """Without a lock: the conversations that exist, and the keys that change something (an
    agent's read also when the conversation's unread_count is off). Receipts only move forward,
    so a key found to change nothing cannot need work later in this transaction."""
    message, conversation = Message._meta.db_table, Conversation._meta.db_table
    source, params = _unnest(keys)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT v.conversation_id, v.direction, c.id IS NOT NULL, "
            f"EXISTS (SELECT 1 FROM {message} m WHERE m.conversation_id = v.conversation_id "
            f"AND m.direction = v.direction AND {_CHANGES}), "
            f"(v.direction = %s AND v.read_up_to IS NOT NULL AND c.unread_count <> {_UNREAD_COUNT}) "
            f"FROM {source} LEFT JOIN {conversation} c ON c.id = v.conversation_id",
            [IN, *params],
        )
        rows = cursor.fetchall()
    by_key = {(k.conversation_id, k.direction): k for k in keys}
    existing: set[int] = set()
    work: list[_Key] = []
    for conversation_id, direction, exists, changes, unread_off in rows:
        if not exists:
            continue
        existing.add(conversation_id)
        key = by_key[(conversation_id, direction)]
        if changes or (unread_off and key.agent_read):
            work.append(key)
    return existing, work


def _update_statement(keys: list[_Key], now: Any) -> Statement:
    """One UPDATE for every key, returning what each changed row became (read, delivered)."""
    message = Message._meta.db_table
    source, params = _unnest(keys)
    return (
        f"UPDATE {message} m SET "
        "status = CASE WHEN m.id <= v.read_up_to THEN "
        "(CASE WHEN m.status IN ('read', 'failed') THEN m.status ELSE 'read' END) "
        "WHEN m.status IN ('queued', 'sent') THEN 'delivered' ELSE m.status END, "
        "read_at = CASE WHEN m.id <= v.read_up_to AND m.status NOT IN ('read', 'failed') "
        "THEN %s ELSE m.read_at END, "
        "delivered_at = CASE WHEN m.id <= v.read_up_to THEN COALESCE(m.delivered_at, %s) "
        "WHEN m.status IN ('queued', 'sent') THEN %s ELSE m.delivered_at END "
        f"FROM {source} "
        f"WHERE m.conversation_id = v.conversation_id AND m.direction = v.direction AND {_CHANGES} "
        "RETURNING m.conversation_id, m.direction, m.read_at = %s, m.status = 'delivered'",
        [now, now, now, *params, now],
    )


def _recount_statement(keys: list[_Key]) -> Statement:
    """The unread messages left in each key's conversation and direction (after the UPDATE: the
    statements run in order in one transaction, so this one sees its changes)."""
    source, params = _unnest(keys)
    return f"SELECT v.conversation_id, v.direction, {_UNREAD_COUNT} FROM {source}", params


def _lock_update_recount(keys: list[_Key], now: Any) -> dict[int, _Conversation]:
    """Lock and read the keys' conversations (id order, as the send core: no crosswise waits),
    then update their messages and recount the read keys' unread ones, all in one round trip
    (config.sql.pipelined: the UPDATE and the recount are sent behind the lock, before its rows
    are read; they run after it in the same transaction, so the rows are locked first and the
    recount sees the UPDATE's changes)."""
    recounted = [k for k in keys if k.read_up_to is not None and (k.agent_read or k.customer_id)]
    # Prepared (their texts do not change with their values: `rows_source`), parsed once per
    # connection instead of from their text in every group; in the pipeline, so preparing one
    # costs no round trip of its own.
    with prepared_cursor() as update, prepared_cursor() as recount:

        def behind() -> None:
            update.execute(*_update_statement(keys, now))
            if recounted:
                recount.execute(*_recount_statement(recounted))

        rows = conversations_lock(ids=sorted({k.conversation_id for k in keys}), behind=behind)
        changed = update.fetchall()
        counts = {(c, d): n for c, d, n in recount.fetchall()} if recounted else {}
    conversations = {row.conversation.pk: _Conversation(row.conversation) for row in rows}
    by_key = {(k.conversation_id, k.direction): k for k in keys}
    for conversation_id, direction, became_read, became_delivered in changed:
        key = by_key[(conversation_id, direction)]
        key.read_changed += bool(became_read)
        key.delivered_changed += bool(became_delivered)
    for key in recounted:
        key.unread = int(counts[(key.conversation_id, key.direction)])
    return conversations


def marks_write(*, business: Any, marks: Sequence[Mark]) -> list[int | MessagingError]:
    """Write a group of acks to one business (in its schema) in one transaction. One outcome per
    ack, in order: how many messages it changed (shared by acks merged into one), or its
    MessagingError (not_found: no seat, or no such conversation)."""
    outcomes, refs, keys = _keys(business.pk, marks)
    if keys:
        existing, work = _needing_work(list(keys.values()))
        for index, key in enumerate(refs):
            if key is not None and key.conversation_id not in existing:
                outcomes[index] = not_found() if marks[index].customer is None else 0
        if work:
            # Pipelined (config.sql.pipelined): the UPDATE and the recount share one round
            # trip, the customers' threads and the stream counter another, and the events'
            # statement goes out with the COMMIT.
            with transaction.atomic(), pipelined(commit=True):
                numbering = _write(business, work)
            if numbering is not None:
                numbering()  # committed and published, or (in an outer transaction) numbered now
    results: list[int | MessagingError] = []
    for index, mark in enumerate(marks):
        outcome, key = outcomes[index], refs[index]
        if outcome is None:
            assert key is not None
            outcome = key.read_changed if mark.read else key.delivered_changed
        results.append(outcome)
    return results


def _write(business: Any, keys: list[_Key]) -> Callable[[], object] | None:
    now = timezone.now()
    conversations = _lock_update_recount(keys, now)
    customer_unread: list[tuple[int, Any, int]] = []
    for key in keys:
        held = conversations.get(key.conversation_id)
        if held is None:  # deleted meanwhile
            continue
        conversation = held.row
        if key.read_changed:
            held.pending.append(_status(conversation.pk, key.direction, key.read_up_to, READ))
        if key.delivered_changed:
            held.pending.append(_status(conversation.pk, key.direction, key.delivered_up_to, DELIVERED))
        if key.agent_read and key.unread is not None and key.unread != conversation.unread_count:
            conversation.unread_count = key.unread
            held.unread_changed = True
            held.pending.append(
                (
                    events.CONVERSATION_UPDATED,
                    Event.Audience.AGENTS,
                    {"conversation": conversation_payload(conversation)},
                )
            )
        if key.customer_id and key.read_changed and key.unread is not None:
            customer_unread.append((key.customer_id, conversation.last_message_at or now, key.unread))
    # The threads' upsert is sent now and read after the commit (with the counter's statement).
    read_states = customer_threads_set_unread_later(business_id=business.pk, rows=customer_unread)
    held_list = [h for h in conversations.values() if h.pending or h.unread_changed]
    count = sum(len(h.pending) for h in held_list)
    if not count:
        read_states()
        return None
    # Every other lock is held: the stream counter now, in the statement that goes out with the
    # COMMIT (events.execute_numbered): the events travel with placeholders for their ids.
    unnumbered: list[events.Unnumbered] = []
    last_of: dict[int, int] = {}  # conversation → the offset of its group's last event
    for held in held_list:
        for type, audience, data in held.pending:
            last_of[held.row.pk] = len(unnumbered)
            unnumbered.append(events.unnumbered(held.row, len(unnumbered), type, audience, data))
    table = Conversation._meta.db_table
    source, params = rows_source(
        [("id", "bigint"), ("last_public", "bigint"), ("last_event", "bigint"), ("unread", "integer")],
        [
            (
                h.row.pk,
                h.row.last_public_event_id,
                h.row.last_event_id,
                h.row.unread_count if h.unread_changed else None,
            )
            for h in held_list
        ],
    )
    number = events.execute_numbered(
        count,
        [
            (
                f"UPDATE {table} AS c SET last_public_event_id = {events.numbered_sql('v.last_public')}, "
                f"last_event_id = {events.numbered_sql('v.last_event')}, "
                "unread_count = COALESCE(v.unread, c.unread_count), "
                "updated_at = CASE WHEN v.unread IS NULL THEN c.updated_at ELSE %s END "
                f"FROM counter, {source} WHERE c.id = v.id",
                [now, *params],
            ),
            events.append_templates_statement(unnumbered, now),
        ],
    )
    conversation_of_customer = {k.customer_id: k.conversation_id for k in keys if k.customer_id}

    @functools.cache
    def numbered() -> tuple[list[events.StoredEvent], list[tuple[int, str]]]:
        ids = number()
        stored = [ids.stored(event) for event in unnumbered]
        for held in held_list:
            ids.pointers(held.row)
        states = read_states()
        customer_updates = [
            (
                customer_id,
                events.dumps(
                    {"id": stored[last_of[conversation_id]].id, "type": events.THREAD_UPDATED, **state.frame_data()}
                ),
            )
            for customer_id, state in states.items()
            if (conversation_id := conversation_of_customer.get(customer_id)) in last_of
        ]
        return stored, customer_updates

    events.publish_numbered_on_commit(schema_name=business.schema_name, numbered=numbered)
    return numbered


def _status(conversation_id: int, direction: str, up_to: int | None, status: str) -> tuple[str, str, Any]:
    return (
        events.MESSAGE_STATUS,
        Event.Audience.EVERYONE,
        {"conversation_id": conversation_id, "direction": direction, "up_to": up_to, "status": status},
    )
