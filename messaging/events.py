"""Event names, group names, and the one way events leave a service: appended to the business's
stream inside the transaction, published through the channel layer after commit.

Each event is serialized to JSON once, stored as-is for resume, and sent through the layer as
that same text; consumers forward it without parsing.

Delivery policy (`_publish`; issue 9: every message to every agent does not scale):
- every event of a conversation goes to the agents who have it open
  (`t.<schema>.conv.<id>.agents`) and to its assignee (`t.<schema>.user.<id>`), each frame
  naming the conversation's previous event (`prev`) so a viewer can tell a missed one;
- customer-visible events go to the customer's sockets (`t.<schema>.conv.<id>`), chained by
  the previous customer-visible event;
- the inbox lists of all agents (`t.<schema>.inbox`) get `conversations.updated`: the latest
  `conversation.updated` of each changed conversation, gathered per process for
  `INBOX_FLUSH_SECONDS` and sent as one frame, with the id ranges it covers so a socket can tell
  a batch that went missing (see consumers.InboxConsumer).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction

from messaging.models import Event, StreamCounter

logger = logging.getLogger("parley.messaging")

MESSAGE_CREATED = "message.created"
MESSAGE_STATUS = "message.status"
CONVERSATION_UPDATED = "conversation.updated"
# Ephemeral frames (never stored, id null).
TYPING = "typing"
PRESENCE = "presence"
THREAD_UPDATED = "thread.updated"

# What agents' lists get: the latest conversation.updated of each changed conversation (id null;
# `last` is the event id up to which the list is complete; `events` the stored frames).
CONVERSATIONS_UPDATED = "conversations.updated"

# Layer message types: the consumer method that handles them.
LAYER_INBOX_BATCH = "inbox.batch"
LAYER_AGENTS_FRAME = "agents.frame"
LAYER_CONV_FRAME = "conv.frame"
LAYER_CONV_SIGNAL = "conv.signal"
LAYER_INBOX_SIGNAL = "inbox.signal"
LAYER_ME_FRAME = "me.frame"


def inbox_group(schema_name: str) -> str:
    return f"t.{schema_name}.inbox"


def conversation_group(schema_name: str, conversation_id: int) -> str:
    return f"t.{schema_name}.conv.{int(conversation_id)}"


def agents_conversation_group(schema_name: str, conversation_id: int) -> str:
    """Agents who have the conversation open: every event of it, notes included."""
    return f"t.{schema_name}.conv.{int(conversation_id)}.agents"


def user_inbox_group(schema_name: str, user_id: int) -> str:
    """One agent's sockets in one business: events of the conversations assigned to them."""
    return f"t.{schema_name}.user.{int(user_id)}"


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


def append_event(
    *,
    event_id: int,
    type: str,
    conversation_id: int | None,
    audience: str,
    data: dict[str, Any],
    prev_public_id: int = 0,
) -> StoredEvent:
    frame = dumps({"id": event_id, "type": type, **data})
    Event.objects.create(id=event_id, type=type, conversation_id=conversation_id, audience=audience, frame=frame)
    return StoredEvent(event_id, type, conversation_id, audience, frame, prev_public_id)


def publish_on_commit(*, schema_name: str, events: list[StoredEvent], customer_updates: list[tuple[int, str]]) -> None:
    """After commit: conversation events to the agents viewing it and its assignee, customer-visible
    ones to the customer, coalesced list updates to every agent, /me/ pages their list update."""
    if not events and not customer_updates:
        return

    def publish() -> None:
        try:
            prevs = _conversation_prevs(events)
            async_to_sync(_publish)(schema_name, events, customer_updates, prevs)
        except Exception:  # the layer is at-most-once; clients catch up from the stream
            logger.exception("publishing %d events of %s failed", len(events), schema_name)

    transaction.on_commit(publish)


def _conversation_prevs(events: list[StoredEvent]) -> dict[int, int]:
    """The previous event (any audience) of each event's conversation. From the stored event
    when the send core records it (`prev_event_id`); else read once per conversation, after
    commit, in the caller's schema: ids commit in order, so everything below this transaction's
    first id is already there."""
    prevs: dict[int, int] = {}
    last_of: dict[int, int] = {}
    for event in events:
        if event.conversation_id is None:
            continue
        known = getattr(event, "prev_event_id", None)
        if known is not None:
            prevs[event.id] = int(known)
        elif event.conversation_id in last_of:
            prevs[event.id] = last_of[event.conversation_id]
        else:
            earlier = (
                Event.objects.filter(conversation_id=event.conversation_id, id__lt=event.id)
                .order_by("-id")
                .values_list("id", flat=True)
                .first()
            )
            prevs[event.id] = int(earlier or 0)
        last_of[event.conversation_id] = event.id
    return prevs


def _assignee_of(event: StoredEvent, updates: dict[int, StoredEvent]) -> int | None:
    known = getattr(event, "assignee_id", None)
    if known is not None:
        return int(known)
    update = updates.get(event.conversation_id or 0)
    if update is None:
        return None
    assignee = json.loads(update.frame).get("conversation", {}).get("assignee")
    return int(assignee["id"]) if assignee else None


async def _publish(
    schema_name: str,
    events: list[StoredEvent],
    customer_updates: list[tuple[int, str]],
    prevs: dict[int, int] | None = None,
) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    prevs = prevs or {}
    updates = {e.conversation_id: e for e in events if e.type == CONVERSATION_UPDATED and e.conversation_id}
    assignees: dict[int, int | None] = {}
    for event in events:
        if event.conversation_id is None:
            continue
        cid = event.conversation_id
        if cid not in assignees:
            assignees[cid] = _assignee_of(event, updates)
        message = {"id": event.id, "prev": prevs.get(event.id, 0), "conversation_id": cid, "text": event.frame}
        await layer.group_send(agents_conversation_group(schema_name, cid), {"type": LAYER_AGENTS_FRAME, **message})
        assignee = assignees[cid]
        if assignee is not None:
            await layer.group_send(user_inbox_group(schema_name, assignee), {"type": LAYER_AGENTS_FRAME, **message})
        if event.audience == Event.Audience.EVERYONE:
            await layer.group_send(
                conversation_group(schema_name, cid),
                {"type": LAYER_CONV_FRAME, "id": event.id, "prev": event.prev_public_id, "text": event.frame},
            )
    if events:
        await inbox_coalescer.offer(schema_name, (events[0].id, events[-1].id), list(updates.values()))
    for customer_id, text in customer_updates:
        await layer.group_send(
            customer_group(customer_id), {"type": LAYER_ME_FRAME, "text": text, "schema": schema_name}
        )


# --- the inbox list: coalesced per process -------------------------------------------------

INBOX_FLUSH_SECONDS = 0.25


def inbox_batch_message(*, ranges: list[tuple[int, int]], updates: list[tuple[int, str]]) -> dict[str, Any]:
    """One layer message for agents' lists. `updates`: (event id, stored conversation.updated text),
    the latest per conversation. The client frame is built here once, from the stored texts."""
    last = max(b for _a, b in ranges)
    text = (
        f'{{"id":null,"type":"{CONVERSATIONS_UPDATED}","last":{last},"events":['
        + ",".join(t for _id, t in sorted(updates))
        + "]}"
    )
    return {"type": LAYER_INBOX_BATCH, "ranges": [list(r) for r in ranges], "last": last, "text": text}


@dataclass
class _Pending:
    ranges: list[tuple[int, int]] = field(default_factory=list)
    latest: dict[int, tuple[int, str]] = field(default_factory=dict)  # conversation -> (event id, text)


class InboxCoalescer:
    """Gathers list updates of one process for INBOX_FLUSH_SECONDS: each agent socket then gets
    a few list frames a second, whatever the message rate. It runs on the server's event loop
    (attached by the first consumer); code without one (a job worker, a shell) sends at once."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: dict[str, _Pending] = {}
        self.scheduled = False
        self.sending: set[asyncio.Task[None]] = set()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """From a consumer, on the server's loop (the only loop that touches `pending`)."""
        if self.loop is not loop:
            self.loop = loop
            self.pending = {}
            self.scheduled = False

    async def offer(self, schema_name: str, ids: tuple[int, int], updates: list[StoredEvent]) -> None:
        if asyncio.get_running_loop() is not self.loop:
            layer = get_channel_layer()
            if layer is not None:
                message = inbox_batch_message(ranges=[ids], updates=[(u.id, u.frame) for u in updates])
                await layer.group_send(inbox_group(schema_name), message)
            return
        batch = self.pending.setdefault(schema_name, _Pending())
        batch.ranges.append(ids)
        for update in updates:
            assert update.conversation_id is not None
            known = batch.latest.get(update.conversation_id)
            if known is None or known[0] < update.id:
                batch.latest[update.conversation_id] = (update.id, update.frame)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_later(INBOX_FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, {}
        if pending:
            task = asyncio.ensure_future(self._send(pending))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

    async def _send(self, pending: dict[str, _Pending]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        for schema_name, batch in pending.items():
            try:
                message = inbox_batch_message(ranges=batch.ranges, updates=list(batch.latest.values()))
                await layer.group_send(inbox_group(schema_name), message)
            except Exception:  # a lost batch is a gap the sockets fill from the stream
                logger.exception("inbox list batch for %s failed", schema_name)


inbox_coalescer = InboxCoalescer()


async def send_signal(group: str, layer_type: str, frame: dict[str, Any], *, sender: str = "") -> None:
    """Ephemeral frames (typing, presence): not stored, so id is null and a lost one is harmless."""
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(group, {"type": layer_type, "text": dumps({"id": None, **frame}), "sender": sender})
