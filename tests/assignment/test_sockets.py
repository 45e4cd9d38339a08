"""Assignment over the websockets: the agent's status follows their inbox sockets and their
choice, snooze and takeover frames, the live `queue` frame on a waiting customer's chat, every
ephemeral frame in its declared shape, and one business's ids meaning nothing in another's."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django_tenants.utils import schema_context

from assignment.events import FRAME_SHAPES
from assignment.models import AgentStatus, AssignmentSettings
from messaging import services
from messaging.models import Conversation
from tests.assignment.conftest import Team, make_team
from tests.conftest import World
from tests.messaging.conftest import adb, make_customer, receive_until, session_key, ws_connect
from tests.messaging.test_event_schemas import _check


def check_shape(frame: dict[str, Any]) -> None:
    shape = FRAME_SHAPES[frame["type"]]
    problems = _check(json.loads(json.dumps(frame)), shape, frame["type"])
    assert not problems, problems


def _status(team: Team, user_id: int) -> str | None:
    with schema_context(team.business.schema_name):
        return AgentStatus.objects.filter(user_id=user_id).values_list("status", flat=True).first()


async def _eventually(read: Any, wanted: Any, timeout: float = 5) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await adb(read)()
        if value == wanted or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.1)


async def test_status_follows_the_inbox_sockets_and_the_agents_choice(live_db: World) -> None:
    team = await adb(make_team)(agents=2)
    agent = team.agents[0]
    session = await adb(session_key)(user=agent)
    inbox, connected, _code = await ws_connect("/ws/inbox/", host=team.business.host, session=session)
    assert connected
    frame = await receive_until(inbox, "agent.status")
    check_shape(frame)
    assert (frame["user_id"], frame["status"]) == (agent.pk, "online")
    second, connected, _code = await ws_connect("/ws/inbox/", host=team.business.host, session=session)
    assert connected
    # Closing one of two tabs changes nothing; closing the last makes the agent away.
    await second.disconnect()
    assert await _eventually(lambda: _status(team, agent.pk), "online") == "online"
    await inbox.send_json_to({"type": "agent_status", "status": "offline"})
    frame = await receive_until(inbox, "agent.status")
    assert frame["status"] == "offline"
    await inbox.send_json_to({"type": "agent_status", "status": "online"})
    await receive_until(inbox, "agent.status")
    await inbox.send_json_to({"type": "agent_status", "status": "sleeping"})
    error = await receive_until(inbox, "error")
    assert error["code"] == "invalid"
    await inbox.disconnect()
    assert await _eventually(lambda: _status(team, agent.pk), "away") == "away"


async def test_snooze_and_takeover_frames(live_db: World) -> None:
    team = await adb(make_team)(agents=2)
    holder, other = team.agents
    customer = await adb(make_customer)("Socket Kundin")
    conversation = await adb(team.write)(customer)
    await adb(team.run)(
        services.conversation_assign, user=holder, conversation_id=conversation.pk, assignee_id=holder.pk
    )
    session = await adb(session_key)(user=other)
    inbox, connected, _code = await ws_connect("/ws/inbox/", host=team.business.host, session=session)
    assert connected
    # Replying into the holder's conversation asks first; confirmed, it goes.
    await inbox.send_json_to(
        {"type": "send", "conversation_id": conversation.pk, "body": "Can I help?", "client_msg_id": "t-1"}
    )
    error = await receive_until(inbox, "error")
    assert (error["code"], error["client_msg_id"]) == ("held_by_other", "t-1")
    await inbox.send_json_to(
        {
            "type": "send",
            "conversation_id": conversation.pk,
            "body": "Can I help?",
            "client_msg_id": "t-1",
            "takeover": True,
        }
    )
    accepted = await receive_until(inbox, "message.accepted")
    assert accepted["client_msg_id"] == "t-1"
    await inbox.send_json_to({"type": "snooze", "conversation_id": conversation.pk, "until": None})

    def status() -> str:
        return team.conversation(conversation.pk).status

    assert await _eventually(status, "snoozed") == "snoozed"
    await inbox.send_json_to({"type": "snooze", "conversation_id": conversation.pk, "until": "2001-01-01T00:00:00Z"})
    assert (await receive_until(inbox, "error"))["code"] == "invalid"
    await inbox.disconnect()


async def test_a_waiting_customer_hears_when_the_line_moves(live_db: World) -> None:
    team = await adb(make_team)(agents=1)
    await adb(team.settings)(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=1)
    await adb(team.online)(team.agents[0])
    first_customer, second_customer = await adb(make_customer)("Erste"), await adb(make_customer)("Zweite")
    first = await adb(team.write)(first_customer)
    second = await adb(team.write)(second_customer)
    assert first.assignee_id == team.agents[0].pk and second.assignee_id is None
    session = await adb(session_key)(customer=second_customer)
    chat, connected, _code = await ws_connect("/ws/chat/", host=team.business.host, session=session)
    assert connected
    await asyncio.sleep(0.3)  # joined its conversation's group
    await adb(team.run)(
        services.conversation_set_status, user=team.agents[0], conversation_id=first.pk, status="resolved"
    )
    frame = await receive_until(chat, "queue")
    check_shape(frame)
    assert frame["conversation_id"] == second.pk
    # The resolve announces the line first (still 1st), then the drain assigns it.
    while not frame["assigned"]:
        frame = await receive_until(chat, "queue")
    assert frame["position"] is None and frame["resolved"] is False
    await chat.disconnect()


async def test_the_customer_hears_their_conversation_resolved(live_db: World) -> None:
    """The chat page shows its satisfaction survey when the business resolves the conversation,
    without a reload: the customer's socket gets a `queue` frame saying so."""
    team = await adb(make_team)(agents=1)
    await adb(team.settings)(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=2)
    await adb(team.online)(team.agents[0])
    customer = await adb(make_customer)("Gelöst")
    conversation = await adb(team.write)(customer)
    session = await adb(session_key)(customer=customer)
    chat, connected, _code = await ws_connect("/ws/chat/", host=team.business.host, session=session)
    assert connected
    await asyncio.sleep(0.3)  # joined its conversation's group
    await adb(team.run)(
        services.conversation_set_status, user=team.agents[0], conversation_id=conversation.pk, status="resolved"
    )
    frame = await receive_until(chat, "queue")
    while frame["conversation_id"] != conversation.pk:
        frame = await receive_until(chat, "queue")
    check_shape(frame)
    assert frame["resolved"] is True and frame["position"] is None
    await chat.disconnect()


async def test_another_business_ids_mean_nothing_here(live_db: World) -> None:
    team = await adb(make_team)(agents=1)
    other = await adb(make_team)(agents=1)
    theirs = await adb(other.write)(await adb(make_customer)("Fremd"))
    mine = await adb(team.write)(await adb(make_customer)("Eigen"))

    def exists_here(pk: int) -> bool:
        with schema_context(team.business.schema_name):
            return Conversation.objects.filter(pk=pk, contact__customer=theirs.contact_id).exists()

    session = await adb(session_key)(user=team.agents[0])
    inbox, connected, _code = await ws_connect("/ws/inbox/", host=team.business.host, session=session)
    assert connected
    # Ids are per schema: the other business's conversation id, if it exists here at all, is
    # this business's own conversation; a missing one is not_found.
    await inbox.send_json_to({"type": "snooze", "conversation_id": 10**12, "until": None})
    assert (await receive_until(inbox, "error"))["code"] == "not_found"
    await inbox.send_json_to({"type": "assign", "conversation_id": mine.pk, "assignee_id": other.agents[0].pk})
    assert (await receive_until(inbox, "error"))["code"] == "invalid"
    assert not await adb(exists_here)(theirs.pk)
    await inbox.disconnect()
