"""Conversation changes that are not messages (assignment, lifecycle), written to the stream.

Used by services of other apps (assignment) that change conversations: each changed conversation
gets its `conversation.updated` (the list's state) and, when a person should read what happened in
the thread, a `conversation.activity` before it. Ids are allocated once for the whole change, after
every other lock, and the events are published after commit (messaging.events)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from accounts.models import User
from messaging import events
from messaging.models import Conversation, Event
from messaging.payloads import conversation_payload
from tenancy.models import Business


@dataclass(frozen=True)
class Change:
    """One conversation as the caller left it (row locked, saved) and what a thread should say."""

    conversation: Conversation
    action: str = ""  # an events.ACTIVITY_ACTIONS value; "" for a state change nobody narrates
    actor: User | None = None  # None: Parley itself (auto-assignment, a job)
    note: str = ""


def _person(user: User | None) -> dict[str, Any] | None:
    return {"id": user.pk, "name": user.get_short_name()} if user is not None else None


def activity_data(change: Change) -> dict[str, Any]:
    c = change.conversation
    return {
        "conversation_id": c.pk,
        "action": change.action,
        "actor": _person(change.actor),
        "assignee": _person(c.assignee),
        "status": c.status,
        "snoozed_until": c.snoozed_until,
        "note": change.note,
        "at": timezone.now(),
    }


def conversations_announce(*, business: Business, changes: Sequence[Change]) -> list[events.StoredEvent]:
    """Append the events of `changes` inside the caller's transaction; publish after commit."""
    if not changes:
        return []
    pending: list[tuple[Conversation, str, dict[str, Any]]] = []
    for change in changes:
        if change.action:
            pending.append((change.conversation, events.CONVERSATION_ACTIVITY, activity_data(change)))
        pending.append((change.conversation, events.CONVERSATION_UPDATED, {}))
    first = events.allocate_event_ids(len(pending))
    stored: list[events.StoredEvent] = []
    for offset, (conversation, type, data) in enumerate(pending):
        event_id = first + offset
        if type == events.CONVERSATION_UPDATED:
            data = {"conversation": conversation_payload(conversation)}
        frame = events.event_frame(event_id=event_id, type=type, data=data)
        prev_public, prev_event = events.chain_event(conversation, event_id, Event.Audience.AGENTS)
        stored.append(
            events.StoredEvent(
                event_id,
                type,
                conversation.pk,
                Event.Audience.AGENTS,
                frame,
                prev_public,
                prev_event,
                conversation.assignee_id,
            )
        )
    touched = {c.conversation.pk: c.conversation for c in changes}
    # The stream counter's row is locked until commit: the events and the conversations' chain
    # pointers in one round trip.
    values = ", ".join(["(%s::bigint, %s::bigint)"] * len(touched))
    events.execute_together(
        [
            events.append_events_statement(stored),
            (
                f"UPDATE {Conversation._meta.db_table} AS c SET last_event_id = v.last_event "
                f"FROM (VALUES {values}) AS v(id, last_event) WHERE c.id = v.id",
                [value for c in touched.values() for value in (c.pk, c.last_event_id)],
            ),
        ]
    )
    events.publish_on_commit(schema_name=business.schema_name, events=stored, customer_updates=[])
    return stored
