"""What clients see of messages and conversations: one builder each, shared by the services'
events, the selectors' pages and the views."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from attachments.models import Attachment
from attachments.selectors import attachment_payload
from messaging.models import Conversation, Message, Reaction

QUOTE_CHARS = 140


def _author_name(message: Message, contact_name: str) -> str:
    if message.author_kind == Message.Author.AGENT and message.author_user is not None:
        return message.author_user.get_short_name()
    if message.author_kind == Message.Author.CUSTOMER:
        return contact_name
    return ""


def reactions_payload(reactions: Iterable[Reaction]) -> list[dict[str, str]]:
    return [{"by": r.reactor_key, "name": r.reactor_name, "emoji": r.emoji} for r in reactions]


def _quote(message: Message, contact_name: str) -> dict[str, Any]:
    """What a reply shows of the message it quotes (the client jumps to it by id)."""
    deleted = message.deleted_at is not None
    cached = getattr(message, "_prefetched_objects_cache", {}).get("attachments")
    kinds = [a.kind for a in cached] if cached is not None else []
    return {
        "id": message.pk,
        "author_kind": message.author_kind,
        "author_name": _author_name(message, contact_name),
        "body": "" if deleted else message.body[:QUOTE_CHARS],
        "attachment_kind": "" if deleted or not kinds else kinds[0],
        "deleted": deleted,
    }


def message_payload(
    message: Message,
    *,
    contact_name: str = "",
    attachments: Iterable[Attachment] | None = None,
    reactions: Iterable[Reaction] | None = None,
) -> dict[str, Any]:
    """`attachments` and `reactions` when the caller has them (the send core: a new message);
    otherwise read from the message (selectors prefetch them)."""
    author_name = _author_name(message, contact_name)
    deleted = message.deleted_at is not None
    files = list(message.attachments.all() if attachments is None else attachments)
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "event_id": message.event_id,
        "direction": message.direction,
        "author_kind": message.author_kind,
        "author_name": author_name,
        # Which agent wrote it (their edit and delete buttons); null for other authors.
        "author_id": message.author_user_id if message.author_kind == Message.Author.AGENT else None,
        "kind": message.kind,
        "body": "" if deleted else message.body,
        "status": message.status,
        "client_msg_id": message.client_msg_id,
        "created_at": message.created_at,
        "reply_to": _quote(message.reply_to, contact_name) if message.reply_to_id and message.reply_to else None,
        "attachments": [] if deleted else [attachment_payload(a) for a in files],
        "reactions": reactions_payload(message.reactions.all() if reactions is None else reactions),
        "interactive": None if deleted else message.interactive,
        "choice_id": message.choice_id,
        "edited_at": message.edited_at,
        "deleted_at": message.deleted_at,
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
        "snoozed_until": conversation.snoozed_until,
        "waiting_since": conversation.waiting_since,
        "queued_at": conversation.queued_at,
        "assigned_at": conversation.assigned_at,
    }
