"""Messaging use cases. Each runs in the business's schema (the caller's request, or a
`schema_context` entered by the consumer's database function), owns its transaction, appends
its events to the business's stream and publishes them only after commit.

Every business-to-customer send path goes through `_business_send_checks`: a block refuses it
(never billed), the 24-hour service window refuses free-form replies, a suspended business or one
whose payment grace ran out cannot start conversations. Accepted sends are charged inside the
transaction through billing's contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, F
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Customer, Membership, User
from billing.services import business_may_initiate, conversation_charge_for_message
from customers.selectors import customer_has_blocked
from customers.services import customer_contact_record
from directory.models import CustomerThread
from messaging import events
from messaging.models import SERVICE_WINDOW_HOURS, AgentPresence, Contact, Conversation, Event, Message
from tenancy.models import Business

MAX_BODY = 4096
MAX_CLIENT_MSG_ID = 64
WINDOW = timedelta(hours=SERVICE_WINDOW_HOURS)


class MessagingError(Exception):
    """A refused action. `code` is stable for clients; `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def not_found() -> MessagingError:
    # "Missing" and "not yours" look the same.
    return MessagingError("not_found", _("This conversation does not exist."))


@dataclass
class SendResult:
    message: Message
    duplicate: bool


# --- payloads (what clients see) ------------------------------------------------------------


def message_payload(message: Message, *, contact_name: str = "") -> dict[str, Any]:
    if message.author_kind == Message.Author.AGENT and message.author_user is not None:
        author_name = message.author_user.get_short_name()
    elif message.author_kind == Message.Author.CUSTOMER:
        author_name = contact_name
    else:
        author_name = ""
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "event_id": message.event_id,
        "direction": message.direction,
        "author_kind": message.author_kind,
        "author_name": author_name,
        "kind": message.kind,
        "body": message.body,
        "status": message.status,
        "client_msg_id": message.client_msg_id,
        "created_at": message.created_at,
    }


def conversation_payload(conversation: Conversation) -> dict[str, Any]:
    contact = conversation.contact
    assignee = conversation.assignee
    return {
        "id": conversation.pk,
        "contact": {
            "id": contact.pk,
            "name": contact.display_name,
            "phone": contact.customer.phone_number,
            "phone_display": contact.customer.phone_display,
            "notes": contact.notes,
        },
        "status": conversation.status,
        "assignee": {"id": assignee.pk, "name": assignee.get_short_name()} if assignee else None,
        "unread": conversation.unread_count,
        "last_message_at": conversation.last_message_at,
        "preview": conversation.last_message_preview,
        "window_expires_at": conversation.window_expires_at,
    }


# --- helpers --------------------------------------------------------------------------------


def _without_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL; left in, it would fail the whole transaction.
    return text.replace("\x00", "")


def _clean_body(body: Any) -> str:
    text = _without_nul(body).strip() if isinstance(body, str) else ""
    if not text:
        raise MessagingError("empty", _("Write a message first."))
    if len(text) > MAX_BODY:
        raise MessagingError("too_long", _("Messages can be at most %(max)d characters.") % {"max": MAX_BODY})
    return text


def _clean_client_msg_id(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_CLIENT_MSG_ID or "\x00" in value:
        raise MessagingError("invalid", _("client_msg_id must be a string of at most 64 characters."))
    return value


def _existing(conversation: Conversation, author_key: str, client_msg_id: str) -> Message | None:
    if not client_msg_id:
        return None
    return (
        Message.objects.select_related("author_user")
        .filter(conversation=conversation, author_key=author_key, client_msg_id=client_msg_id)
        .first()
    )


def conversation_pk(value: Any) -> int:
    """A conversation id from a client; anything that is not one cannot name a conversation.
    (JSON allows 1e400, which int() refuses with OverflowError.)"""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise not_found() from None


def _locked_conversation(conversation_id: Any) -> Conversation:
    conversation = (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("contact__customer", "assignee")
        .filter(pk=conversation_pk(conversation_id))
        .first()
    )
    if conversation is None:
        raise not_found()
    return conversation


def _conversation_for_customer_locked(customer: Customer) -> Conversation:
    contact, _created = Contact.objects.get_or_create(customer=customer)
    conversation, _created = Conversation.objects.get_or_create(contact=contact)
    return _locked_conversation(conversation.pk)


class _Stream:
    """Collects a transaction's events; ids are allocated at the end, after every other lock."""

    def __init__(self, business: Business, conversation: Conversation) -> None:
        self.business = business
        self.conversation = conversation
        self.pending: list[tuple[str, str, Any]] = []
        self.customer_updates: list[tuple[int, dict[str, Any]]] = []

    def add(self, type: str, audience: str, build: Any) -> None:
        self.pending.append((type, audience, build))

    def commit(self) -> None:
        if not self.pending:
            return
        first = events.allocate_event_ids(len(self.pending))
        stored: list[events.StoredEvent] = []
        conversation = self.conversation
        last_public = conversation.last_public_event_id
        for offset, (type, audience, build) in enumerate(self.pending):
            event_id = first + offset
            data = build(event_id)
            prev = conversation.last_public_event_id
            if audience == Event.Audience.EVERYONE:
                conversation.last_public_event_id = event_id
            stored.append(
                events.append_event(
                    event_id=event_id,
                    type=type,
                    conversation_id=conversation.pk,
                    audience=audience,
                    data=data,
                    prev_public_id=prev,
                )
            )
        if conversation.last_public_event_id != last_public:  # agent-only events leave it alone
            Conversation.objects.filter(pk=conversation.pk).update(
                last_public_event_id=conversation.last_public_event_id
            )
        customer_frames = [
            (cid, events.dumps({"id": stored[-1].id, "type": events.THREAD_UPDATED, **data}))
            for cid, data in self.customer_updates
        ]
        events.publish_on_commit(schema_name=self.business.schema_name, events=stored, customer_updates=customer_frames)


def _thread_touch(
    *, business: Business, customer_id: int, at: datetime, unread_delta: int = 0, unread: int | None = None
) -> dict[str, Any]:
    """Upsert the customer's public thread row: add `unread_delta` to its unread count, or set it
    to `unread`. `at` moves last activity forward only; reading passes the last message time, so
    opening a chat does not reorder the list."""
    thread, _created = CustomerThread.objects.select_for_update().get_or_create(
        customer_id=customer_id, business_id=business.pk, defaults={"last_activity_at": at}
    )
    thread.unread_count = max(0, thread.unread_count + unread_delta) if unread is None else unread
    if at > thread.last_activity_at:
        thread.last_activity_at = at
    thread.save(update_fields=["unread_count", "last_activity_at"])
    return {"business_id": business.pk, "unread": thread.unread_count, "last_activity_at": thread.last_activity_at}


def _conversation_updated(stream: _Stream) -> None:
    conversation = stream.conversation
    stream.add(
        events.CONVERSATION_UPDATED,
        Event.Audience.AGENTS,
        lambda _id: {"conversation": conversation_payload(conversation)},
    )


def _announce_conversation(business: Business, conversation: Conversation) -> None:
    """A transaction whose only event is conversation.updated (assign, status, contact edit)."""
    stream = _Stream(business, conversation)
    _conversation_updated(stream)
    stream.commit()


def _message_created(stream: _Stream, message: Message, audience: str) -> None:
    contact_name = stream.conversation.contact.display_name

    def build(event_id: int) -> dict[str, Any]:
        message.event_id = event_id
        message.save()
        return {
            "conversation_id": message.conversation_id,
            "message": message_payload(message, contact_name=contact_name),
        }

    stream.add(events.MESSAGE_CREATED, audience, build)


def _business_send_checks(*, business: Business, conversation: Conversation, initiating: bool) -> None:
    customer = conversation.contact.customer
    if customer_has_blocked(customer_id=customer.pk, business_id=business.pk):
        raise MessagingError("blocked", _("This customer has blocked your business. Messages to them are not sent."))
    if initiating:
        # Read the status now: a websocket holds the Business it loaded when it connected.
        status = Business.objects.filter(pk=business.pk).values_list("status", flat=True).first()
        if status != Business.Status.ACTIVE:
            raise MessagingError("suspended", _("Your business is suspended and cannot start conversations."))
        if not business_may_initiate(business=business):
            raise MessagingError(
                "payment_required",
                _("Your payment is overdue, so your business cannot start conversations until it is settled."),
            )
    else:
        now = timezone.now()
        if conversation.window_expires_at is None or conversation.window_expires_at <= now:
            raise MessagingError(
                "window_closed",
                _(
                    "The customer's 24-hour service window is closed, so free-form replies are not allowed. "
                    "Send an approved template to start a new conversation."
                ),
            )


# --- sending --------------------------------------------------------------------------------


def message_send_customer(*, business: Business, customer: Customer, body: Any, client_msg_id: Any = "") -> SendResult:
    """A customer writes to the business: opens or extends the 24-hour service window."""
    client_msg_id = _clean_client_msg_id(client_msg_id)
    author_key = f"customer:{customer.pk}"
    with transaction.atomic():
        conversation = _conversation_for_customer_locked(customer)
        existing = _existing(conversation, author_key, client_msg_id)
        if existing is not None:
            return SendResult(existing, duplicate=True)
        text = _clean_body(body)
        if customer_has_blocked(customer_id=customer.pk, business_id=business.pk):
            raise MessagingError("blocked", _("You blocked this business. Unblock it on your Parley page to chat."))
        now = timezone.now()
        message = Message(
            conversation=conversation,
            direction=Message.Direction.INBOUND,
            author_kind=Message.Author.CUSTOMER,
            author_key=author_key,
            kind=Message.Kind.TEXT,
            body=text,
            status=Message.Status.SENT,
            client_msg_id=client_msg_id,
        )
        conversation.window_expires_at = now + WINDOW
        conversation.last_message_at = now
        conversation.last_message_preview = text[:140]
        conversation.unread_count = F("unread_count") + 1  # type: ignore[assignment]
        if conversation.status == Conversation.Status.RESOLVED:
            conversation.status = Conversation.Status.OPEN
        conversation.save(
            update_fields=[
                "window_expires_at",
                "last_message_at",
                "last_message_preview",
                "unread_count",
                "status",
                "updated_at",
            ]
        )
        conversation.refresh_from_db(fields=["unread_count"])
        customer_contact_record(customer_id=customer.pk, business_id=business.pk, at=now)
        thread = _thread_touch(business=business, customer_id=customer.pk, at=now)
        stream = _Stream(business, conversation)
        _message_created(stream, message, Event.Audience.EVERYONE)
        _conversation_updated(stream)
        stream.customer_updates.append((customer.pk, thread))
        stream.commit()
    return SendResult(message, duplicate=False)


def _membership(business: Business, user: User) -> Membership:
    membership = Membership.objects.filter(business_id=business.pk, user_id=user.pk).first()
    if membership is None:
        raise not_found()
    return membership


def message_send_agent(
    *,
    business: Business,
    user: User,
    conversation_id: Any,
    body: Any,
    client_msg_id: Any = "",
    kind: str = Message.Kind.TEXT,
) -> SendResult:
    """An agent replies (inside the service window) or leaves an internal note (never sent)."""
    if kind not in (Message.Kind.TEXT, Message.Kind.NOTE):
        raise MessagingError("invalid", _("Unknown message kind."))
    client_msg_id = _clean_client_msg_id(client_msg_id)
    author_key = f"user:{user.pk}"
    _membership(business, user)
    with transaction.atomic():
        conversation = _locked_conversation(conversation_id)
        existing = _existing(conversation, author_key, client_msg_id)
        if existing is not None:
            return SendResult(existing, duplicate=True)
        text = _clean_body(body)
        now = timezone.now()
        note = kind == Message.Kind.NOTE
        message = Message(
            conversation=conversation,
            direction=Message.Direction.INTERNAL if note else Message.Direction.OUTBOUND,
            author_kind=Message.Author.AGENT,
            author_user=user,
            author_key=author_key,
            kind=kind,
            body=text,
            status=Message.Status.SENT,
            client_msg_id=client_msg_id,
        )
        stream = _Stream(business, conversation)
        if not note:
            _business_send_checks(business=business, conversation=conversation, initiating=False)
            customer = conversation.contact.customer
            conversation_charge_for_message(
                business=business,
                conversation_id=conversation.pk,
                customer_id=customer.pk,
                customer_phone=customer.phone_number,
                category="service",
                sent_at=now,
            )
            conversation.last_message_at = now
            conversation.last_message_preview = text[:140]
            # Replying is reading: the agent saw what they answer, and the customer's ticks say so.
            conversation.unread_count = 0
            last_inbound = (
                Message.objects.filter(conversation=conversation, direction=Message.Direction.INBOUND)
                .order_by("-id")
                .values_list("id", flat=True)
                .first()
            )
            if last_inbound is not None:
                _mark(stream, direction=Message.Direction.INBOUND, up_to=last_inbound, read=True)
            if conversation.assignee_id is None:
                conversation.assignee = user
            if conversation.status == Conversation.Status.RESOLVED:
                conversation.status = Conversation.Status.OPEN
            conversation.save(
                update_fields=[
                    "last_message_at",
                    "last_message_preview",
                    "unread_count",
                    "assignee",
                    "status",
                    "updated_at",
                ]
            )
            customer_contact_record(customer_id=customer.pk, business_id=business.pk, at=now)
            stream.customer_updates.append(
                (customer.pk, _thread_touch(business=business, customer_id=customer.pk, at=now, unread_delta=1))
            )
        _message_created(stream, message, Event.Audience.AGENTS if note else Event.Audience.EVERYONE)
        _conversation_updated(stream)
        stream.commit()
    return SendResult(message, duplicate=False)


def message_send_template(
    *,
    business: Business,
    customer: Customer,
    template_name: str,
    body: Any,
    category: str,
    author_key: str,
    author_kind: str = Message.Author.API,
    author_user: User | None = None,
    client_msg_id: Any = "",
) -> SendResult:
    """A business-initiated message (an approved template, e.g. a flight change): allowed outside
    the service window, refused for a blocked customer, a suspended business or unpaid bills."""
    client_msg_id = _clean_client_msg_id(client_msg_id)
    with transaction.atomic():
        conversation = _conversation_for_customer_locked(customer)
        existing = _existing(conversation, author_key, client_msg_id)
        if existing is not None:
            return SendResult(existing, duplicate=True)
        text = _clean_body(body)
        _business_send_checks(business=business, conversation=conversation, initiating=True)
        now = timezone.now()
        conversation_charge_for_message(
            business=business,
            conversation_id=conversation.pk,
            customer_id=customer.pk,
            customer_phone=customer.phone_number,
            category=category,
            sent_at=now,
        )
        message = Message(
            conversation=conversation,
            direction=Message.Direction.OUTBOUND,
            author_kind=author_kind,
            author_user=author_user,
            author_key=author_key,
            kind=Message.Kind.TEMPLATE,
            template_name=template_name[:100],
            body=text,
            status=Message.Status.SENT,
            client_msg_id=client_msg_id,
        )
        conversation.last_message_at = now
        conversation.last_message_preview = text[:140]
        conversation.save(update_fields=["last_message_at", "last_message_preview", "updated_at"])
        customer_contact_record(customer_id=customer.pk, business_id=business.pk, at=now)
        stream = _Stream(business, conversation)
        stream.customer_updates.append(
            (customer.pk, _thread_touch(business=business, customer_id=customer.pk, at=now, unread_delta=1))
        )
        _message_created(stream, message, Event.Audience.EVERYONE)
        _conversation_updated(stream)
        stream.commit()
    return SendResult(message, duplicate=False)


# --- receipts -------------------------------------------------------------------------------


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's 1e400 or Infinity
        raise MessagingError("invalid", _("Expected a number.")) from None


def _mark(stream: _Stream, *, direction: str, up_to: int, read: bool) -> int:
    now = timezone.now()
    conversation = stream.conversation
    base = Message.objects.filter(conversation=conversation, direction=direction, id__lte=up_to)
    changed = 0
    if read:
        changed = base.exclude(status__in=[Message.Status.READ, Message.Status.FAILED]).update(
            status=Message.Status.READ, read_at=now
        )
        base.filter(delivered_at__isnull=True).update(delivered_at=now)
    else:
        changed = base.filter(status__in=[Message.Status.QUEUED, Message.Status.SENT]).update(
            status=Message.Status.DELIVERED, delivered_at=now
        )
    if changed:
        status = Message.Status.READ if read else Message.Status.DELIVERED
        stream.add(
            events.MESSAGE_STATUS,
            Event.Audience.EVERYONE,
            lambda _id: {
                "conversation_id": conversation.pk,
                "direction": direction,
                "up_to": up_to,
                "status": status,
            },
        )
    return changed


def messages_mark_by_customer(*, business: Business, customer: Customer, up_to: Any, read: bool) -> int:
    """The customer's client received (and, if `read`, showed) business messages up to `up_to`."""
    up_to = _as_int(up_to)
    with transaction.atomic():
        conversation_id = Conversation.objects.filter(contact__customer=customer).values_list("pk", flat=True).first()
        if conversation_id is None:
            return 0
        conversation = _locked_conversation(conversation_id)
        stream = _Stream(business, conversation)
        changed = _mark(stream, direction=Message.Direction.OUTBOUND, up_to=up_to, read=read)
        if changed and read:
            unread = Message.objects.filter(
                conversation=conversation, direction=Message.Direction.OUTBOUND, read_at__isnull=True
            ).count()
            thread = _thread_touch(
                business=business,
                customer_id=customer.pk,
                at=conversation.last_message_at or timezone.now(),
                unread=unread,
            )
            stream.customer_updates.append((customer.pk, thread))
        stream.commit()
    return changed


def messages_mark_by_agent(*, business: Business, user: User, conversation_id: Any, up_to: Any, read: bool) -> int:
    """An agent's inbox received (and, if `read`, showed) customer messages up to `up_to`."""
    up_to = _as_int(up_to)
    _membership(business, user)
    if not read:
        # Every open inbox acks each customer message as delivered, and only the first ack
        # changes anything: the others learn that without queueing for the conversation's lock.
        pk = conversation_pk(conversation_id)
        undelivered = Message.objects.filter(
            conversation_id=pk,
            direction=Message.Direction.INBOUND,
            id__lte=up_to,
            status__in=[Message.Status.QUEUED, Message.Status.SENT],
        )
        found = Conversation.objects.filter(pk=pk).values_list(Exists(undelivered), flat=True).first()
        if found is None:
            raise not_found()
        if not found:
            return 0
    with transaction.atomic():
        conversation = _locked_conversation(conversation_id)
        stream = _Stream(business, conversation)
        changed = _mark(stream, direction=Message.Direction.INBOUND, up_to=up_to, read=read)
        if read:
            unread = Message.objects.filter(
                conversation=conversation, direction=Message.Direction.INBOUND, read_at__isnull=True
            ).count()
            if unread != conversation.unread_count:
                conversation.unread_count = unread
                conversation.save(update_fields=["unread_count", "updated_at"])
                _conversation_updated(stream)
        stream.commit()
    return changed


# --- conversation handling --------------------------------------------------------------------


def conversation_assign(*, business: Business, user: User, conversation_id: Any, assignee_id: Any) -> Conversation:
    """Claim (assignee = oneself), hand over to another member, or unassign (None)."""
    _membership(business, user)
    assignee: User | None = None
    if assignee_id not in (None, ""):
        membership = (
            Membership.objects.select_related("user")
            .filter(business_id=business.pk, user_id=_as_int(assignee_id))
            .first()
        )
        if membership is None:
            raise MessagingError("invalid", _("Only members of this business can be assigned."))
        assignee = membership.user
    with transaction.atomic():
        conversation = _locked_conversation(conversation_id)
        if conversation.assignee_id != (assignee.pk if assignee else None):
            conversation.assignee = assignee
            conversation.save(update_fields=["assignee", "updated_at"])
            _announce_conversation(business, conversation)
    return conversation


def conversation_set_status(*, business: Business, user: User, conversation_id: Any, status: Any) -> Conversation:
    _membership(business, user)
    if status not in Conversation.Status.values:
        raise MessagingError("invalid", _("Unknown conversation status."))
    with transaction.atomic():
        conversation = _locked_conversation(conversation_id)
        if conversation.status != status:
            conversation.status = status
            conversation.save(update_fields=["status", "updated_at"])
            _announce_conversation(business, conversation)
    return conversation


def contact_update(*, business: Business, user: User, contact_id: Any, name: str, notes: str) -> Contact:
    _membership(business, user)
    with transaction.atomic():
        contact = Contact.objects.select_for_update().select_related("customer").filter(pk=_as_int(contact_id)).first()
        if contact is None:
            raise MessagingError("not_found", _("This contact does not exist."))
        contact.name = _without_nul(name).strip()[:100]
        contact.notes = _without_nul(notes).strip()[:4000]
        contact.save(update_fields=["name", "notes", "updated_at"])
        conversation_id = Conversation.objects.filter(contact=contact).values_list("pk", flat=True).first()
        if conversation_id is not None:
            conversation = _locked_conversation(conversation_id)
            _announce_conversation(business, conversation)
    return contact


# --- presence ---------------------------------------------------------------------------------


def presence_enter(*, user: User, channel_name: str) -> None:
    AgentPresence.objects.update_or_create(
        channel_name=channel_name, defaults={"user": user, "seen_at": timezone.now(), "conversation_id": None}
    )


def presence_view(*, channel_name: str, conversation_id: int | None) -> None:
    AgentPresence.objects.filter(channel_name=channel_name).update(
        conversation_id=conversation_id, seen_at=timezone.now()
    )


def presence_heartbeat(*, channel_name: str) -> None:
    AgentPresence.objects.filter(channel_name=channel_name).update(seen_at=timezone.now())
    # Rows of crashed processes would otherwise pile up.
    AgentPresence.objects.filter(seen_at__lt=timezone.now() - timedelta(minutes=10)).delete()


def presence_leave(*, channel_name: str) -> None:
    AgentPresence.objects.filter(channel_name=channel_name).delete()
