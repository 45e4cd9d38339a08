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
  `conversation.updated` of each changed conversation, every process's commits gathered by each
  receiving process for `INBOX_FLUSH_SECONDS` (`InboxLists`) and sent to its own sockets as one
  frame, with the id ranges it covers so a socket can tell a batch that went missing (see
  consumers.InboxConsumer).
A commit's message and the customers' /me/ updates go out only to groups some process subscribes
to when they are published (`heard_only`, config.layers): a notifications job writes to a hundred
customers at a time, few of whom have a page open, and its publishes to nobody (msgpack, redis-py)
were a sizeable share of its time. A socket's process subscribes before the socket reads its
backlog, so an event it was not sent live is one its resume reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict

import orjson
from asgiref.sync import SyncToAsync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from config.sql import Statement, prepared_cursor, rows_source, with_statements
from messaging.models import Conversation, Event, StreamCounter
from tenancy.loop_db import deferred_on_loop

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
# Every commit's events, to each process's `Relay` (never to a socket).
LAYER_COMMIT = "commit"
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


# Frames are encoded by orjson, 2.4x faster than the standard library's encoder for a
# message.created frame (26 -> 11 us; frame encoding was ~6% of a server's samples at 400
# msgs/s, issue 9), with the same text as Django's encoder gave: datetimes, dates and times go
# to its `default` (milliseconds, "Z"), as do lazy strings, Decimals and durations; compact
# separators, non-ASCII as is, integer keys as strings (tests/messaging/test_frame_encoding.py).
_DJANGO_DEFAULT = DjangoJSONEncoder().default
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
# A send group's frames carry the same few datetimes many times (the group's time as a message's
# created_at and its conversation's last_message_at, the window's end, ...): each is formatted
# once. Keyed by the tzinfo and fold too, which the text depends on but equality ignores.
_DATETIME_TEXTS: dict[tuple[datetime, Any, int], str] = {}
_DATETIME_TEXTS_MAX = 512


def _default(value: Any) -> Any:
    if type(value) is datetime:
        key = (value, value.tzinfo, value.fold)
        text = _DATETIME_TEXTS.get(key)
        if text is None:
            if len(_DATETIME_TEXTS) >= _DATETIME_TEXTS_MAX:
                _DATETIME_TEXTS.clear()
            text = _DATETIME_TEXTS[key] = _DJANGO_DEFAULT(value)
        return text
    return _DJANGO_DEFAULT(value)


def dumps(payload: dict[str, Any]) -> str:
    return orjson.dumps(payload, default=_default, option=_OPTIONS).decode()


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


# --- numbering in the commit's own round trip ---------------------------------------------------
#
# The stream counter's row lock orders commits by event id, and every writer of the business
# waits for it. Taken in a statement whose answer the writer reads before it can go on (as
# `allocate_event_ids` is, and the send core's message insert was), it is held while that
# answer crosses to the client, while the writer's thread waits for the GIL on a busy process,
# builds the frames and sends the rest: issue 9 found 0.19-0.29 backends on average idle in a
# transaction holding it at 500 msgs/s, and 0.16 waiting for it. A writer whose rows are ready
# before the counter (the send core: message ids reserved under its conversations' locks; the
# ack writer) numbers them in the statement that goes out with the COMMIT instead
# (`execute_numbered`): the counter is then held only while the server runs that statement and
# commits. Its events' frames travel as templates
# (`frame_template`), and ids its statements write that name an event of the same group travel
# as placeholders (`placeholder`), numbered in SQL (`numbered_sql`) and in Python afterwards
# (`Numbered.id`).

# Where an event's own id goes in its frame template. Never part of a frame: JSON escapes every
# control character (json.dumps writes "\u0001"), so this can only be a placeholder.
ID_MARK = "\x01"


def placeholder(offset: int) -> int:
    """The stand-in for the id of the group's event number `offset` (from 0) until it is
    numbered: negative, so it can never be a real id (ids start at 1; 0 means none)."""
    return -(offset + 1)


def numbered_sql(column: str) -> str:
    """SQL for the id a column holds: a placeholder numbered with the counter's first id, or a
    real id (an earlier group's event, or 0) as it is. Inside `execute_numbered`'s statements."""
    return f"CASE WHEN {column} < 0 THEN counter.first_id - 1 - {column} ELSE {column} END"


def frame_template(frame: str, event_id: int) -> str:
    """An event's frame, made with its placeholder as `event_id`, with every place that id goes
    (the frame's own "id", first, and a message's "event_id") as ID_MARK. Only those keys are
    replaced: a placeholder anywhere else in the text (a message body that spells one) is a
    JSON string's escaped content, never a bare key and number."""
    head = f'{{"id":{event_id},'
    if not frame.startswith(head):
        raise ValueError("an event frame starts with its id")
    # Plain replaces, the key with the character that ends its value (a regex with a lookahead
    # did the same, and was a percent of a loaded server's samples). Inside a JSON string the
    # key's quotes are escaped (\"event_id\"), so only a real key matches.
    own, marked = f'"event_id":{event_id}', f'"event_id":{ID_MARK}'
    body = frame[len(head) :].replace(own + ",", marked + ",").replace(own + "}", marked + "}")
    return f'{{"id":{ID_MARK},{body}'


@dataclass(frozen=True)
class Unnumbered:
    """An event of a group numbered by `execute_numbered`, before its answer: a StoredEvent
    whose ids (its own and its chain's) may be placeholders and whose frame is a template."""

    placeholder: int
    type: str
    conversation_id: int | None
    audience: str
    template: str
    prev_public_id: int
    prev_event_id: int
    assignee_id: int | None


def unnumbered(conversation: Conversation, offset: int, type: str, audience: str, data: dict[str, Any]) -> Unnumbered:
    """The group's event number `offset` (from 0) of `conversation`, chained (`chain_event`)
    under its placeholder, its frame made as a template."""
    mark = placeholder(offset)
    prev_public, prev_event = chain_event(conversation, mark, audience)
    template = frame_template(event_frame(event_id=mark, type=type, data=data), mark)
    return Unnumbered(
        mark, type, conversation.pk, audience, template, prev_public, prev_event, conversation.assignee_id
    )


@dataclass(frozen=True)
class Numbered:
    """The first id the counter gave a group numbered by `execute_numbered`."""

    first_id: int

    def id(self, value: int) -> int:
        """The real id of a placeholder (`placeholder`); a real id or 0 as it is."""
        return self.first_id - 1 - value if value < 0 else value

    def frame(self, template: str, event_id: int) -> str:
        return template.replace(ID_MARK, str(event_id))

    def stored(self, event: Unnumbered) -> StoredEvent:
        event_id = self.id(event.placeholder)
        return StoredEvent(
            event_id,
            event.type,
            event.conversation_id,
            event.audience,
            self.frame(event.template, event_id),
            self.id(event.prev_public_id),
            self.id(event.prev_event_id),
            event.assignee_id,
        )

    def pointers(self, conversation: Conversation) -> None:
        """The conversation's event pointers as saved (`chain_event` left placeholders)."""
        conversation.last_public_event_id = self.id(conversation.last_public_event_id)
        conversation.last_event_id = self.id(conversation.last_event_id)


def execute_numbered(count: int, statements: list[Statement | None]) -> Callable[[], Numbered]:
    """Take `count` event ids from the stream counter and run `statements` with them, as one
    statement (`WITH counter AS (…), s0 AS (…), …`): each may read `counter.first_id` (put
    `counter` in its FROM; `numbered_sql` numbers a placeholder column). Sent, not read: in a
    pipeline (config.sql.pipelined) it goes out with what follows it, the COMMIT included. Call
    it last, after every other lock the transaction takes; the returned function reads the
    first id once the answer is in (after the pipeline's end). Like `execute_together`, the
    statements must touch different rows: they see one snapshot, not each other's changes."""
    assert connection.in_atomic_block, "event ids are allocated inside the writing transaction"
    table = StreamCounter._meta.db_table
    parts = [statement for statement in statements if statement is not None]
    sql = "".join(f", s{n} AS ({part_sql})" for n, (part_sql, _params) in enumerate(parts))
    params: list[Any] = [count, count]
    for _sql, part_params in parts:
        params += part_params
    cursor = prepared_cursor()
    cursor.execute(
        f"WITH counter AS (INSERT INTO {table} (id, last_id) VALUES (1, %s) "
        f"ON CONFLICT (id) DO UPDATE SET last_id = {table}.last_id + EXCLUDED.last_id "
        f"RETURNING last_id - %s + 1 AS first_id){sql} SELECT first_id FROM counter",
        params,
    )

    @functools.cache
    def read() -> Numbered:
        # Once: the writer and the publish after commit both ask, whichever comes first reads.
        with cursor:
            row = cursor.fetchone()
        assert row is not None
        return Numbered(int(row[0]))

    return read


def append_templates_statement(events: list[Unnumbered], now: datetime | None = None) -> Statement | None:
    """For `execute_numbered`: store a group's events, each numbered and its frame completed in SQL."""
    if not events:
        return None
    rows = [(e.placeholder, e.type, e.conversation_id, e.audience, e.template) for e in events]
    at = now or timezone.now()
    source, params = rows_source(
        [
            ("event_id", "bigint"),
            ("type", "varchar"),
            ("conversation_id", "bigint"),
            ("audience", "varchar"),
            ("template", "text"),
            ("created_at", "timestamptz"),
        ],
        [(*row, at) for row in rows],
    )
    numbered = numbered_sql("v.event_id")
    return (
        f"INSERT INTO {Event._meta.db_table} (id, type, conversation_id, audience, frame, created_at) "
        f"SELECT {numbered}, v.type, v.conversation_id, v.audience, "
        f"replace(v.template, chr(1), ({numbered})::text), v.created_at FROM counter, {source}",
        params,
    )


def event_frame(*, event_id: int, type: str, data: dict[str, Any]) -> str:
    """The exact JSON text of an event: stored for resume and sent to clients unchanged."""
    return dumps({"id": event_id, "type": type, **data})


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
    sql, params = with_statements(parts[:-1], parts[-1])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def publish_on_commit(*, schema_name: str, events: list[StoredEvent], customer_updates: list[tuple[int, str]]) -> None:
    """After commit: conversation events to the agents viewing it and its assignee, customer-visible
    ones to the customer, coalesced list updates to every agent, /me/ pages their list update.

    From a consumer's database thread the publish is queued on the server's event loop and the
    thread goes on at once (a writer that waited for Redis held up every send behind it); the
    loop publishes in the order commits queued (see `publish_soon`), and a consumer answers
    `message.accepted` only once the commit's message is out (`commit_publishing`)."""
    if not events and not customer_updates:
        return

    def publish() -> None:
        try:
            publish_soon(schema_name, events, customer_updates)
        except Exception:  # the layer is at-most-once; clients catch up from the stream
            logger.exception("publishing %d events of %s failed", len(events), schema_name)

    transaction.on_commit(publish)


def publish_numbered_on_commit(
    *, schema_name: str, numbered: Callable[[], tuple[list[StoredEvent], list[tuple[int, str]]]]
) -> None:
    """`publish_on_commit` for a group numbered in its commit's round trip (`execute_numbered`):
    its events and /me/ updates are known once the answer is in, so they are made by `numbered`
    after commit (the writer may have made them already: it is called once)."""

    def publish() -> None:
        try:
            stored, customer_updates = numbered()
            if stored or customer_updates:
                publish_soon(schema_name, stored, customer_updates)
        except Exception:  # the layer is at-most-once; clients catch up from the stream
            logger.exception("publishing a numbered group of %s failed", schema_name)

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
    the next callback runs, so commits queued in order are published in order); inside a call on
    the loop's own thread (tenancy.loop_db) when that call returns; elsewhere (a job worker, a
    shell) at once, waiting."""
    deferred = deferred_on_loop()
    if deferred is not None:
        deferred.append(functools.partial(_publish_logged, schema_name, events, customer_updates))
        return
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
    the process's own long-lived loop (`_process_loop`), with the same timeout. Inside a call on
    the loop's own thread (tenancy.loop_db), a task on that loop once the call returns."""
    deferred = deferred_on_loop()
    if deferred is not None:
        deferred.append(functools.partial(_run_later, coroutine))
        return
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


def _run_later(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.ensure_future(coroutine).add_done_callback(_logged_failure)


def _logged_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        logger.error("a layer call after a call on the loop failed", exc_info=done.exception())


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
        return nowait(group, message, heard_only=heard_only)  # type: ignore[no-any-return]
    return asyncio.ensure_future(layer.group_send(group, message))


# Per business, the commit message most recently handed to the layer on this loop. A business's
# commit messages go to one channel, which the layer publishes in call order: once the latest is
# out, so is every earlier one.
_last_commit: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}


def commit_publishing(schema_name: str) -> asyncio.Future[Any] | None:
    """The business's commit message most recently handed to the layer on this loop, if not out
    yet (None: nothing pending). A sender's `message.accepted` waits for it: its own events are
    out then. Not for the commit's /me/ updates, which go to other pages (the customers' lists)
    and may wait for the layer's question whether anybody listens (config.layers, `heard_only`):
    waiting for those too, a customer's ack in a conversation an agent had open went out 15–40 ms
    (p50) after the agent had the message (issue 9: `its accepted → the viewer` in
    bench/inbox_load.py)."""
    last = _last_commit.get(schema_name)
    if last is None:
        return None
    loop, future = last
    if future.done() or loop is not asyncio.get_running_loop():
        del _last_commit[schema_name]
        return None
    return future


def _publish_now(
    schema_name: str, events: list[StoredEvent], customer_updates: list[tuple[int, str]]
) -> asyncio.Future[Any] | None:
    """On the loop: every message of these events handed to the layer, in order, before returning."""
    layer = get_channel_layer()
    if layer is None:
        return None
    sends: list[asyncio.Future[None]] = []
    if events:
        # One message per commit, whatever the number of events and sockets: every server process
        # with sockets of the business hands each event to its own sockets (`Relay`).
        commit = layer_send_nowait(
            layer, commits_group(schema_name), commit_message(schema_name, events), heard_only=True
        )
        _last_commit[schema_name] = (asyncio.get_running_loop(), commit)
        sends.append(commit)
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


# --- the relay: one message per commit, delivered by every process to its own sockets ----------
# Each commit publishes its events once, to `commits_group` (not one message per event and group:
# that was five or so Redis publishes per message, each received and decoded by every process).
# Every server process with sockets of the business receives it once (`Relay`, one subscription
# per business and process) and hands each event to its own members of the groups the delivery
# policy names (`group_send_local`, no Redis): the agents viewing the conversation, its
# assignee, the customer. Agents' lists: the process merges what every process committed for
# INBOX_FLUSH_SECONDS and hands one `conversations.updated` batch to its own agent sockets.
# Before, each process sent every agent its own batches on its own timer: with two processes a
# batch was routinely held by the socket until the other process's batch below it came, up to a
# whole flush interval later (issue 9: list staleness p99 ~800 ms).

INBOX_FLUSH_SECONDS = 0.25
# A flush whose ids skip some (another process's commit still on its way through Redis) waits
# this long at most for them: sent complete, the sockets need not hold it for a flush interval.
INBOX_GAP_WAIT_SECONDS = 0.1


def commits_group(schema_name: str) -> str:
    """Every commit's events, for the server processes (`Relay`), never for a socket."""
    return f"t.{schema_name}.commits"


def id_ranges(ids: list[int]) -> list[tuple[int, int]]:
    """The ids as contiguous (first, last) runs: what a list batch tells sockets it covers."""
    runs: list[tuple[int, int]] = []
    for event_id in sorted(ids):
        if runs and event_id <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], max(runs[-1][1], event_id))
        else:
            runs.append((event_id, event_id))
    return runs


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or adjacent (first, last) runs joined, in order."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


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


def commit_message(schema_name: str, events: list[StoredEvent]) -> dict[str, Any]:
    """One commit for `commits_group`: the ids it covers (agents' lists tell a missing commit by
    them) and, per event of a conversation, what its delivery needs:
    [id, type, conversation id, customer-visible, previous event, previous customer-visible
    event, assignee id, stored frame]."""
    return {
        "type": LAYER_COMMIT,
        "schema": schema_name,
        "ranges": [list(r) for r in id_ranges([e.id for e in events])],
        "events": [
            [
                e.id,
                e.type,
                e.conversation_id,
                e.audience == Event.Audience.EVERYONE,
                e.prev_event_id,
                e.prev_public_id,
                e.assignee_id,
                e.frame,
            ]
            for e in events
            if e.conversation_id is not None
        ],
    }


@dataclass
class _Pending:
    ranges: list[tuple[int, int]] = field(default_factory=list)
    latest: dict[int, tuple[int, str]] = field(default_factory=dict)  # conversation -> (event id, text)
    gap_since: float | None = None  # when a flush first found ids missing below some of these


class Relay:
    """One process's receiver of every process's commits, per business with a socket here: each
    event to this process's members of its groups at once, in commit order (`_deliver`); list
    updates merged for INBOX_FLUSH_SECONDS, then one batch to the process's agent sockets in the
    business's inbox group. Local sends are serialized once per group and never go through Redis
    (`group_send_local`). Each agent socket so gets one stream of at most a few list frames a
    second, whatever the number of processes.

    A list flush that would skip ids (a commit of another process not yet received) waits for
    them up to INBOX_GAP_WAIT_SECONDS, and goes out as soon as they come; after that it goes out
    anyway and the sockets treat the hole as before (held, then read from the stream). Runs on
    the server's event loop; state is per loop (tests run one loop each)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._reset()

    def _reset(self) -> None:
        self.channel: str | None = None
        self.receiver: asyncio.Task[None] | None = None
        self.setup: asyncio.Lock | None = None
        self.watchers: dict[str, int] = {}  # local sockets per business
        self.subscribed: set[str] = set()  # businesses whose commits reach `channel`
        self.pending: dict[str, _Pending] = {}
        self.position: dict[str, int] = {}  # per business: the id up to which batches were complete
        self.scheduled = False
        self.sending: set[asyncio.Task[None]] = set()

    def _on_this_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.loop = loop
            self._reset()

    async def watch(self, schema_name: str) -> None:
        """A socket of this business is here: receive the business's commits (subscribed before
        this returns, so the socket's resume, read afterwards, leaves no hole)."""
        self._on_this_loop()
        layer = get_channel_layer()
        if layer is None:
            return
        if self.setup is None:
            self.setup = asyncio.Lock()
        self.watchers[schema_name] = self.watchers.get(schema_name, 0) + 1
        if schema_name in self.subscribed:
            return  # the usual case: another socket of the business is here already
        try:
            async with self.setup:
                if self.channel is None:
                    channel = await layer.new_channel(prefix="relay.")
                    self.channel = channel
                    self.receiver = asyncio.ensure_future(self._receive(layer, channel))
                if self.watchers.get(schema_name) and schema_name not in self.subscribed:
                    await layer.group_add(commits_group(schema_name), self.channel)
                    self.subscribed.add(schema_name)
        except BaseException:
            await self.unwatch(schema_name)
            raise

    async def unwatch(self, schema_name: str) -> None:
        if self.loop is not asyncio.get_running_loop() or not self.watchers.get(schema_name):
            return
        self.watchers[schema_name] -= 1
        if self.watchers[schema_name]:
            return
        del self.watchers[schema_name]
        self.subscribed.discard(schema_name)
        self.pending.pop(schema_name, None)
        self.position.pop(schema_name, None)
        layer = get_channel_layer()
        if layer is None or self.channel is None or self.setup is None:
            return
        async with self.setup:
            if not self.watchers.get(schema_name):
                await layer.group_discard(commits_group(schema_name), self.channel)

    async def _receive(self, layer: Any, channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            try:
                await self._deliver(layer, message)
            except Exception:  # one bad message must not end the process's deliveries
                logger.exception("a commit could not be relayed")

    async def _deliver(self, layer: Any, message: dict[str, Any]) -> None:
        """One commit's events to this process's sockets, in order (`events.__doc__` says who)."""
        schema_name = message["schema"]
        if not self.watchers.get(schema_name):
            return  # no socket of this business here (any more)
        send = _local_sender(layer)
        updates: list[tuple[int, int, str]] = []
        for event_id, type_, cid, everyone, prev_event, prev_public, assignee_id, frame in message["events"]:
            agents = {"type": LAYER_AGENTS_FRAME, "id": event_id, "prev": prev_event, "conversation_id": cid}
            agents["text"] = frame
            for sent in (
                send(agents_conversation_group(schema_name, cid), agents),
                send(user_inbox_group(schema_name, assignee_id), agents) if assignee_id is not None else None,
                send(
                    conversation_group(schema_name, cid),
                    {"type": LAYER_CONV_FRAME, "id": event_id, "prev": prev_public, "text": frame},
                )
                if everyone
                else None,
            ):
                if sent is not None:
                    await sent  # the in-memory layer only
            if type_ == CONVERSATION_UPDATED:
                updates.append((cid, event_id, frame))
        self.offer(schema_name, [(int(a), int(b)) for a, b in message["ranges"]], updates)

    def offer(self, schema_name: str, ranges: list[tuple[int, int]], updates: list[tuple[int, int, str]]) -> None:
        """One commit's updates (from any process), gathered for the next flush."""
        if not self.watchers.get(schema_name):
            return  # no socket of this business here (any more)
        batch = self.pending.setdefault(schema_name, _Pending())
        batch.ranges = merge_ranges(batch.ranges + ranges)
        for conversation_id, event_id, text in updates:
            known = batch.latest.get(conversation_id)
            if known is None or known[0] < event_id:
                batch.latest[conversation_id] = (event_id, text)
        if batch.gap_since is not None and self._complete(schema_name, batch):
            self._send(schema_name)  # the ids a flush waited for came
        elif not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_later(INBOX_FLUSH_SECONDS, self._flush)

    def _complete(self, schema_name: str, batch: _Pending) -> bool:
        """No id missing between what was sent and what is gathered."""
        position = self.position.get(schema_name)
        if position is None:
            return True  # the first batch since this process watches the business
        for first, last in batch.ranges:
            if first > position + 1:
                return False
            position = max(position, last)
        return True

    def _flush(self) -> None:
        self.scheduled = False
        now = time.monotonic()
        for schema_name in list(self.pending):
            batch = self.pending[schema_name]
            if self._complete(schema_name, batch):
                self._send(schema_name)
            elif batch.gap_since is None:
                batch.gap_since = now
                asyncio.get_running_loop().call_later(INBOX_GAP_WAIT_SECONDS, self._gap_expired, schema_name, batch)
            # else: its gap timer sends it

    def _gap_expired(self, schema_name: str, batch: _Pending) -> None:
        if self.pending.get(schema_name) is batch:
            self._send(schema_name)

    def _send(self, schema_name: str) -> None:
        batch = self.pending.pop(schema_name)
        position = self.position.get(schema_name)
        self.position[schema_name] = max(batch.ranges[-1][1], position or 0)
        message = inbox_batch_message(ranges=batch.ranges, updates=list(batch.latest.values()))
        task = asyncio.ensure_future(_send_local(inbox_group(schema_name), message))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)


def _local_sender(layer: Any) -> Callable[[str, dict[str, Any]], Awaitable[None] | None]:
    """Send to this process's members of a group: the Redis layer's `group_send_local` (no Redis,
    returns None); the in-memory layer's `group_send` (one process: every member is local)."""
    inner = layer._get_layer() if hasattr(layer, "_get_layer") else layer
    local = getattr(inner, "group_send_local", None)
    return local if local is not None else layer.group_send  # type: ignore[no-any-return]


async def _send_local(group: str, message: dict[str, Any]) -> None:
    """To this process's members of the group only (each process has its own `Relay`)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        sent = _local_sender(layer)(group, message)
        if sent is not None:
            await sent
    except Exception:  # a lost batch is a gap the sockets fill from the stream
        logger.exception("inbox list batch for %s failed", group)


relay = Relay()


async def send_signal(group: str, layer_type: str, frame: dict[str, Any], *, sender: str = "") -> None:
    """Ephemeral frames (typing, presence): not stored, so id is null and a lost one is harmless."""
    layer = get_channel_layer()
    if layer is None:
        return
    # Handed over without waiting for Redis: a socket's next frame (the send after its typing)
    # must not queue behind the publish.
    sent = layer_send_nowait(layer, group, {"type": layer_type, "text": dumps({"id": None, **frame}), "sender": sender})
    sent.add_done_callback(_signal_done)


async def send_typing(
    schema_name: str, conversation_id: int, *, who: str, name: str | None = None, sender: str = ""
) -> None:
    """Someone types in a conversation: to the agents viewing it, and for an agent's typing
    (`who="agent"`) to the customer's sockets too — never back to `sender`. A customer's own
    typing is not sent to their other tabs: the chat page shows only the business typing, and
    each such frame was one more Redis publish and one more message back to the process."""
    frame: dict[str, Any] = {"type": TYPING, "conversation_id": conversation_id, "who": who}
    if name is not None:
        frame["name"] = name
    groups = [agents_conversation_group(schema_name, conversation_id)]
    if who == "agent":
        groups.append(conversation_group(schema_name, conversation_id))
    for group in groups:
        await send_signal(group, LAYER_CONV_SIGNAL, frame, sender=sender)


def _signal_done(sent: asyncio.Future[None]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        logger.warning("an ephemeral frame was not published: %r", sent.exception())
