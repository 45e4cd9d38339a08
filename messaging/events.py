"""Event names, group names, and the one way events leave a service: appended to the business's
stream inside the transaction, published through the channel layer after commit.

Each event is serialized to JSON once, stored as-is for resume, and sent through the layer as
that same text; consumers forward it without parsing.

Delivery policy (`_publish_now`; issue 9: every message to every agent does not scale):
- every event of a conversation goes to the agents who have it open
  (`t.<schema>.conv.<id>.agents`) and to its assignee (`t.<schema>.user.<id>`), each frame
  naming the conversation's previous event (`prev`) so a viewer can tell a missed one;
- customer-visible events go to the customer's sockets (`t.<schema>.conv.<id>`), chained by
  the previous customer-visible event;
- the inbox lists of all agents (`t.<schema>.inbox`) get `conversations.updated`: the latest
  `conversation.updated` of each changed conversation, gathered per process for
  `INBOX_FLUSH_SECONDS` and sent as one frame, with the id ranges it covers so a socket can tell
  a batch that went missing (see consumers.InboxConsumer).
Each of these goes out only to groups some process subscribes to when it is published
(`heard_only`, config.layers): a notifications job writes to a hundred customers at a time, few
of whom have a page open, and publishing to nobody was a quarter of its time. A socket subscribes
before it reads its backlog, so an event it was not sent live is one its resume reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from asgiref.sync import SyncToAsync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from config.sql import rows_source
from messaging.models import Conversation, Event, StreamCounter

logger = logging.getLogger("parley.messaging")

MESSAGE_CREATED = "message.created"
MESSAGE_STATUS = "message.status"
CONVERSATION_UPDATED = "conversation.updated"
# Rich messages (issue 13).
MESSAGE_EDITED = "message.edited"
MESSAGE_DELETED = "message.deleted"
REACTION_SET = "reaction.set"
# Assignment and lifecycle, narrated in the thread (issue 12; written by messaging.announce).
CONVERSATION_ACTIVITY = "conversation.activity"
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
    status: Literal["open", "pending", "snoozed", "resolved"]
    assignee: AssigneeShape | None
    unread: int
    last_message_at: str | None
    preview: str
    window_expires_at: str | None
    snoozed_until: str | None
    waiting_since: str | None
    queued_at: str | None
    assigned_at: str | None


class AttachmentShape(TypedDict):
    id: int
    kind: Literal["image", "document", "audio"]
    name: str
    size: int
    content_type: str
    width: int | None
    height: int | None
    url: str | None  # opens through the access check, which redirects to a short-lived signed URL
    thumbnail_url: str | None
    removed: Literal["", "expired", "deleted"]


class QuoteShape(TypedDict):
    id: int
    author_kind: Literal["customer", "agent", "system", "api"]
    author_name: str
    body: str
    attachment_kind: Literal["", "image", "document", "audio"]
    deleted: bool


class ReactionShape(TypedDict):
    by: str  # "customer:<id>" or "user:<id>"
    name: str
    emoji: str


class InteractiveOptionShape(TypedDict):
    id: str  # what the customer's tap comes back with (choice_id)
    title: str
    description: str  # lists only; "" otherwise


class InteractiveShape(TypedDict):
    type: Literal["buttons", "list"]
    options: list[InteractiveOptionShape]
    button: str  # the label that opens a list; "" for buttons


class MessageShape(TypedDict):
    id: int
    conversation_id: int
    event_id: int
    direction: Literal["in", "out", "internal"]
    author_kind: Literal["customer", "agent", "system", "api"]
    author_name: str
    author_id: int | None  # the agent who wrote it; null for customers, templates, the API
    kind: Literal["text", "note", "template"]
    body: str
    status: Literal["queued", "sent", "delivered", "read", "failed"]
    client_msg_id: str
    created_at: str
    reply_to: QuoteShape | None
    attachments: list[AttachmentShape]
    reactions: list[ReactionShape]
    interactive: InteractiveShape | None
    choice_id: str
    edited_at: str | None
    deleted_at: str | None


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


class MessageEditedEvent(TypedDict):
    """The sender changed the text (within 15 minutes): the message as it is now."""

    id: int
    type: Literal["message.edited"]
    conversation_id: int
    message: MessageShape


class MessageDeletedEvent(TypedDict):
    """The sender deleted it (within 15 minutes): its text and file are gone."""

    id: int
    type: Literal["message.deleted"]
    conversation_id: int
    message: MessageShape


class ReactionSetEvent(TypedDict):
    """Someone set or removed (emoji "") their one reaction; `reactions` is the message's full set."""

    id: int
    type: Literal["reaction.set"]
    conversation_id: int
    message_id: int
    by: str
    emoji: str
    reactions: list[ReactionShape]


class ConversationUpdatedEvent(TypedDict):
    id: int
    type: Literal["conversation.updated"]
    conversation: ConversationShape


class PersonShape(TypedDict):
    id: int
    name: str


class ConversationActivityEvent(TypedDict):
    """What happened to a conversation, for its thread: who did it (null: Parley itself)."""

    id: int
    type: Literal["conversation.activity"]
    conversation_id: int
    action: Literal["assigned", "auto_assigned", "unassigned", "transferred", "returned", "status", "snoozed", "woken"]
    actor: PersonShape | None
    assignee: PersonShape | None
    status: Literal["open", "pending", "snoozed", "resolved"]
    snoozed_until: str | None
    note: str
    at: str


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
    MESSAGE_EDITED: MessageEditedEvent,
    MESSAGE_DELETED: MessageDeletedEvent,
    REACTION_SET: ReactionSetEvent,
    CONVERSATION_UPDATED: ConversationUpdatedEvent,
    CONVERSATION_ACTIVITY: ConversationActivityEvent,
    THREAD_UPDATED: ThreadUpdatedEvent,
}


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
    # The previous event of the conversation, any audience (Conversation.last_event_id), so an
    # agent can tell a gap in one conversation without reading the whole business's stream.
    prev_event_id: int = 0
    # Who the conversation is assigned to once this event committed (None: unassigned).
    assignee_id: int | None = None


def chain_event(conversation: Conversation, event_id: int, audience: str) -> tuple[int, int]:
    """Number the conversation's next event: returns the previous customer-visible event and the
    previous event of any audience (what the stored event names, so a socket can tell a gap),
    and moves the conversation's pointers to `event_id` (its caller saves them in the same
    transaction). Every writer of events chains them here."""
    prev_public, prev_event = conversation.last_public_event_id, conversation.last_event_id
    conversation.last_event_id = event_id
    if audience == Event.Audience.EVERYONE:
        conversation.last_public_event_id = event_id
    return prev_public, prev_event


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
    The ids go into the table's `event_id` column. Returns the first id and {event_id: row id}.
    The rows are bound as one array per column (config.sql), not a parameter per value."""
    assert connection.in_atomic_block, "event ids are allocated inside the writing transaction"
    counter = StreamCounter._meta.db_table
    names = ", ".join(name for name, _type in columns)
    source, source_params = rows_source(
        [("event_offset", "integer"), *columns], [[offset, *values] for offset, values in rows]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH counter AS (INSERT INTO {counter} (id, last_id) VALUES (1, %s) "
            f"ON CONFLICT (id) DO UPDATE SET last_id = {counter}.last_id + EXCLUDED.last_id RETURNING last_id) "
            f"INSERT INTO {table} ({names}, event_id) "
            f"SELECT {', '.join('v.' + name for name, _type in columns)}, counter.last_id - %s + 1 + v.event_offset "
            f"FROM counter, {source} "
            "RETURNING id, event_id",
            [count, count, *source_params],
        )
        inserted = {int(event_id): int(pk) for pk, event_id in cursor.fetchall()}
    first = min(inserted) - min(offset for offset, _values in rows)
    return first, inserted


def event_frame(*, event_id: int, type: str, data: dict[str, Any]) -> str:
    """The exact JSON text of an event: stored for resume and sent to clients unchanged."""
    return dumps({"id": event_id, "type": type, **data})


Statement = tuple[str, list[Any]]


def append_events_statement(events: list[StoredEvent]) -> Statement | None:
    """The one INSERT that stores events already numbered by `allocate_event_ids` (raw:
    compiling bulk_create costs more than the round trip on the send path)."""
    if not events:
        return None
    now = timezone.now()
    source, params = rows_source(
        _EVENT_COLUMNS, [(e.id, e.type, e.conversation_id, e.audience, e.frame, now) for e in events]
    )
    return (
        f"INSERT INTO {Event._meta.db_table} (id, type, conversation_id, audience, frame, created_at) "
        f"SELECT v.id, v.type, v.conversation_id, v.audience, v.frame, v.created_at FROM {source}",
        params,
    )


_EVENT_COLUMNS = [
    ("id", "bigint"),
    ("type", "varchar"),
    ("conversation_id", "bigint"),
    ("audience", "varchar"),
    ("frame", "text"),
    ("created_at", "timestamptz"),
]


def execute_together(statements: list[Statement | None]) -> None:
    """Run data-modifying statements as one (`WITH s0 AS (…), s1 AS (…) <last>`): one round trip.
    What a writer does after it took the stream counter's row lock holds that lock — and with
    it every other writer of the business — until commit, so each round trip there counts.
    The statements must touch different rows (they see one snapshot, not each other's changes)."""
    parts = [statement for statement in statements if statement is not None]
    if not parts:
        return
    *first, (last_sql, last_params) = parts
    sql = ", ".join(f"s{n} AS ({part_sql})" for n, (part_sql, _params) in enumerate(first))
    params = [value for _sql, part_params in first for value in part_params] + last_params
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {sql} {last_sql}" if first else last_sql, params)


def publish_on_commit(*, schema_name: str, events: list[StoredEvent], customer_updates: list[tuple[int, str]]) -> None:
    """After commit: conversation events to the agents viewing it and its assignee, customer-visible
    ones to the customer, coalesced list updates to every agent, /me/ pages their list update.

    From a consumer's database thread the publish is queued on the server's event loop and the
    thread goes on at once (a writer that waited for Redis held up every send behind it); the
    loop publishes in the order commits queued (see `publish_soon`), and a consumer answers
    `message.accepted` only after `published()`."""
    if not events and not customer_updates:
        return

    def publish() -> None:
        try:
            publish_soon(schema_name, events, customer_updates)
        except Exception:  # the layer is at-most-once; clients catch up from the stream
            logger.exception("publishing %d events of %s failed", len(events), schema_name)

    transaction.on_commit(publish)


# A publish waits at most this long for the server's event loop (it may be shutting down).
PUBLISH_TIMEOUT_SECONDS = 10.0


def server_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop this thread's work came from (a consumer's database thread), if any."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is not None and loop.is_running():
        return loop  # type: ignore[no-any-return]
    return None


def publish_soon(schema_name: str, events: list[StoredEvent], customer_updates: list[tuple[int, str]]) -> None:
    """Publish now-committed events. On the server's loop without waiting for it (callbacks run
    in the order they were queued, and `_publish_now` hands every message to the layer before
    the next callback runs, so commits queued in order are published in order); elsewhere (a job
    worker, a shell) at once, waiting."""
    loop = server_loop()
    if loop is not None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            loop.call_soon_threadsafe(_publish_logged, schema_name, events, customer_updates)
            return
    run_from_sync(_publish(schema_name, events, customer_updates))


def run_from_sync(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a layer call from synchronous code. On the server's event loop when the caller came
    from it (a consumer's database thread, a view), with a timeout, unlike `async_to_sync`,
    which waits forever for a loop that stopped meanwhile. Elsewhere (a job worker, a shell) on
    the process's own long-lived loop (`_process_loop`), with the same timeout."""
    loop = server_loop() or _process_loop()
    if loop is not None:
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise
        return
    # The in-memory layer: a loop of its own, in this thread unless one runs here already.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as runner:
        runner.submit(asyncio.run, coroutine).result(timeout=PUBLISH_TIMEOUT_SECONDS)


_own_loop: tuple[int, asyncio.AbstractEventLoop] | None = None
_own_loop_lock = threading.Lock()


def _process_loop() -> asyncio.AbstractEventLoop | None:
    """An event loop of this process's own, on a daemon thread, for layer calls from code that
    has no server loop (a job worker, a shell). The Redis layer keeps its connections per loop:
    on a loop made for each publish (`asyncio.run`) every publish connected to Redis anew, the
    largest part of a notifications delivery job's publishing. None for a layer that is not
    bound to loops (the in-memory one, whose queues must stay on their own thread)."""
    global _own_loop
    if not hasattr(get_channel_layer(), "_get_layer"):
        return None
    with _own_loop_lock:
        pid = os.getpid()
        if _own_loop is None or _own_loop[0] != pid or _own_loop[1].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="parley-layer-loop", daemon=True).start()
            _own_loop = (pid, loop)  # per process: a forked child does not inherit the thread
        return _own_loop[1]


def layer_send_nowait(
    layer: Any, group: str, message: dict[str, Any], *, heard_only: bool = False
) -> asyncio.Future[None]:
    """Hand a message to the layer now, in call order, without waiting for it to be published.
    The pipelined Redis layer (config.layers) queues it synchronously; another layer gets a task
    (tasks start in the order they were made). `heard_only`: the pipelined layer drops it if no
    process subscribes to the group when it would go out (only for stored events, which a socket
    that subscribes later reads on resume); other layers publish it all the same."""
    inner = layer._get_layer() if hasattr(layer, "_get_layer") else layer
    nowait = getattr(inner, "group_send_nowait", None)
    if nowait is not None:
        if heard_only:
            return nowait(group, message, heard_only=True)  # type: ignore[no-any-return]
        return nowait(group, message)  # type: ignore[no-any-return]
    return asyncio.ensure_future(layer.group_send(group, message))


# The publish most recently handed to the layer on this loop: messages go out in order, so once it
# is done every earlier one is too.
_last_publish: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None = None


def publishing() -> asyncio.Future[Any] | None:
    """The publish most recently handed to the layer on this loop (None: nothing pending): once
    it is done, so is every publish queued before it."""
    last = _last_publish
    if last is not None and last[0] is asyncio.get_running_loop() and not last[1].done():
        return last[1]
    return None


async def published() -> None:
    """Wait until every publish queued on this loop so far went out (a sender's ack follows its
    own events). Never raises: a failed publish is a gap clients fill from the stream."""
    last = _last_publish
    if last is not None and last[0] is asyncio.get_running_loop() and not last[1].done():
        await asyncio.wait([last[1]], timeout=PUBLISH_TIMEOUT_SECONDS)


def _publish_now(
    schema_name: str, events: list[StoredEvent], customer_updates: list[tuple[int, str]]
) -> asyncio.Future[Any] | None:
    """On the loop: every message of these events handed to the layer, in order, before returning."""
    layer = get_channel_layer()
    if layer is None:
        return None
    sends: list[asyncio.Future[None]] = []
    updates = {e.conversation_id: e for e in events if e.type == CONVERSATION_UPDATED and e.conversation_id}
    for event in events:
        if event.conversation_id is None:
            continue
        cid = event.conversation_id
        message = {"id": event.id, "prev": event.prev_event_id, "conversation_id": cid, "text": event.frame}
        sends.append(
            layer_send_nowait(
                layer,
                agents_conversation_group(schema_name, cid),
                {"type": LAYER_AGENTS_FRAME, **message},
                heard_only=True,
            )
        )
        if event.assignee_id is not None:
            sends.append(
                layer_send_nowait(
                    layer,
                    user_inbox_group(schema_name, event.assignee_id),
                    {"type": LAYER_AGENTS_FRAME, **message},
                    heard_only=True,
                )
            )
        if event.audience == Event.Audience.EVERYONE:
            sends.append(
                layer_send_nowait(
                    layer,
                    conversation_group(schema_name, cid),
                    {"type": LAYER_CONV_FRAME, "id": event.id, "prev": event.prev_public_id, "text": event.frame},
                    heard_only=True,
                )
            )
    if events:
        offered = inbox_coalescer.offer_nowait(
            schema_name, id_ranges([e.id for e in events]), list(updates.values()), layer
        )
        if offered is not None:
            sends.append(offered)
    for customer_id, text in customer_updates:
        sends.append(
            layer_send_nowait(
                layer,
                customer_group(customer_id),
                {"type": LAYER_ME_FRAME, "text": text, "schema": schema_name},
                heard_only=True,
            )
        )
    if not sends:
        return None
    done = asyncio.gather(*sends, return_exceptions=True)
    done.add_done_callback(_log_failures)
    global _last_publish
    _last_publish = (asyncio.get_running_loop(), done)
    return done


def _publish_logged(schema_name: str, events: list[StoredEvent], customer_updates: list[tuple[int, str]]) -> None:
    try:
        _publish_now(schema_name, events, customer_updates)
    except Exception:  # the layer is at-most-once; clients catch up from the stream
        logger.exception("publishing %d events of %s failed", len(events), schema_name)


def _log_failures(done: asyncio.Future[list[Any]]) -> None:
    if done.cancelled():
        return
    errors = [r for r in done.result() if isinstance(r, BaseException)]
    if errors:  # the layer is at-most-once; clients catch up from the stream
        logger.error("publishing %d messages failed: %r", len(errors), errors[0])


async def _publish(schema_name: str, events: list[StoredEvent], customer_updates: list[tuple[int, str]]) -> None:
    done = _publish_now(schema_name, events, customer_updates)
    if done is not None:
        await done


# --- the inbox list: coalesced per process -------------------------------------------------

INBOX_FLUSH_SECONDS = 0.25


def id_ranges(ids: list[int]) -> list[tuple[int, int]]:
    """The ids as contiguous (first, last) runs: what a list batch tells sockets it covers."""
    runs: list[tuple[int, int]] = []
    for event_id in sorted(ids):
        if runs and event_id <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], max(runs[-1][1], event_id))
        else:
            runs.append((event_id, event_id))
    return runs


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

    def offer_nowait(
        self, schema_name: str, ranges: list[tuple[int, int]], updates: list[StoredEvent], layer: Any
    ) -> asyncio.Future[None] | None:
        """Gather for the next flush on the server's loop; elsewhere (a job worker's own loop) hand
        the batch to the layer at once (the returned future)."""
        if asyncio.get_running_loop() is not self.loop:
            message = inbox_batch_message(ranges=ranges, updates=[(u.id, u.frame) for u in updates])
            return layer_send_nowait(layer, inbox_group(schema_name), message, heard_only=True)
        batch = self.pending.setdefault(schema_name, _Pending())
        batch.ranges.extend(ranges)
        for update in updates:
            assert update.conversation_id is not None
            known = batch.latest.get(update.conversation_id)
            if known is None or known[0] < update.id:
                batch.latest[update.conversation_id] = (update.id, update.frame)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_later(INBOX_FLUSH_SECONDS, self._flush)
        return None

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
    # Handed over without waiting for Redis: a socket's next frame (the send after its typing)
    # must not queue behind the publish.
    sent = layer_send_nowait(layer, group, {"type": layer_type, "text": dumps({"id": None, **frame}), "sender": sender})
    sent.add_done_callback(_signal_done)


def _signal_done(sent: asyncio.Future[None]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        logger.warning("an ephemeral frame was not published: %r", sent.exception())
