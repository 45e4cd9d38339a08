"""Event names, group names, and the one way events leave a service: appended to the business's
stream inside the transaction, published through the channel layer after commit.

Each event is serialized to JSON once, stored as-is for resume, and sent through the layer as
that same text; consumers forward it without parsing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from messaging.models import Event, StreamCounter

logger = logging.getLogger("parley.messaging")

MESSAGE_CREATED = "message.created"
MESSAGE_STATUS = "message.status"
CONVERSATION_UPDATED = "conversation.updated"
# Ephemeral frames (never stored, id null).
TYPING = "typing"
PRESENCE = "presence"
THREAD_UPDATED = "thread.updated"

# --- declared shapes of the stored events (tests/messaging/test_event_schemas.py checks every
# frame the services emit against them). Times are ISO 8601 strings in the JSON text.


class ContactShape(TypedDict):
    id: int
    name: str
    phone: str
    phone_display: str
    notes: str


class AssigneeShape(TypedDict):
    id: int
    name: str


class ConversationShape(TypedDict):
    id: int
    contact: ContactShape
    status: Literal["open", "pending", "resolved"]
    assignee: AssigneeShape | None
    unread: int
    last_message_at: str | None
    preview: str
    window_expires_at: str | None


class MessageShape(TypedDict):
    id: int
    conversation_id: int
    event_id: int
    direction: Literal["in", "out", "internal"]
    author_kind: Literal["customer", "agent", "system", "api"]
    author_name: str
    kind: Literal["text", "note", "template"]
    body: str
    status: Literal["queued", "sent", "delivered", "read", "failed"]
    client_msg_id: str
    created_at: str


class MessageCreatedEvent(TypedDict):
    id: int
    type: Literal["message.created"]
    conversation_id: int
    message: MessageShape


class MessageStatusEvent(TypedDict):
    id: int
    type: Literal["message.status"]
    conversation_id: int
    direction: Literal["in", "out"]
    up_to: int
    status: Literal["delivered", "read"]


class ConversationUpdatedEvent(TypedDict):
    id: int
    type: Literal["conversation.updated"]
    conversation: ConversationShape


class ThreadUpdatedEvent(TypedDict):
    """To /ws/me/: the id of the business event that changed the thread; never message text."""

    id: int
    type: Literal["thread.updated"]
    business_id: int
    unread: int
    last_activity_at: str


EVENT_SHAPES: dict[str, type] = {
    MESSAGE_CREATED: MessageCreatedEvent,
    MESSAGE_STATUS: MessageStatusEvent,
    CONVERSATION_UPDATED: ConversationUpdatedEvent,
    THREAD_UPDATED: ThreadUpdatedEvent,
}


# Layer message types: the consumer method that handles them.
LAYER_INBOX_FRAME = "inbox.frame"
LAYER_CONV_FRAME = "conv.frame"
LAYER_CONV_SIGNAL = "conv.signal"
LAYER_INBOX_SIGNAL = "inbox.signal"
LAYER_ME_FRAME = "me.frame"


def inbox_group(schema_name: str) -> str:
    return f"t.{schema_name}.inbox"


def conversation_group(schema_name: str, conversation_id: int) -> str:
    return f"t.{schema_name}.conv.{int(conversation_id)}"


def customer_group(customer_id: int) -> str:
    # Public-schema data (the cross-business list), so no tenant in the name.
    return f"p.customer.{int(customer_id)}"


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class StoredEvent:
    id: int
    type: str
    conversation_id: int | None
    audience: str
    frame: str
    # The previous customer-visible event of the conversation (see Conversation.last_public_event_id).
    prev_public_id: int
    # The previous event of the conversation, any audience (Conversation.last_event_id), so an
    # agent can tell a gap in one conversation without reading the whole business's stream.
    prev_event_id: int = 0
    # Who the conversation is assigned to once this event committed (None: unassigned).
    assignee_id: int | None = None


def allocate_event_ids(count: int) -> int:
    """Reserve `count` consecutive ids and return the first. Must run inside the caller's
    transaction; the counter row stays locked until it commits, which is what keeps ids in
    commit order. Call it last, after every other lock the transaction takes."""
    assert connection.in_atomic_block, "event ids are allocated inside the writing transaction"
    table = StreamCounter._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, last_id) VALUES (1, %s) "
            f"ON CONFLICT (id) DO UPDATE SET last_id = {table}.last_id + EXCLUDED.last_id RETURNING last_id",
            [count],
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0]) - count + 1


def insert_with_event_ids(
    *, count: int, table: str, columns: list[tuple[str, str]], rows: list[tuple[int, list[Any]]]
) -> tuple[int, dict[int, int]]:
    """`allocate_event_ids(count)` and a multi-row INSERT of rows that carry one of those ids (a
    message and its `message.created` event), in one statement: one round trip less per group.

    `columns` are (name, SQL type) pairs; each row is (offset into the reserved ids, values).
    The ids go into the table's `event_id` column. Returns the first id and {event_id: row id}."""
    assert connection.in_atomic_block, "event ids are allocated inside the writing transaction"
    counter = StreamCounter._meta.db_table
    names = ", ".join(name for name, _type in columns)
    row_sql = "(%s::integer, " + ", ".join(f"%s::{sql_type}" for _name, sql_type in columns) + ")"
    params: list[Any] = [count, count]  # the counter's increment, then the first id's arithmetic
    for offset, values in rows:
        params += [offset, *values]
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH counter AS (INSERT INTO {counter} (id, last_id) VALUES (1, %s) "
            f"ON CONFLICT (id) DO UPDATE SET last_id = {counter}.last_id + EXCLUDED.last_id RETURNING last_id) "
            f"INSERT INTO {table} ({names}, event_id) "
            f"SELECT {', '.join('v.' + name for name, _type in columns)}, counter.last_id - %s + 1 + v.event_offset "
            f"FROM counter, (VALUES {', '.join([row_sql] * len(rows))}) AS v(event_offset, {names}) "
            "RETURNING id, event_id",
            params,
        )
        inserted = {int(event_id): int(pk) for pk, event_id in cursor.fetchall()}
    first = min(inserted) - min(offset for offset, _values in rows)
    return first, inserted


def event_frame(*, event_id: int, type: str, data: dict[str, Any]) -> str:
    """The exact JSON text of an event: stored for resume and sent to clients unchanged."""
    return dumps({"id": event_id, "type": type, **data})


def append_events(events: list[StoredEvent]) -> None:
    """Store events (already numbered by `allocate_event_ids`) in one INSERT (raw: compiling
    bulk_create costs more than the round trip on the send path)."""
    if not events:
        return
    now = timezone.now()
    params: list[Any] = []
    for e in events:
        params += [e.id, e.type, e.conversation_id, e.audience, e.frame, now]
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(events))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Event._meta.db_table} (id, type, conversation_id, audience, frame, created_at) "
            f"VALUES {values}",
            params,
        )


def append_event(
    *,
    event_id: int,
    type: str,
    conversation_id: int | None,
    audience: str,
    data: dict[str, Any],
    prev_public_id: int = 0,
    prev_event_id: int = 0,
    assignee_id: int | None = None,
) -> StoredEvent:
    frame = event_frame(event_id=event_id, type=type, data=data)
    event = StoredEvent(event_id, type, conversation_id, audience, frame, prev_public_id, prev_event_id, assignee_id)
    append_events([event])
    return event


def publish_on_commit(*, schema_name: str, events: list[StoredEvent], customer_updates: list[tuple[int, str]]) -> None:
    """After commit: agents get every event through the inbox group; the customer gets the
    customer-visible ones through the conversation's group; /me/ pages get their list update."""
    if not events and not customer_updates:
        return

    def publish() -> None:
        try:
            async_to_sync(_publish)(schema_name, events, customer_updates)
        except Exception:  # the layer is at-most-once; clients catch up from the stream
            logger.exception("publishing %d events of %s failed", len(events), schema_name)

    transaction.on_commit(publish)


async def _publish(schema_name: str, events: list[StoredEvent], customer_updates: list[tuple[int, str]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for event in events:
        message = {
            "id": event.id,
            "prev": event.prev_public_id,
            "prev_event": event.prev_event_id,
            "assignee": event.assignee_id,
            "text": event.frame,
        }
        await layer.group_send(inbox_group(schema_name), {"type": LAYER_INBOX_FRAME, **message})
        if event.audience == Event.Audience.EVERYONE and event.conversation_id is not None:
            await layer.group_send(
                conversation_group(schema_name, event.conversation_id), {"type": LAYER_CONV_FRAME, **message}
            )
    for customer_id, text in customer_updates:
        await layer.group_send(
            customer_group(customer_id), {"type": LAYER_ME_FRAME, "text": text, "schema": schema_name}
        )


async def send_signal(group: str, layer_type: str, frame: dict[str, Any], *, sender: str = "") -> None:
    """Ephemeral frames (typing, presence): not stored, so id is null and a lost one is harmless."""
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(group, {"type": layer_type, "text": dumps({"id": None, **frame}), "sender": sender})
