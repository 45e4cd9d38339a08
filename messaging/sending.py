"""The one send core (Zulip's model): thin `check_*` entry points validate a send and build a
`SendRequest`; one writer, `do_send_messages`, writes any number of them — for any number of
conversations of one business — in one transaction.

The writer's steps, each one statement for the whole group whatever its size:
lock the conversations (creating missing ones) and, behind them, the billing windows of every
customer a business message of the group may be billed to (`billing.charge_windows_send`) →
dedupe by client_msg_id → per request, in order: refusals (block, 24-hour window, suspension,
unpaid bills) → billing, one call for every business message of the group
(`billing.charges_for_messages`, on the windows already read: statements only to open one) →
BusinessContact and CustomerThread upserts → event ids (the counter row, locked last) → INSERT
messages → link per-message usage records to them → mark replied-to messages read → INSERT
events → UPDATE the conversations → publish after commit.

A refusal is that request's outcome (a `MessagingError`), never the group's: nothing of a
refused request is written. A database error aborts the whole transaction and is raised; the
group commit retries such a group one request at a time (messaging.group_commit).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from psycopg.types.json import Jsonb

from accounts.models import Customer, Membership, User
from attachments.models import Attachment
from billing.models import CATEGORIES
from billing.services import (
    Charge,
    ChargeRequest,
    ChargeWindows,
    CustomersSource,
    business_may_initiate,
    charge_windows_send,
    charges_for_messages,
    pricing_country,
    usage_records_link_messages,
)
from config.jobs import defer_job
from config.sql import pipelined, prepared_cursor, rows_source, session_plans_generically
from customers.selectors import customers_opted_out, customers_who_blocked
from customers.services import customer_contacts_record_statement
from directory.services import ThreadState, ThreadTouch, customer_threads_touch_later
from messaging import events
from messaging.errors import MessagingError, MessagingErrorCode, not_found
from messaging.ids import conversation_pk
from messaging.locks import conversations_lock, model_columns, model_new
from messaging.models import SERVICE_WINDOW_HOURS, Contact, Conversation, Event, Message, awaiting_receipt_sql
from messaging.payloads import conversation_payload, message_payload
from messaging.rich import RichParts, preview, resolve
from messaging.selectors import seats_send
from tenancy.loop_db import let_the_loop_in
from tenancy.models import Business

MAX_BODY = 4096
MAX_CLIENT_MSG_ID = 64
WINDOW = timedelta(hours=SERVICE_WINDOW_HOURS)

CUSTOMER = "customer"
AGENT = "agent"
TEMPLATE = "template"
SYSTEM = "system"  # automatic replies of the business (the away message)


@dataclass
class SendResult:
    message: Message
    duplicate: bool
    # What this message was billed (business messages; None for customer messages, notes and
    # duplicates): its usage record and whether this message pays it.
    charge: Charge | None = None
    # Its `message.created` as stored, once the group is numbered (None for duplicates): what a
    # sending socket can be answered with instead of `message.accepted` plus its own event.
    created: events.StoredEvent | None = None


@dataclass(frozen=True)
class SendRequest:
    """A validated send, ready for `do_send_messages`. Built only by the `check_*` functions."""

    origin: str  # CUSTOMER, AGENT, TEMPLATE or SYSTEM
    author_key: str  # whose client_msg_id namespace: "customer:<id>", "user:<id>", "api:<key>"
    author_kind: str
    body: str
    client_msg_id: str
    kind: str = Message.Kind.TEXT
    customer: Customer | None = None  # customer and template sends
    user: User | None = None  # agent sends; a template's author, if a person
    conversation_id: int | None = None  # agent sends
    template_name: str = ""
    category: str = ""
    # Agent sends from a websocket: the writer checks the seat, one query for the whole group,
    # instead of a database round trip per send before it joins the group.
    member_unchecked: bool = False
    # Collision guard (agent replies): whether the agent confirmed replying into a conversation
    # another agent holds (the writer knows whether only the assignee may reply).
    takeover: bool = False
    rich: RichParts | None = None  # a quote, a file, buttons or a tap (messaging.rich)
    # The sender's language, taken when the request is checked (a socket checks under its page's
    # language): a group holds several senders' sends, and each refusal is worded for its own.
    language: str | None = field(default_factory=translation.get_language)

    @property
    def business_text(self) -> bool:
        """Free text from the business to a customer named by number (the API), not by conversation."""
        return self.origin == AGENT and self.conversation_id is None


# --- checks (no transaction, no lock: run before a request joins a group) ---------------------


def without_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL; left in, it would fail the whole transaction.
    return text.replace("\x00", "")


def clean_body(body: Any, *, optional: bool = False) -> str:
    text = without_nul(body).strip() if isinstance(body, str) else ""
    if not text and optional:
        return ""
    if not text:
        raise MessagingError(MessagingErrorCode.EMPTY, _("Write a message first."))
    if len(text) > MAX_BODY:
        raise MessagingError(
            MessagingErrorCode.TOO_LONG, _("Messages can be at most %(max)d characters.") % {"max": MAX_BODY}
        )
    return text


def clean_client_msg_id(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_CLIENT_MSG_ID or "\x00" in value:
        raise MessagingError(MessagingErrorCode.INVALID, _("client_msg_id must be a string of at most 64 characters."))
    return value


def check_membership(*, business: Business, user: User) -> None:
    if not Membership.objects.filter(business_id=business.pk, user_id=user.pk).exists():
        raise not_found()


def check_customer_send(
    *, customer: Customer, body: Any, client_msg_id: Any = "", rich: RichParts | None = None
) -> SendRequest:
    """A customer writes to the business: opens or extends the 24-hour service window."""
    client_msg_id = clean_client_msg_id(client_msg_id)
    return SendRequest(
        origin=CUSTOMER,
        author_key=f"customer:{customer.pk}",
        author_kind=Message.Author.CUSTOMER,
        body=clean_body(body, optional=rich is not None and rich.body_optional),
        client_msg_id=client_msg_id,
        customer=customer,
        rich=rich,
    )


def check_agent_send(
    *,
    business: Business,
    user: User,
    conversation_id: Any,
    body: Any,
    client_msg_id: Any = "",
    kind: str = Message.Kind.TEXT,
    defer_membership: bool = False,
    rich: RichParts | None = None,
    takeover: bool = False,
) -> SendRequest:
    """An agent replies (inside the service window) or leaves an internal note (never sent).
    `defer_membership`: no query here (a websocket's event loop); the writer checks the seat."""
    if rich is not None and rich.choice_message_id is not None:
        raise MessagingError(MessagingErrorCode.INVALID, _("Only the customer can choose an option."))
    if kind not in (Message.Kind.TEXT, Message.Kind.NOTE):
        raise MessagingError(MessagingErrorCode.INVALID, _("Unknown message kind."))
    client_msg_id = clean_client_msg_id(client_msg_id)
    if not defer_membership:
        check_membership(business=business, user=user)
    pk = conversation_pk(conversation_id)
    return SendRequest(
        origin=AGENT,
        author_key=f"user:{user.pk}",
        author_kind=Message.Author.AGENT,
        body=clean_body(body, optional=rich is not None and rich.body_optional),
        client_msg_id=client_msg_id,
        kind=kind,
        user=user,
        conversation_id=pk,
        member_unchecked=defer_membership,
        rich=rich,
        takeover=takeover is True,
    )


def check_business_text_send(
    *,
    customer: Customer,
    body: Any,
    author_key: str,
    author_kind: str = Message.Author.API,
    author_user: User | None = None,
    client_msg_id: Any = "",
    rich: RichParts | None = None,
) -> SendRequest:
    """Free text from the business to a customer named by number (the API's `text` send): a
    service reply, so only inside the customer's 24-hour window (refused by the writer with
    `window_closed` otherwise, and when the customer never wrote). Stored as kind text."""
    client_msg_id = clean_client_msg_id(client_msg_id)
    return SendRequest(
        origin=AGENT,
        author_key=author_key,
        author_kind=author_kind,
        body=clean_body(body, optional=rich is not None and rich.body_optional),
        client_msg_id=client_msg_id,
        kind=Message.Kind.TEXT,
        customer=customer,
        user=author_user,
        rich=rich,
    )


def check_system_send(*, conversation_id: Any, body: Any, client_msg_id: Any = "") -> SendRequest:
    """An automatic reply of the business inside the service window (the away message): sent and
    billed like an agent's reply, but it answers nobody: the customer still waits for a person."""
    return SendRequest(
        origin=SYSTEM,
        author_key="system",
        author_kind=Message.Author.SYSTEM,
        body=clean_body(body),
        client_msg_id=clean_client_msg_id(client_msg_id),
        conversation_id=conversation_pk(conversation_id),
    )


def check_template_send(
    *,
    customer: Customer,
    template_name: str,
    body: Any,
    category: str,
    author_key: str,
    author_kind: str = Message.Author.API,
    author_user: User | None = None,
    client_msg_id: Any = "",
    rich: RichParts | None = None,
) -> SendRequest:
    """A business-initiated message (an approved template): allowed outside the service window,
    refused (by the writer) for a blocked customer, a suspended business or unpaid bills."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown conversation category {category!r}")
    client_msg_id = clean_client_msg_id(client_msg_id)
    return SendRequest(
        origin=TEMPLATE,
        author_key=author_key,
        author_kind=author_kind,
        body=clean_body(body, optional=rich is not None and rich.body_optional),
        client_msg_id=client_msg_id,
        kind=Message.Kind.TEMPLATE,
        customer=customer,
        user=author_user,
        template_name=template_name[:100],
        category=category,
        rich=rich,
    )


# --- the writer --------------------------------------------------------------------------------


@dataclass
class _Thread:
    """One conversation while a group is written: its locked row, changed in memory, saved once."""

    conversation: Conversation
    # The latest inbound message not read yet (what an agent's reply marks read up to): its id
    # from the database, or a message of this group (whose id exists only after the INSERT);
    # None when every inbound message is read.
    last_unread_inbound: int | Message | None
    changed: bool = False


@dataclass
class _Pending:
    """An event of the group, numbered once every lock is held; its data is built after the
    messages are inserted (a message's payload carries its id)."""

    type: str
    audience: str
    thread: _Thread
    data: Callable[[], dict[str, Any]]
    customer_id: int | None = None  # whose /me/ list this event's send changes
    message: Message | None = None


@dataclass
class _Group:
    business: Business
    now: datetime
    threads: dict[int, _Thread] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    pending: list[_Pending] = field(default_factory=list)
    contacts: set[int] = field(default_factory=set)
    touches: list[ThreadTouch] = field(default_factory=list)
    # (conversation, last inbound message to mark read) for agents' replies.
    marks: list[tuple[int, int | Message]] = field(default_factory=list)
    # (attachment id, the message that carries it): linked once the messages have ids.
    attachments: list[tuple[int, Message]] = field(default_factory=list)
    # The group's business messages to bill (all at once, after the refusals), and then what
    # each was billed, by id(message).
    to_charge: list[tuple[Message, ChargeRequest]] = field(default_factory=list)
    charges: dict[int, Charge] = field(default_factory=dict)
    # The billing windows of the customers its business messages may be billed to, locked and
    # read in the group's first round trip (`_billed_windows`).
    windows: ChargeWindows | None = None
    # Agents (user ids) who may reply only into conversations assigned to them.
    assignee_only_users: set[int] = field(default_factory=set)
    # Ids reserved for the group's messages under its conversations' locks (`_reserve_ids`):
    # its frames carry them before the statement that inserts the messages is sent.
    message_ids: list[int] = field(default_factory=list)


def _create_conversations(customer_ids: list[int], now: datetime) -> None:
    """The first message of a customer: their contact and conversation, if another writer has
    not just made them (ON CONFLICT: no per-message get_or_create round trips). One statement:
    the contacts inserted here come back from their CTE (the statement's snapshot does not show
    them), contacts that existed without a conversation from the table.

    A contact is made only for a customer row that exists, locked FOR KEY SHARE until the commit:
    what the contact's foreign key into public did before it was dropped (messaging.models). The
    account deletion locks that row FOR UPDATE before its last sweep (customers.privacy), so a
    contact is either made before the sweep (which then sees it) or finds no customer."""
    contact_table = Contact._meta.db_table
    conversation_table = Conversation._meta.db_table
    customer_table = Customer._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH new_contact AS (INSERT INTO {contact_table} (customer_id, name, notes, created_at, updated_at) "
            f"SELECT id, '', '', %s, %s FROM public.{customer_table} WHERE id = ANY(%s::bigint[]) FOR KEY SHARE "
            "ON CONFLICT (customer_id) DO NOTHING RETURNING id) "
            f"INSERT INTO {conversation_table} (contact_id, status, last_message_preview, unread_count, "
            "last_public_event_id, last_event_id, created_at, updated_at) "
            "SELECT id, %s, '', 0, 0, 0, %s, %s FROM "
            f"(SELECT id FROM new_contact UNION SELECT id FROM {contact_table} WHERE customer_id = ANY(%s::bigint[])) "
            "AS contact ON CONFLICT (contact_id) DO NOTHING",
            [now, now, customer_ids, Conversation.Status.OPEN, now, now, customer_ids],
        )


def _lock_conversations(
    group: _Group,
    requests: Sequence[SendRequest],
    refusal: MessagingError | None,
    behind: Callable[[], None] | None = None,
    behind_created: Callable[[set[int]], None] | None = None,
) -> tuple[dict[int, _Thread], dict[int, _Thread], set[int]]:
    """Lock every conversation the group writes to: by id (agents) and by customer (customers,
    templates). Returns them by id and by customer, and the customers who blocked the business.
    A customer without a conversation gets one unless every send of theirs will be refused (a
    refused send writes nothing). `behind`: see messaging.locks; `behind_created`: the same behind
    the lock of the conversations made here, given their customers."""
    business_id = group.business.pk
    ids = sorted({r.conversation_id for r in requests if r.conversation_id is not None})
    customers = {r.customer.pk for r in requests if r.customer is not None}
    rows = conversations_lock(business_id=business_id, ids=ids, customer_ids=sorted(customers), behind=behind)
    blocked = {row.conversation.contact.customer_id for row in rows if row.customer_blocked}
    missing = customers - {row.conversation.contact.customer_id for row in rows}
    if missing:
        blocked |= customers_who_blocked(business_id=business_id, customer_ids=missing)
        wanted = {
            r.customer.pk
            for r in requests
            if r.customer is not None
            and r.customer.pk in missing
            and r.customer.pk not in blocked
            and not (r.origin == TEMPLATE and refusal is not None)
            # Free text needs an open window, which a customer without a conversation never has.
            and not r.business_text
        }
        if wanted:
            _create_conversations(sorted(wanted), group.now)
            rows += conversations_lock(
                business_id=business_id,
                customer_ids=sorted(wanted),
                behind=(lambda: behind_created(wanted)) if behind_created is not None else None,
            )
    for row in rows:
        group.threads[row.conversation.pk] = _Thread(row.conversation, last_unread_inbound=row.last_unread_inbound_id)
    by_customer = {t.conversation.contact.customer_id: t for t in group.threads.values()}
    return group.threads, by_customer, blocked


# A dedupe key: (conversation id, customer id, author_key, client_msg_id), the conversation named
# by its id (agents) or by its customer (customers, templates, the API's free text): the lookup
# can then go out with the lock, before the lock's rows tell which conversation is whose.
DedupeKey = tuple[int | None, int | None, str, str]


def _existing_send(cursor: Any, keys: list[DedupeKey]) -> None:
    """Send the lookup of messages already sent under these keys (read with `_existing_read`).
    Raw SQL: the ORM spends more time compiling an OR of many keys than the database spends
    answering (and a raw queryset more than that, for the usual answer: none)."""
    source, params = rows_source(
        [
            ("conversation_id", "bigint"),
            ("customer_id", "bigint"),
            ("author_key", "varchar"),
            ("client_msg_id", "varchar"),
        ],
        keys,
    )
    conversation, contact = Conversation._meta.db_table, Contact._meta.db_table
    _names, columns = model_columns(Message, "m")
    cursor.execute(
        # Each key probes the partial unique index (client_msg_id <> '', spelled out so it
        # serves), whatever the plan: as a join, a prepared statement's generic plan made while
        # the business's messages were few hashed the whole table for every group and kept
        # doing so as it grew (until an ANALYZE replanned it; 10 ms a group at 40,000 messages,
        # issue 9). A LATERAL subquery with LIMIT (the index is unique: one row at most) is run
        # per key and never flattened into a join.
        f"SELECT {columns} FROM {source} CROSS JOIN LATERAL ("
        f"SELECT * FROM {Message._meta.db_table} k "
        "WHERE k.conversation_id = COALESCE(v.conversation_id, "
        f"(SELECT c.id FROM {conversation} c JOIN {contact} ct ON ct.id = c.contact_id "
        "WHERE ct.customer_id = v.customer_id)) "
        "AND k.author_key = v.author_key AND k.client_msg_id = v.client_msg_id AND k.client_msg_id <> '' "
        "LIMIT 1) m",
        params,
    )


def _existing_read(cursor: Any) -> dict[tuple[int, str, str], Message]:
    """The messages `_existing_send` found, by (conversation, author, client_msg_id)."""
    names, _columns = model_columns(Message, "m")  # as `_existing_send` selected them
    found = [Message.from_db(connection.alias, names, row) for row in cursor.fetchall()]
    return {(m.conversation_id, m.author_key, m.client_msg_id): m for m in found}


def _dedupe_key(request: SendRequest) -> DedupeKey | None:
    if not request.client_msg_id:
        return None
    if request.conversation_id is not None:
        return (request.conversation_id, None, request.author_key, request.client_msg_id)
    assert request.customer is not None
    return (None, request.customer.pk, request.author_key, request.client_msg_id)


def _business_refusal(business: Business, *, initiating: bool) -> MessagingError | None:
    """Why this business may not start conversations now, if it may not."""
    if not initiating:
        return None
    # Read the status now: a websocket holds the Business it loaded when it connected.
    status = Business.objects.filter(pk=business.pk).values_list("status", flat=True).first()
    if status != Business.Status.ACTIVE:
        return MessagingError(
            MessagingErrorCode.SUSPENDED, _("Your business is suspended and cannot start conversations.")
        )
    if not business_may_initiate(business=business):
        return MessagingError(
            MessagingErrorCode.PAYMENT_REQUIRED,
            _("Your payment is overdue, so your business cannot start conversations until it is settled."),
        )
    return None


def _blocked_by_customer() -> MessagingError:
    return MessagingError(
        MessagingErrorCode.BLOCKED, _("You blocked this business. Unblock it on your Parley page to chat.")
    )


def _blocked_for_business() -> MessagingError:
    return MessagingError(
        MessagingErrorCode.BLOCKED, _("This customer has blocked your business. Messages to them are not sent.")
    )


def _window_closed() -> MessagingError:
    return MessagingError(
        MessagingErrorCode.WINDOW_CLOSED,
        _(
            "The customer's 24-hour service window is closed, so free-form replies are not allowed. "
            "Send an approved template to start a new conversation."
        ),
    )


def _new_message(request: SendRequest, thread: _Thread, direction: str) -> Message:
    rich = request.rich
    reply_to = rich.reply_to if rich else None
    values = {
        "conversation_id": thread.conversation.pk,
        "direction": direction,
        "author_kind": request.author_kind,
        "author_user_id": request.user.pk if request.user is not None else None,
        "author_key": request.author_key,
        "kind": request.kind,
        "body": request.body,
        "template_name": request.template_name,
        "status": Message.Status.SENT,
        "failure_reason": "",
        "client_msg_id": request.client_msg_id,
        "reply_to_id": reply_to.pk if reply_to is not None else None,
        "interactive": rich.interactive if rich else None,
        "choice_id": rich.choice_id if rich else "",
    }
    message = model_new(Message, values)
    # The related objects the payloads and callers read, without a query.
    Message.conversation.field.set_cached_value(message, thread.conversation)
    Message.author_user.field.set_cached_value(message, request.user)
    Message.reply_to.field.set_cached_value(message, reply_to)
    return message


def _add_message_events(
    group: _Group, thread: _Thread, message: Message, audience: str, customer_id: int, rich: RichParts | None = None
) -> None:
    contact_name = thread.conversation.contact.display_name
    attachments = rich.attachments if rich else []
    if attachments:
        group.attachments.extend((a.pk, message) for a in attachments)
    thread.changed = True  # its last_event_id moves
    group.messages.append(message)
    group.pending.append(
        _Pending(
            events.MESSAGE_CREATED,
            audience,
            thread,
            lambda: {
                "conversation_id": message.conversation_id,
                "message": message_payload(message, contact_name=contact_name, attachments=attachments, reactions=[]),
            },
            customer_id=customer_id,
            message=message,
        )
    )
    # The conversation as it is after this message (later messages of the group change it again).
    snapshot = {"conversation": conversation_payload(thread.conversation)}
    group.pending.append(
        _Pending(events.CONVERSATION_UPDATED, Event.Audience.AGENTS, thread, lambda: snapshot, customer_id=customer_id)
    )


def _window_open(conversation: Conversation, now: datetime) -> bool:
    return conversation.window_expires_at is not None and conversation.window_expires_at > now


def _charge(group: _Group, thread: _Thread, category: str, message: Message) -> None:
    """Bill this message with the group's others (billing.charges_for_messages, in _flush)."""
    customer = thread.conversation.contact.customer
    group.to_charge.append(
        (
            message,
            ChargeRequest(
                conversation_id=thread.conversation.pk,
                customer_id=customer.pk,
                customer_phone=customer.phone_number,
                category=category,
                # As this message finds it (a customer message earlier in the group opens it).
                service_window_open=_window_open(thread.conversation, group.now),
                customer_country=customer.country_code,
            ),
        )
    )


def _customer_send(group: _Group, request: SendRequest, thread: _Thread) -> Message:
    conversation = thread.conversation
    message = _new_message(request, thread, Message.Direction.INBOUND)
    conversation.window_expires_at = group.now + WINDOW
    conversation.last_message_at = group.now
    conversation.last_message_preview = preview(request.body, request.rich)
    conversation.unread_count += 1
    _customer_wakes(conversation, group.now)
    thread.changed = True
    thread.last_unread_inbound = message
    customer_id = conversation.contact.customer_id
    group.contacts.add(customer_id)
    group.touches.append(ThreadTouch(customer_id, group.now))
    _add_message_events(group, thread, message, Event.Audience.EVERYONE, customer_id, request.rich)
    return message


def _customer_wakes(conversation: Conversation, now: datetime) -> None:
    """A customer's message reopens a resolved, pending or snoozed conversation, starts their
    wait, and puts an open, unassigned conversation in the queue (assignment serves it after
    commit) unless it is there already. In memory: saved with the group's one UPDATE."""
    was_queued = (
        conversation.status == Conversation.Status.OPEN
        and conversation.assignee_id is None
        and conversation.queued_at is not None
    )
    if conversation.status != Conversation.Status.OPEN:
        conversation.status = Conversation.Status.OPEN
        conversation.snoozed_until = None
    if conversation.waiting_since is None:
        conversation.waiting_since = now
    if conversation.assignee_id is None and not was_queued:
        conversation.queued_at = now


def _only_assignee_replies() -> bool:
    from assignment.selectors import assignment_settings_cached  # assignment builds on messaging

    return assignment_settings_cached().only_assignee_replies


def _held_by_other(group: _Group, request: SendRequest, conversation: Conversation) -> MessagingError | None:
    """The collision guard: a reply into a conversation another agent holds is refused unless
    the agent confirmed it (a soft lock), or always when only the assignee may reply."""
    assignee = conversation.assignee
    if assignee is None or request.user is None or assignee.pk == request.user.pk:
        return None
    name = assignee.get_short_name()
    if request.user.pk in group.assignee_only_users:
        return MessagingError(
            MessagingErrorCode.ASSIGNEE_ONLY,
            _("Only %(name)s, who is assigned to this conversation, may reply.") % {"name": name},
        )
    if not request.takeover:
        return MessagingError(
            MessagingErrorCode.HELD_BY_OTHER,
            _("%(name)s is handling this conversation. Send your reply anyway?") % {"name": name},
        )
    return None


def _agent_send(group: _Group, request: SendRequest, thread: _Thread, blocked: set[int]) -> Message:
    conversation = thread.conversation
    customer_id = conversation.contact.customer_id
    if request.kind == Message.Kind.NOTE:
        message = _new_message(request, thread, Message.Direction.INTERNAL)
        _add_message_events(group, thread, message, Event.Audience.AGENTS, customer_id, request.rich)
        return message
    held = _held_by_other(group, request, conversation)
    if held is not None:
        raise held
    if customer_id in blocked:
        raise _blocked_for_business()
    if not _window_open(conversation, group.now):
        raise _window_closed()
    message = _new_message(request, thread, Message.Direction.OUTBOUND)
    _charge(group, thread, "service", message)
    conversation.last_message_at = group.now
    conversation.last_message_preview = preview(request.body, request.rich)
    # Replying is reading: the agent saw what they answer, and the customer's ticks say so. (A
    # system's free text through the API is no person reading: the inbox keeps it unread.)
    if request.user is not None:
        conversation.unread_count = 0
    if request.user is not None and thread.last_unread_inbound is not None:
        up_to = thread.last_unread_inbound
        group.marks.append((conversation.pk, up_to))
        group.pending.append(
            _Pending(
                events.MESSAGE_STATUS,
                Event.Audience.EVERYONE,
                thread,
                lambda: {
                    "conversation_id": conversation.pk,
                    "direction": Message.Direction.INBOUND,
                    "up_to": up_to.pk if isinstance(up_to, Message) else up_to,
                    "status": Message.Status.READ,
                },
            )
        )
        thread.last_unread_inbound = None
    conversation.waiting_since = None  # answered
    if conversation.assignee_id is None and request.user is not None:
        conversation.assignee = request.user
        conversation.assigned_at = group.now
    if conversation.status == Conversation.Status.RESOLVED:
        conversation.status = Conversation.Status.OPEN
    thread.changed = True
    group.contacts.add(customer_id)
    group.touches.append(ThreadTouch(customer_id, group.now, unread_delta=1))
    _add_message_events(group, thread, message, Event.Audience.EVERYONE, customer_id, request.rich)
    return message


def _system_send(group: _Group, request: SendRequest, thread: _Thread, blocked: set[int]) -> Message:
    conversation = thread.conversation
    customer_id = conversation.contact.customer_id
    if customer_id in blocked:
        raise _blocked_for_business()
    if not _window_open(conversation, group.now):
        raise _window_closed()
    message = _new_message(request, thread, Message.Direction.OUTBOUND)
    _charge(group, thread, "service", message)
    conversation.last_message_at = group.now
    conversation.last_message_preview = request.body[:140]
    thread.changed = True
    group.contacts.add(customer_id)
    group.touches.append(ThreadTouch(customer_id, group.now, unread_delta=1))
    _add_message_events(group, thread, message, Event.Audience.EVERYONE, customer_id)
    return message


def _template_send(
    group: _Group,
    request: SendRequest,
    thread: _Thread,
    blocked: set[int],
    refusal: MessagingError | None,
    opted_out: set[int],
) -> Message:
    conversation = thread.conversation
    customer_id = conversation.contact.customer_id
    if customer_id in blocked:
        raise _blocked_for_business()
    if refusal is not None:
        raise refusal
    if customer_id in opted_out:
        # The consent ledger (and the marketing mute) decide before anything is billed.
        raise MessagingError(MessagingErrorCode.OPTED_OUT, _("This customer has opted out of these messages."))
    message = _new_message(request, thread, Message.Direction.OUTBOUND)
    _charge(group, thread, request.category, message)
    conversation.last_message_at = group.now
    conversation.last_message_preview = preview(request.body, request.rich)
    thread.changed = True
    group.contacts.add(customer_id)
    group.touches.append(ThreadTouch(customer_id, group.now, unread_delta=1))
    _add_message_events(group, thread, message, Event.Audience.EVERYONE, customer_id, request.rich)
    return message


def _mark_read(marks: list[tuple[int, int | Message]], now: datetime) -> events.Statement | None:
    """Agents' replies read the customer's messages up to the last one before the reply."""
    if not marks:
        return None
    table = Message._meta.db_table
    source, params = rows_source(
        [("conversation_id", "bigint"), ("up_to", "bigint")],
        [(conversation_id, up_to.pk if isinstance(up_to, Message) else up_to) for conversation_id, up_to in marks],
    )
    done = (Message.Status.READ, Message.Status.FAILED)
    return (
        f"UPDATE {table} AS m SET "
        f"status = CASE WHEN m.status IN (%s, %s) THEN m.status ELSE %s END, "
        f"read_at = CASE WHEN m.status IN (%s, %s) THEN m.read_at ELSE %s END, "
        "delivered_at = COALESCE(m.delivered_at, %s) "
        f"FROM {source} "
        "WHERE m.conversation_id = v.conversation_id AND m.id <= v.up_to AND m.direction = %s "
        f"AND (m.status NOT IN (%s, %s) OR m.delivered_at IS NULL) AND {awaiting_receipt_sql('m')}",
        [*done, Message.Status.READ, *done, now, now, *params, Message.Direction.INBOUND, *done],
    )


_CONVERSATION_COLUMNS = [
    ("id", "bigint"),
    ("window_expires_at", "timestamptz"),
    ("last_message_at", "timestamptz"),
    ("last_message_preview", "varchar"),
    ("unread_count", "integer"),
    ("status", "varchar"),
    ("assignee_id", "bigint"),
    ("last_public_event_id", "bigint"),
    ("last_event_id", "bigint"),
    ("snoozed_until", "timestamptz"),
    ("waiting_since", "timestamptz"),
    ("queued_at", "timestamptz"),
    ("assigned_at", "timestamptz"),
]


def _save_conversations(threads: list[_Thread], now: datetime) -> events.Statement | None:
    """Every changed conversation of the group in one UPDATE (the rows are locked already), in
    `events.execute_numbered`: its event pointers may name the group's own events by their
    placeholders."""
    if not threads:
        return None
    table = Conversation._meta.db_table
    source, params = rows_source(
        _CONVERSATION_COLUMNS,
        [
            (
                c.pk,
                c.window_expires_at,
                c.last_message_at,
                c.last_message_preview,
                c.unread_count,
                c.status,
                c.assignee_id,
                c.last_public_event_id,
                c.last_event_id,
                c.snoozed_until,
                c.waiting_since,
                c.queued_at,
                c.assigned_at,
            )
            for c in (thread.conversation for thread in threads)
        ],
    )
    numbered = ("last_public_event_id", "last_event_id")
    assignments = ", ".join(
        f"{name} = {events.numbered_sql('v.' + name) if name in numbered else 'v.' + name}"
        for name, _type in _CONVERSATION_COLUMNS[1:]
    )
    return (
        f"UPDATE {table} AS c SET {assignments}, updated_at = %s FROM counter, {source} WHERE c.id = v.id",
        [now, *params],
    )


def _opted_out(business: Business, requests: Sequence[SendRequest]) -> dict[str, set[int]]:
    """Per template category in this group, the customers who do not consent to it."""
    by_category: dict[str, set[int]] = {}
    for request in requests:
        if request.origin == TEMPLATE and request.customer is not None:
            by_category.setdefault(request.category, set()).add(request.customer.pk)
    return {
        category: customers_opted_out(business_id=business.pk, customer_ids=ids, category=category)
        for category, ids in by_category.items()
    }


def _send_one(
    group: _Group,
    request: SendRequest,
    thread: _Thread | None,
    existing: dict[tuple[int, str, str], Message],
    blocked: set[int],
    refusal: MessagingError | None,
    opted_out: dict[str, set[int]],
) -> SendResult | MessagingError:
    """One request of a locked group: its refusal, its duplicate, or its message (queued for
    the group's flush). `existing` learns what this request sent, for the requests after it."""
    if thread is None:
        if request.business_text:
            assert request.customer is not None
            return _blocked_for_business() if request.customer.pk in blocked else _window_closed()
        if request.origin in (AGENT, SYSTEM):
            return not_found()
        if request.origin == CUSTOMER:
            return _blocked_by_customer()
        assert request.customer is not None
        return _blocked_for_business() if request.customer.pk in blocked else (refusal or not_found())
    key = (thread.conversation.pk, request.author_key, request.client_msg_id)
    if request.client_msg_id and key in existing:
        return SendResult(existing[key], duplicate=True)
    try:
        if request.rich is not None:
            rich, body = resolve(
                parts=request.rich,
                conversation=thread.conversation,
                author_key=request.author_key,
                origin=request.origin,
                body=request.body,
            )
            request = replace(request, rich=rich, body=body)
        if request.origin == CUSTOMER:
            if request.customer.pk in blocked:  # type: ignore[union-attr]
                raise _blocked_by_customer()
            message = _customer_send(group, request, thread)
        elif request.origin == AGENT:
            message = _agent_send(group, request, thread, blocked)
        elif request.origin == SYSTEM:
            message = _system_send(group, request, thread, blocked)
        else:
            message = _template_send(group, request, thread, blocked, refusal, opted_out.get(request.category, set()))
    except MessagingError as error:
        return error
    if request.client_msg_id:
        existing[key] = message  # the same client_msg_id again in this group is a duplicate
    return SendResult(message, duplicate=False)


def worded_in(language: str | None) -> AbstractContextManager[None]:
    """Refusals worded in the sender's language. Most groups have one language, usually the
    one active already (a delivery job's hundred sends): then nothing is switched — Django's
    override sets its thread-local twice per send, copying the context's storage each time (~4%
    of a delivery job's CPU in the profile)."""
    if language == translation.get_language():
        return nullcontext()
    return translation.override(language)


def do_send_messages(*, business: Business, requests: Sequence[SendRequest]) -> list[SendResult | MessagingError]:
    """Write checked sends to one business in one transaction; one outcome per request, in
    order. Must run in the business's schema. Database errors are raised (nothing is written).
    Pipelined (config.sql.pipelined): the statements whose answers the writer never reads go
    out with the next one it reads, a third fewer round trips for a customer's send group, and
    the last ones with the COMMIT."""
    with transaction.atomic(), pipelined(commit=True):
        _plan_generically()
        outcomes, numbering = _write(business, requests)
    if numbering is not None:
        # Committed (and published by the on_commit hook) or, inside an outer transaction, not
        # yet: either way the answer is in, and the messages get their event ids now.
        numbering()
    return outcomes


def _plan_generically() -> None:
    """The group's prepared statements run on their generic plan from the first run, until the
    transaction ends (SET LOCAL; no round trip: it goes out with the group's first statement).
    Left to PostgreSQL (`plan_cache_mode = auto`), three of them were planned anew on every run
    for ever — the message-id reservation, the conversations' lock and the customers' threads
    upsert (pg_prepared_statements on a server's connection: 402, 328 and 196 custom plans, no
    generic one): their generic plan is the same plan, but it is costed for the 10 array
    elements or 1,000 series rows PostgreSQL assumes of a parameter, above what the custom plans
    cost for a group's few, so it never won. Every statement of the group is written so that its
    plan does not depend on its values (ids through unique indexes, OFFSET 0 lookups: see
    messaging.locks); tests/messaging/test_many_conversations.py holds it to its reads at scale.
    Nothing to send on a session that plans generically for its whole life (a loop slot's, whose
    statements are all send groups': tenancy.loop_db) — a statement less a group."""
    if session_plans_generically(connection):
        return
    with prepared_cursor() as cursor:  # cheaper to make than Django's; SET can be prepared too
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")


def _write(
    business: Business, requests: Sequence[SendRequest]
) -> tuple[list[SendResult | MessagingError], Callable[[], object] | None]:
    group = _Group(business=business, now=timezone.now())
    outcomes: list[SendResult | MessagingError | None] = [None] * len(requests)
    # Seats: checked here, one query for the group, for sends whose check left it to the writer;
    # and roles, when only the assignee may reply (owners and admins may still take over). The
    # query goes out ahead of the lock and is read after it: one round trip for both. A send
    # refused for its seat locks its conversation all the same (until this group commits) and
    # writes nothing.
    assignee_only = any(r.origin == AGENT and r.user is not None for r in requests) and _only_assignee_replies()
    asking = sorted({r.user.pk for r in requests if r.user is not None and (r.member_unchecked or assignee_only)})
    refusal = _business_refusal(business, initiating=any(r.origin == TEMPLATE for r in requests))
    keys = [key for key in map(_dedupe_key, requests) if key is not None]
    created_keys: list[DedupeKey] = []
    billed = _maybe_billed(requests, refusal)
    windows_read: list[Callable[[], ChargeWindows]] = []

    reserved_again: list[bool] = []
    cursors = ExitStack()
    opened: dict[str, Any] = {}

    def cursor(name: str) -> Any:
        # Each made when first used: a customer's group needs two of these five, and a prepared
        # cursor costs a copy of the connection's adapters (config.sql.prepared_cursor).
        if name not in opened:
            opened[name] = cursors.enter_context(prepared_cursor())
        return opened[name]

    def look_again(customer_ids: set[int]) -> None:
        # Conversations made here just now: another writer may have made one first and sent
        # under one of these keys before this group's second lock: looked up behind that lock.
        created_keys.extend(key for key in keys if key[1] in customer_ids)
        if created_keys:
            _existing_send(cursor("again"), created_keys)
        # And the ids again, behind that lock: reserved before it, a message here could get a
        # lower id than one that writer committed first into the same conversation.
        _reserve_ids(cursor("reserve_again"), len(requests))
        reserved_again.append(True)

    def behind() -> None:
        if keys:
            _existing_send(cursor("lookup"), keys)
        _reserve_ids(cursor("reserve"), len(requests))
        if billed:
            windows_read.append(_billed_windows(cursor("windows"), cursor("open_windows"), group, billed))

    with cursors:
        if asking:
            seats_send(cursor("seats"), business_id=business.pk, user_ids=asking)
        # The dedupe lookup and the message ids go out behind the lock statement (one round
        # trip for all three); the server runs them once the conversations are locked, so the
        # lookup sees every message committed under those locks, and a conversation's message
        # ids still grow in its commit order, as when they were sent after the lock's answer.
        by_id, by_customer, blocked = _lock_conversations(
            group,
            requests,
            refusal,
            behind=behind,
            behind_created=look_again,
        )
        if asking:
            roles = dict(cursor("seats").fetchall())
            group.assignee_only_users = {
                pk for pk, role in roles.items() if assignee_only and role == Membership.Role.AGENT
            }
            for index, request in enumerate(requests):
                if request.member_unchecked and (request.user is None or request.user.pk not in roles):
                    with worded_in(request.language):
                        outcomes[index] = not_found()  # no seat (any more): as for a conversation not theirs
        existing = _existing_read(cursor("lookup")) if keys else {}
        if created_keys:
            existing.update(_existing_read(cursor("again")))
        group.message_ids = [int(pk) for (pk,) in cursor("reserve").fetchall()]
        reserved = list(group.message_ids)
        if reserved_again:
            group.message_ids = [int(pk) for (pk,) in cursor("reserve_again").fetchall()]
            reserved += group.message_ids
        if windows_read:
            group.windows = windows_read[0]()
    # Both reservations: a group that made conversations leaves its first one unused.
    _statistics_when_grown(business, reserved)

    def thread_of(request: SendRequest) -> _Thread | None:
        if request.conversation_id is not None:
            return by_id.get(request.conversation_id)
        assert request.customer is not None
        return by_customer.get(request.customer.pk)

    active = [r for index, r in enumerate(requests) if outcomes[index] is None]
    opted_out = _opted_out(business, active)

    for index, request in enumerate(requests):
        if outcomes[index] is not None:
            continue
        # A group of hundreds of sends (overload) is tens of milliseconds of Python: other
        # sockets are read meanwhile (tenancy.loop_db).
        let_the_loop_in()
        with worded_in(request.language):
            outcomes[index] = _send_one(group, request, thread_of(request), existing, blocked, refusal, opted_out)

    numbering = None
    if group.messages:
        numbered = _flush(group)
        fresh = [o for o in outcomes if isinstance(o, SendResult) and not o.duplicate]
        for outcome in fresh:
            outcome.charge = group.charges.get(id(outcome.message))

        def numbering() -> None:
            stored, _updates = numbered()
            created = {
                id(pending.message): event
                for event, pending in zip(stored, group.pending, strict=True)
                if pending.message is not None and pending.type == events.MESSAGE_CREATED
            }
            for outcome in fresh:
                outcome.created = created.get(id(outcome.message))

    return [o for o in outcomes if o is not None], numbering


def _maybe_billed(requests: Sequence[SendRequest], refusal: MessagingError | None) -> list[SendRequest]:
    """The requests that may send a billed message: every business message but a note, and no
    template while the business may not initiate."""
    return [
        r
        for r in requests
        if r.origin != CUSTOMER and r.kind != Message.Kind.NOTE and not (r.origin == TEMPLATE and refusal is not None)
    ]


def _billed_windows(lock: Any, lookup: Any, group: _Group, billed: list[SendRequest]) -> Callable[[], ChargeWindows]:
    """Send the lock and reads of the billing windows of every customer these sends may bill
    (billing.charge_windows_send), behind the conversations' lock: the group's first round trip
    carries them, where billing's own lock made a round trip of its own once the group knew what
    it bills (a refused send's customer is locked for nothing until the commit). The customers
    are named by their conversations (an agent's or a system's send) or as the sends name them,
    and the prices read with the lock are those known before it (a template's category, the
    country of a customer named by the send); an agent reply's come with the free-tier count
    when it opens a billable conversation."""
    by_conversation = sorted({r.conversation_id for r in billed if r.conversation_id is not None})
    by_customer = [r for r in billed if r.conversation_id is None and r.customer is not None]
    customers: CustomersSource = (
        _billed_customers_sql(),
        [by_conversation, sorted({r.customer.pk for r in by_customer if r.customer is not None})],
    )
    price_keys = {
        (r.category or "service", pricing_country(stored=r.customer.country_code, phone=r.customer.phone_number))
        for r in by_customer
        if r.customer is not None
    }
    return charge_windows_send(
        lock, lookup, business_id=group.business.pk, customers=customers, price_keys=price_keys, sent_at=group.now
    )


@functools.cache
def _billed_customers_sql() -> str:
    """`_billed_windows`' customers: each conversation's by primary keys, a scalar subquery per
    id (never a join, which a generic plan made without statistics answered by reading every
    contact), then those the sends name."""
    conversation, contact = Conversation._meta.db_table, Contact._meta.db_table
    return (
        f"SELECT (SELECT ct.customer_id FROM {contact} ct WHERE ct.id = "
        f"(SELECT cv.contact_id FROM {conversation} cv WHERE cv.id = x.id)) FROM unnest(%s::bigint[]) AS x(id) "
        "UNION ALL SELECT unnest(%s::bigint[])"
    )


def _reserve_ids(cursor: Any, count: int) -> None:
    """Send the reservation of `count` message ids (one per request: a request sends at most
    one message; ids left unused are a gap, as a rolled-back insert leaves). On a prepared
    cursor: one statement of every send group, parsed and planned from its text each time
    before. The sequence is looked up when it runs, so the business's search_path decides."""
    cursor.execute(
        "SELECT nextval((SELECT pg_get_serial_sequence(%s, 'id'))::regclass) FROM generate_series(1, %s)",
        [Message._meta.db_table, count],
    )


_MESSAGE_COLUMNS = [
    ("conversation_id", "bigint"),
    ("direction", "varchar"),
    ("author_kind", "varchar"),
    ("author_user_id", "bigint"),
    ("author_key", "varchar"),
    ("kind", "varchar"),
    ("body", "text"),
    ("template_name", "varchar"),
    ("status", "varchar"),
    ("failure_reason", "varchar"),
    ("client_msg_id", "varchar"),
    ("created_at", "timestamptz"),
    ("reply_to_id", "bigint"),
    ("interactive", "jsonb"),
    ("choice_id", "varchar"),
]


def _insert_messages(messages: list[Message], offsets: dict[int, int], now: datetime) -> events.Statement:
    """The group's messages, with the ids reserved for them and their `message.created` event's
    id, in `events.execute_numbered` (`offsets`: each message's event, by id(message))."""
    names = ", ".join(name for name, _type in _MESSAGE_COLUMNS)
    source, params = rows_source(
        [("id", "bigint"), ("event_offset", "integer"), *_MESSAGE_COLUMNS],
        [[m.pk, offsets[id(m)], *_message_row(m, now)] for m in messages],
    )
    return (
        f"INSERT INTO {Message._meta.db_table} (id, {names}, event_id) "
        f"SELECT v.id, {', '.join('v.' + name for name, _type in _MESSAGE_COLUMNS)}, counter.first_id + v.event_offset "
        f"FROM counter, {source}",
        params,
    )


def _message_row(message: Message, now: datetime) -> list[Any]:
    message.created_at = now  # the conversation's last_message_at, to the microsecond
    row = [getattr(message, name) for name, _type in _MESSAGE_COLUMNS]
    row[-2] = Jsonb(message.interactive) if message.interactive is not None else None
    return row


def _link_attachments(links: list[tuple[int, Message]]) -> events.Statement | None:
    """Uploaded files now belong to their messages (and so to the conversation's customer)."""
    if not links:
        return None
    table = Attachment._meta.db_table
    source, params = rows_source(
        [("id", "bigint"), ("message_id", "bigint"), ("conversation_id", "bigint")],
        [(pk, m.pk, m.conversation_id) for pk, m in links],
    )
    return (
        f"UPDATE {table} AS a SET message_id = v.message_id, conversation_id = v.conversation_id "
        f"FROM {source} WHERE a.id = v.id",
        params,
    )


# A new business's tables have no planner statistics until autovacuum first analyzes them, on
# its next round (up to `autovacuum_naptime`, a minute by default) after their 50th change, and
# a prepared statement keeps the generic plan it made until the next ANALYZE of its tables.
# Unanalyzed, PostgreSQL takes the tables for ten pages and the send core's plans scan them
# whole: a business's first minute at full rate (an airline's first notification run) read all
# its conversations, contacts and messages in every send group (12,315 rows a group at 4,100
# messages); analyzed once at a thousand messages, the dedupe lookup's and the conversations'
# UPDATE's plans made then hashed the whole table while it grew (PostgreSQL's CPU per group of
# three rose from 6 to 13 ms over 6,000 messages). So a job analyzes the business's tables each
# time its message ids pass a power of two, to a million: its plans are never made on a table
# less than half its size. Past that autovacuum keeps up (a tenth of a table changed).
STATISTICS_AT_MESSAGES = tuple(2**n for n in range(10, 21))


def _statistics_when_grown(business: Business, reserved_ids: Sequence[int]) -> None:
    """Queue `messaging.tables_analyze` in this transaction when the message ids a group
    reserved pass a mark of STATISTICS_AT_MESSAGES (an id is reserved by one group only, used
    or not, so one group queues it)."""
    if reserved_ids and any(min(reserved_ids) <= mark <= max(reserved_ids) for mark in STATISTICS_AT_MESSAGES):
        defer_job(
            "messaging.tables_analyze",
            queueing_lock=f"analyze:{business.schema_name}",
            skip_if_queued=True,
            schema_name=business.schema_name,
        )


def _flush(group: _Group) -> Callable[[], tuple[list[events.StoredEvent], list[tuple[int, str]]]]:
    """Write the group's messages and events; numbered by the statement that goes out with the
    COMMIT (events.execute_numbered). Returns what numbers the group's Python side once the
    answer is in (also run, once, by the publish after commit)."""
    business = group.business
    if group.to_charge:
        charges = charges_for_messages(
            business=business,
            requests=[request for _m, request in group.to_charge],
            sent_at=group.now,
            windows=group.windows,
        )
        for (charged, _request), outcome in zip(group.to_charge, charges, strict=True):
            group.charges[id(charged)] = outcome
    # Read after the commit: the threads' upsert goes out with the statements below. The
    # customers' contacts with the business are recorded in the same statement.
    read_states = customer_threads_touch_later(
        business_id=business.pk,
        touches=group.touches,
        alongside=[
            customer_contacts_record_statement(business_id=business.pk, customer_ids=group.contacts, at=group.now)
        ],
    )
    assert len(group.message_ids) >= len(group.messages), "an id is reserved for every request"
    for message, pk in zip(group.messages, group.message_ids, strict=False):
        # Its id and time before its payload is made (the frames are made before the insert).
        message.pk, message.created_at = pk, group.now
    # Every event of the group by its placeholder: the chain of each conversation's events, the
    # messages' event ids and the frames name them so until the counter numbers them.
    offsets = {id(p.message): offset for offset, p in enumerate(group.pending) if p.message is not None}
    for offset, pending in enumerate(group.pending):
        if pending.message is not None:
            pending.message.event_id = events.placeholder(offset)
    unnumbered = []
    for offset, pending in enumerate(group.pending):
        let_the_loop_in()  # each event's payload is made here
        unnumbered.append(
            events.unnumbered(pending.thread.conversation, offset, pending.type, pending.audience, pending.data())
        )
    usage_links = [
        (str(charge.record.pk), message.pk)
        for message in group.messages
        if (charge := group.charges.get(id(message))) is not None
        and charge.record is not None
        and charge.opened
        and charge.record.unit == "message"
    ]
    # Every other lock is held: the counter's row now, in the statement that goes out with the
    # COMMIT (config.sql.pipelined), so it is held only while the server runs it and commits.
    changed = [t for t in group.threads.values() if t.changed]
    number = events.execute_numbered(
        len(group.pending),
        [
            _insert_messages(group.messages, offsets, group.now),
            _save_conversations(changed, group.now),
            events.append_templates_statement(unnumbered, group.now),
        ],
    )
    # After the messages' insert (same round trip, in order): they see its rows.
    usage_records_link_messages(links=usage_links)
    events.execute_together([_mark_read(group.marks, group.now), _link_attachments(group.attachments)])

    @functools.cache
    def numbered() -> tuple[list[events.StoredEvent], list[tuple[int, str]]]:
        ids = number()
        alias = connection.alias
        for message in group.messages:
            message.event_id = ids.id(message.event_id)
            message._state.adding, message._state.db = False, alias
        for thread in changed:
            ids.pointers(thread.conversation)
        stored = [ids.stored(event) for event in unnumbered]
        # /me/ lists: each customer's thread as this group left it, tagged with its send's last event.
        states: dict[int, ThreadState] = read_states()
        last_event_of: dict[int, int] = {}
        for event, pending in zip(stored, group.pending, strict=True):
            if pending.customer_id is not None:
                last_event_of[pending.customer_id] = event.id
        customer_updates = [
            (
                customer_id,
                events.dumps({"id": last_event_of[customer_id], "type": events.THREAD_UPDATED, **state.frame_data()}),
            )
            for customer_id, state in states.items()
            if customer_id in last_event_of
        ]
        return stored, customer_updates

    events.publish_numbered_on_commit(schema_name=business.schema_name, numbered=numbered)
    return numbered
