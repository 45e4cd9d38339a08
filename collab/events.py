"""Collaboration's live frames. Both are ephemeral (`id: null`, not in the business's event
stream): the notification list and the labels are durable in PostgreSQL and re-read on load,
so a frame lost by the at-most-once channel layer costs only immediacy. Published after commit.

- `mention.created` to the mentioned agent's sockets in this business (`t.<schema>.user.<id>`);
- `labels.updated` to every agent's inbox in this business (`t.<schema>.inbox`).
"""

from __future__ import annotations

import logging
from typing import Literal, TypedDict

from django.db import transaction

from messaging import events as messaging_events

logger = logging.getLogger(__name__)

MENTION_CREATED = "mention.created"
LABELS_UPDATED = "labels.updated"


class LabelShape(TypedDict):
    id: int
    name: str
    colour: str


class NotificationShape(TypedDict):
    id: int
    kind: Literal["mention"]
    conversation_id: int
    contact_name: str
    actor_name: str
    excerpt: str
    created_at: str
    read: bool


class MentionCreatedEvent(TypedDict):
    id: None
    type: Literal["mention.created"]
    notification: NotificationShape
    unread: int


class LabelsUpdatedEvent(TypedDict):
    id: None
    type: Literal["labels.updated"]
    conversation_id: int
    labels: list[LabelShape]


EVENT_SHAPES: dict[str, type] = {MENTION_CREATED: MentionCreatedEvent, LABELS_UPDATED: LabelsUpdatedEvent}


def _signal_on_commit(group: str, frame: dict[str, object]) -> None:
    def publish() -> None:
        try:
            messaging_events.run_from_sync(
                messaging_events.send_signal(group, messaging_events.LAYER_INBOX_SIGNAL, frame)
            )
        except Exception:  # at-most-once: the list is re-read from PostgreSQL
            logger.exception("publishing %s to %s failed", frame.get("type"), group)

    transaction.on_commit(publish)


def publish_mention(*, schema_name: str, user_id: int, notification: NotificationShape, unread: int) -> None:
    _signal_on_commit(
        messaging_events.user_inbox_group(schema_name, user_id),
        {"type": MENTION_CREATED, "notification": dict(notification), "unread": unread},
    )


def publish_labels(*, schema_name: str, conversation_id: int, labels: list[LabelShape]) -> None:
    _signal_on_commit(
        messaging_events.inbox_group(schema_name),
        {"type": LABELS_UPDATED, "conversation_id": conversation_id, "labels": [dict(label) for label in labels]},
    )
