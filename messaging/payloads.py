"""What clients see of messages and conversations: one builder each, shared by the services'
events, the selectors' pages and the views."""

from __future__ import annotations

from typing import Any

from messaging.models import Conversation, Message


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
        "snoozed_until": conversation.snoozed_until,
        "waiting_since": conversation.waiting_since,
        "queued_at": conversation.queued_at,
        "assigned_at": conversation.assigned_at,
    }
