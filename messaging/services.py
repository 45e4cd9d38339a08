"""Messaging use cases. Each runs in the business's schema (the caller's request, or a
`schema_context` entered by the consumer's database function), owns its transaction, appends
its events to the business's stream and publishes them only after commit.

Sends are thin entry points of the one send core: a `check_*` function of `messaging.sending`
validates the send, `messaging.group_commit` gathers it with concurrent sends to the same
business and `do_send_messages` writes them; refusals (block, 24-hour window, suspension,
unpaid bills) and billing are decided there, per message.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Customer, User
from assignment import services as assignment_services
from assignment.services import after_customer_message, after_customer_message_needed
from attachments.services import attachment_remove_file
from customers.services import consent_handle_keyword, is_stop_keyword
from messaging import events
from messaging.errors import MessagingError, MessagingErrorCode, not_found
from messaging.group_commit import send_message, send_message_live
from messaging.ids import client_int, conversation_pk
from messaging.models import AgentPresence, Contact, Conversation, Event, Message, Reaction
from messaging.payloads import conversation_payload, message_payload, reactions_payload
from messaging.receipts import Mark, marks_write
from messaging.rich import check_rich
from messaging.sending import (
    MAX_BODY,
    SendRequest,
    SendResult,
    check_agent_send,
    check_business_text_send,
    check_customer_send,
    check_membership,
    check_template_send,
    clean_body,
    without_nul,
)
from tenancy.db import run_in_schema
from tenancy.models import Business

logger = logging.getLogger("parley.messaging")

# Consumers and views import these from here.
__all__ = ["MAX_BODY", "MessagingError", "MessagingErrorCode", "SendResult"]


# --- helpers --------------------------------------------------------------------------------


def _membership(business: Business, user: User) -> None:
    check_membership(business=business, user=user)


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
        # The counter row stays locked from here until commit: after it, one round trip
        # (every event and the conversation's chain pointers together).
        first = events.allocate_event_ids(len(self.pending))
        stored: list[events.StoredEvent] = []
        conversation = self.conversation
        for offset, (type, audience, build) in enumerate(self.pending):
            event_id = first + offset
            data = build(event_id)
            prev_public, prev_event = events.chain_event(conversation, event_id, audience)
            stored.append(
                events.StoredEvent(
                    event_id,
                    type,
                    conversation.pk,
                    audience,
                    events.event_frame(event_id=event_id, type=type, data=data),
                    prev_public,
                    prev_event,
                    conversation.assignee_id,
                )
            )
        events.execute_together(
            [
                (
                    f"UPDATE {Conversation._meta.db_table} SET last_public_event_id = %s, last_event_id = %s "
                    "WHERE id = %s",
                    [conversation.last_public_event_id, conversation.last_event_id, conversation.pk],
                ),
                events.append_events_statement(stored),
            ]
        )
        customer_frames = [
            (cid, events.dumps({"id": stored[-1].id, "type": events.THREAD_UPDATED, **data}))
            for cid, data in self.customer_updates
        ]
        events.publish_on_commit(schema_name=self.business.schema_name, events=stored, customer_updates=customer_frames)


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


# --- sending (thin entry points of the send core: messaging.sending) --------------------------


def message_send_customer(
    *,
    business: Business,
    customer: Customer,
    body: Any,
    client_msg_id: Any = "",
    reply_to: Any = None,
    attachment_id: Any = None,
    choice: Any = None,
) -> SendResult:
    """A customer writes to the business: opens or extends the 24-hour service window. It may
    quote a message, carry an uploaded file, or answer an interactive message (`choice`)."""
    rich = check_rich(reply_to=reply_to, attachment_id=attachment_id, choice=choice)
    request = check_customer_send(customer=customer, body=body, client_msg_id=client_msg_id, rich=rich)
    result = send_message(business=business, request=request)
    # privacy (issue 14): a STOP / STOPP / ABMELDEN reply mutes marketing and queues a confirmation.
    if not result.duplicate:
        consent_handle_keyword(business=business, customer=customer, body=request.body)
        # issue 12: the away message outside business hours; a newly queued conversation is served.
        after_customer_message(
            business=business, conversation=result.message.conversation, sent_at=result.message.created_at
        )
    return result


def _agent_request(
    *,
    business: Business,
    user: User,
    conversation_id: Any,
    body: Any,
    client_msg_id: Any,
    kind: str,
    reply_to: Any,
    attachment_id: Any,
    interactive: Any,
    takeover: bool,
    defer_membership: bool = False,
) -> SendRequest:
    """The checks of an agent's send, for both entry points (request/response and websocket)."""
    rich = check_rich(reply_to=reply_to, attachment_id=attachment_id, interactive=interactive)
    return check_agent_send(
        business=business,
        user=user,
        conversation_id=conversation_id,
        body=body,
        client_msg_id=client_msg_id,
        kind=kind,
        defer_membership=defer_membership,
        rich=rich,
        takeover=takeover,
    )


def message_send_agent(
    *,
    business: Business,
    user: User,
    conversation_id: Any,
    body: Any,
    client_msg_id: Any = "",
    kind: str = Message.Kind.TEXT,
    reply_to: Any = None,
    attachment_id: Any = None,
    interactive: Any = None,
    takeover: bool = False,
) -> SendResult:
    """An agent replies (inside the service window) or leaves an internal note (never sent),
    optionally quoting a message, with a file, or with quick-reply buttons or a list.
    `takeover`: the agent confirmed replying into a conversation another agent holds."""
    request = _agent_request(
        business=business,
        user=user,
        conversation_id=conversation_id,
        body=body,
        client_msg_id=client_msg_id,
        kind=kind,
        reply_to=reply_to,
        attachment_id=attachment_id,
        interactive=interactive,
        takeover=takeover,
    )
    result = send_message(business=business, request=request)
    if request.kind == Message.Kind.NOTE and not result.duplicate:
        _notify_note(business=business, author=user, message=result.message)
    return result


# Apps that act on a committed internal note (collab: @mentions notify the agents named)
# register here from their AppConfig.ready(): messaging knows none of them.
NoteListener = Callable[..., Any]  # (*, business, author, message) -> Any
_note_listeners: list[NoteListener] = []


def on_note_created(listener: NoteListener) -> None:
    if listener not in _note_listeners:
        _note_listeners.append(listener)


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
    interactive: Any = None,
    attachment_id: Any = None,
) -> SendResult:
    """A business-initiated message (an approved template, e.g. a flight change): allowed outside
    the service window, refused for a blocked customer, a suspended business or unpaid bills.
    It may carry buttons or a list (`interactive`) and a file uploaded by the same author."""
    rich = check_rich(interactive=interactive, attachment_id=attachment_id)
    request = check_template_send(
        customer=customer,
        template_name=template_name,
        body=body,
        category=category,
        author_key=author_key,
        author_kind=author_kind,
        author_user=author_user,
        client_msg_id=client_msg_id,
        rich=rich,
    )
    return send_message(business=business, request=request)


# --- sending from a websocket (on the server's event loop) ---------------------------------------
# The same checks and writer as above; the send waits for its group on the event loop instead
# of holding a database thread, and the author's send limit is taken with the group.


async def message_send_customer_live(
    *,
    business: Business,
    customer: Customer,
    body: Any,
    client_msg_id: Any = "",
    reply_to: Any = None,
    attachment_id: Any = None,
    choice: Any = None,
) -> SendResult:
    """`message_send_customer` for the customer's chat socket."""
    rich = check_rich(reply_to=reply_to, attachment_id=attachment_id, choice=choice)
    request = check_customer_send(customer=customer, body=body, client_msg_id=client_msg_id, rich=rich)
    result = await send_message_live(business=business, request=request, limit_key=request.author_key)
    if not result.duplicate and is_stop_keyword(request.body):
        await run_in_schema(
            business.schema_name, consent_handle_keyword, business=business, customer=customer, body=request.body
        )
    # issue 12: the away message and serving a newly queued conversation, on a database thread
    # only when there is something to do (decided from memory and the settings cache), and not
    # waited for: the sender's ack does not wait for the queue (its page hears of it live).
    if result.duplicate:  # a duplicate's message was read back without its conversation
        return result
    conversation, sent_at = result.message.conversation, result.message.created_at
    if after_customer_message_needed(schema_name=business.schema_name, conversation=conversation, sent_at=sent_at):
        task = asyncio.ensure_future(
            run_in_schema(
                business.schema_name,
                after_customer_message,
                business=business,
                conversation=conversation,
                sent_at=sent_at,
            )
        )
        _background.add(task)
        task.add_done_callback(_background_done)
    return result


_background: set[asyncio.Future[None]] = set()


def _background_done(task: asyncio.Future[None]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # The periodic sweep serves the queue again within a minute.
        logger.error("after a customer's message: %r", task.exception())


async def message_send_agent_live(
    *,
    business: Business,
    user: User,
    conversation_id: Any,
    body: Any,
    client_msg_id: Any = "",
    kind: str = Message.Kind.TEXT,
    reply_to: Any = None,
    attachment_id: Any = None,
    interactive: Any = None,
    takeover: bool = False,
) -> SendResult:
    """`message_send_agent` for an agent's inbox socket (the seat is checked by the writer)."""
    request = _agent_request(
        business=business,
        user=user,
        conversation_id=conversation_id,
        body=body,
        client_msg_id=client_msg_id,
        kind=kind,
        reply_to=reply_to,
        attachment_id=attachment_id,
        interactive=interactive,
        takeover=takeover,
        defer_membership=True,
    )
    result = await send_message_live(business=business, request=request, limit_key=request.author_key)
    if request.kind == Message.Kind.NOTE and not result.duplicate and _note_listeners:
        await run_in_schema(business.schema_name, _notify_note, business=business, author=user, message=result.message)
    return result


def _notify_note(*, business: Business, author: User, message: Message) -> None:
    for listener in _note_listeners:
        listener(business=business, author=author, message=message)


def message_send_business_text(
    *,
    business: Business,
    customer: Customer,
    body: Any,
    author_key: str,
    author_kind: str = Message.Author.API,
    author_user: User | None = None,
    client_msg_id: Any = "",
    attachment_id: Any = None,
    interactive: Any = None,
) -> SendResult:
    """Free text from the business to a customer named by number (the API): a service reply,
    only inside the customer's 24-hour window; stored as a text message. It may carry a file
    uploaded with the same key and buttons or a list."""
    rich = check_rich(attachment_id=attachment_id, interactive=interactive)
    request = check_business_text_send(
        customer=customer,
        body=body,
        author_key=author_key,
        author_kind=author_kind,
        author_user=author_user,
        client_msg_id=client_msg_id,
        rich=rich,
    )
    return send_message(business=business, request=request)


# --- receipts -------------------------------------------------------------------------------


def messages_mark_by_customer(*, business: Business, customer: Customer, up_to: Any, read: bool) -> int:
    """The customer's client received (and, if `read`, showed) business messages up to `up_to`."""
    return _one_mark(business, Mark(up_to=client_int(up_to), read=bool(read), customer=customer))


def messages_mark_by_agent(*, business: Business, user: User, conversation_id: Any, up_to: Any, read: bool) -> int:
    """An agent's inbox received (and, if `read`, showed) customer messages up to `up_to`. An
    ack that changes nothing (every other open inbox acking the same message) takes no lock."""
    mark = Mark(up_to=client_int(up_to), read=bool(read), user=user, conversation_id=conversation_pk(conversation_id))
    return _one_mark(business, mark)


def _one_mark(business: Business, mark: Mark) -> int:
    outcome = marks_write(business=business, marks=[mark])[0]
    if isinstance(outcome, MessagingError):
        raise outcome
    return outcome


def messages_mark_many(*, business: Business, marks: list[Mark]) -> list[int | MessagingError]:
    """Acks of many sockets in one transaction (a consumer's batch; see messaging.receipts)."""
    return marks_write(business=business, marks=marks)


# --- conversation handling --------------------------------------------------------------------


def conversation_assign(
    *, business: Business, user: User, conversation_id: Any, assignee_id: Any, note: Any = ""
) -> Conversation:
    """Claim, assign, transfer or unassign: assignment's rules (the queue, capacity, events)."""
    return assignment_services.conversation_assign(
        business=business, user=user, conversation_id=conversation_id, assignee_id=assignee_id, note=note
    )


def conversation_set_status(*, business: Business, user: User, conversation_id: Any, status: Any) -> Conversation:
    """Open, pending or resolved: assignment's lifecycle rules (snooze: assignment.services)."""
    return assignment_services.conversation_set_status(
        business=business, user=user, conversation_id=conversation_id, status=status
    )


def contact_update(*, business: Business, user: User, contact_id: Any, name: str, notes: str) -> Contact:
    _membership(business, user)
    with transaction.atomic():
        contact = (
            Contact.objects.select_for_update().select_related("customer").filter(pk=client_int(contact_id)).first()
        )
        if contact is None:
            raise MessagingError("not_found", _("This contact does not exist."))
        contact.name = without_nul(name).strip()[:100]
        contact.notes = without_nul(notes).strip()[:4000]
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


# --- rich messages: edits, deletes, reactions (issue 13) -------------------------------------

EDIT_WINDOW = timedelta(minutes=15)
MAX_EMOJI = 16


def _actor_key(*, business: Business, user: User | None, customer: Customer | None) -> str:
    if user is not None:
        _membership(business, user)
        return f"user:{user.pk}"
    assert customer is not None
    return f"customer:{customer.pk}"


def _message_not_found() -> MessagingError:
    return MessagingError(MessagingErrorCode.NOT_FOUND, _("This message does not exist."))


def _visible_message(*, message_id: Any, user: User | None, customer: Customer | None) -> Message:
    """The message, locked with its conversation, if the actor may see it: any message of the
    business for a member, the customer's own conversation's (never a note) for a customer."""
    row = Message.objects.filter(pk=client_int(message_id)).values_list("conversation_id", flat=True).first()
    if row is None:
        raise _message_not_found()
    conversation = _locked_conversation(row)
    message = (
        Message.objects.select_for_update(of=("self",))
        .select_related("author_user", "reply_to__author_user")
        .filter(pk=client_int(message_id), conversation=conversation)
        .first()
    )
    if message is None:
        raise _message_not_found()
    if customer is not None and (
        conversation.contact.customer_id != customer.pk or message.direction == Message.Direction.INTERNAL
    ):
        raise _message_not_found()
    message.conversation = conversation
    return message


def _audience(message: Message) -> str:
    return Event.Audience.AGENTS if message.direction == Message.Direction.INTERNAL else Event.Audience.EVERYONE


def _own_recent_message(*, key: str, message: Message, verb: str) -> None:
    if message.author_key != key:
        raise MessagingError(
            MessagingErrorCode.FORBIDDEN, _("Only the sender can %(verb)s a message.") % {"verb": verb}
        )
    if message.deleted_at is not None:
        raise MessagingError(MessagingErrorCode.INVALID, _("This message was deleted."))
    if timezone.now() - message.created_at > EDIT_WINDOW:
        raise MessagingError(
            MessagingErrorCode.TOO_LATE, _("Messages can be changed or deleted for 15 minutes after sending.")
        )


def _message_changed(stream: _Stream, type: str, message: Message) -> None:
    name = stream.conversation.contact.display_name
    payload = message_payload(message, contact_name=name)
    stream.add(type, _audience(message), lambda _id: {"conversation_id": message.conversation_id, "message": payload})


def message_edit(
    *, business: Business, message_id: Any, body: Any, user: User | None = None, customer: Customer | None = None
) -> Message:
    """The sender changes their text within 15 minutes; both sides see it marked edited."""
    key = _actor_key(business=business, user=user, customer=customer)
    with transaction.atomic():
        message = _visible_message(message_id=message_id, user=user, customer=customer)
        _own_recent_message(key=key, message=message, verb=_("edit"))
        if message.kind == Message.Kind.TEMPLATE or message.choice_id:
            raise MessagingError(MessagingErrorCode.INVALID, _("This message cannot be edited."))
        has_file = message.attachments.exists()
        message.body = clean_body(body, optional=has_file)
        message.edited_at = timezone.now()
        message.save(update_fields=["body", "edited_at"])
        stream = _Stream(business, message.conversation)
        _message_changed(stream, events.MESSAGE_EDITED, message)
        stream.commit()
    return message


def message_delete(
    *, business: Business, message_id: Any, user: User | None = None, customer: Customer | None = None
) -> Message:
    """The sender deletes a message within 15 minutes: its text goes, its file leaves storage,
    both sides see "deleted"."""
    key = _actor_key(business=business, user=user, customer=customer)
    with transaction.atomic():
        message = _visible_message(message_id=message_id, user=user, customer=customer)
        _own_recent_message(key=key, message=message, verb=_("delete"))
        for attachment in message.attachments.all():
            attachment_remove_file(attachment=attachment, reason="deleted")
        message.body = ""
        message.deleted_at = timezone.now()
        message.save(update_fields=["body", "deleted_at"])
        stream = _Stream(business, message.conversation)
        _message_changed(stream, events.MESSAGE_DELETED, message)
        stream.commit()
    return message


def clean_emoji(value: Any) -> str:
    """One emoji (a few code points with joiners and skin tones), or "" to remove."""
    if value in (None, ""):
        return ""
    if (
        not isinstance(value, str)
        or len(value) > MAX_EMOJI
        or any(ord(ch) < 0x2000 or unicodedata.category(ch) in ("Zs", "Cc", "Cs") for ch in value)
    ):
        raise MessagingError(MessagingErrorCode.INVALID, _("A reaction is one emoji."))
    return value


def reaction_set(
    *, business: Business, message_id: Any, emoji: Any, user: User | None = None, customer: Customer | None = None
) -> list[Reaction]:
    """Set (or with "" remove) the actor's one reaction to a message; both sides see it live."""
    key = _actor_key(business=business, user=user, customer=customer)
    emoji = clean_emoji(emoji)
    with transaction.atomic():
        message = _visible_message(message_id=message_id, user=user, customer=customer)
        if message.deleted_at is not None:
            raise MessagingError(MessagingErrorCode.INVALID, _("This message was deleted."))
        conversation = message.conversation
        if emoji:
            name = user.get_short_name() if user is not None else conversation.contact.display_name
            Reaction.objects.update_or_create(
                message=message, reactor_key=key, defaults={"emoji": emoji, "reactor_name": name[:150]}
            )
        else:
            Reaction.objects.filter(message=message, reactor_key=key).delete()
        reactions = list(Reaction.objects.filter(message=message).order_by("id"))
        stream = _Stream(business, conversation)
        data = {
            "conversation_id": conversation.pk,
            "message_id": message.pk,
            "by": key,
            "emoji": emoji,
            "reactions": reactions_payload(reactions),
        }
        stream.add(events.REACTION_SET, _audience(message), lambda _id: data)
        stream.commit()
    return reactions
