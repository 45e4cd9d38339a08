"""Assignment's live frames. Conversation changes are stored events written through
messaging.announce (`conversation.activity`, `conversation.updated`); the two frames here are
ephemeral (id null, never stored: a lost one is corrected by the next, or by the page's poll):

- `agent.status` to every agent's inbox when an agent's status changes;
- `queue` to a waiting customer's chat page: their place in line and the estimate.

Both go out only after commit."""

from __future__ import annotations

import logging
from typing import Any, Literal, TypedDict

from django.db import transaction
from django_tenants.utils import schema_context

from accounts.models import User
from messaging import events
from tenancy.models import Business

logger = logging.getLogger("parley.assignment")

AGENT_STATUS = "agent.status"
QUEUE = "queue"
# Customers told their new place when the line moves (the rest read it when their page loads or polls).
QUEUE_PUSH_LIMIT = 50


class AgentStatusFrame(TypedDict):
    id: None
    type: Literal["agent.status"]
    user_id: int
    name: str
    status: Literal["online", "away", "offline"]


class QueueFrame(TypedDict):
    id: None
    type: Literal["queue"]
    conversation_id: int
    position: int | None
    estimate_minutes: int | None
    closed: bool
    opens_at: str | None
    time_zone: str  # the business's (IANA name): the opening is shown in it
    assigned: bool
    resolved: bool  # the conversation was just resolved: the page looks for its survey


FRAME_SHAPES: dict[str, type] = {AGENT_STATUS: AgentStatusFrame, QUEUE: QueueFrame}


def agent_status_frame(*, user: User, status: str) -> dict[str, Any]:
    return {"type": AGENT_STATUS, "user_id": user.pk, "name": user.get_short_name(), "status": status}


def queue_frame(*, conversation_id: int, state: dict[str, Any]) -> dict[str, Any]:
    return {"type": QUEUE, "conversation_id": conversation_id, **state}


def publish_agent_status(*, business: Business, user: User, status: str) -> None:
    frame = agent_status_frame(user=user, status=status)
    group = events.inbox_group(business.schema_name)

    def publish() -> None:
        try:
            events.run_from_sync(events.send_signal(group, events.LAYER_INBOX_SIGNAL, frame))
        except Exception:
            logger.exception("agent status of %s not published", business.schema_name)

    transaction.on_commit(publish)


def publish_queue(*, business: Business, assigned: list[int]) -> None:
    """After commit, tell the customers in line (the first QUEUE_PUSH_LIMIT) their place, and
    those in `assigned` (just assigned or resolved) that they left the line."""
    from assignment.selectors import queue_states

    schema_name = business.schema_name

    def publish() -> None:
        try:
            with schema_context(schema_name):
                states = queue_states(limit=QUEUE_PUSH_LIMIT, also=assigned)
            events.run_from_sync(_send(schema_name, states))
        except Exception:
            logger.exception("queue positions of %s not published", schema_name)

    transaction.on_commit(publish)


async def _send(schema_name: str, states: list[tuple[int, dict[str, Any]]]) -> None:
    for conversation_id, state in states:
        await events.send_signal(
            events.conversation_group(schema_name, conversation_id),
            events.LAYER_CONV_SIGNAL,
            queue_frame(conversation_id=conversation_id, state=state),
        )
