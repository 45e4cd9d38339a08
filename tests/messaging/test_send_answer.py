"""A send is answered with its own `message.created` when that event is next in the socket's
stream (a customer's conversation; the conversation an agent has open): one frame instead of
`message.accepted` followed by the same event through the relay (issue 9: a third of the frames
a chatting customer cost the server and the page). When an earlier event is still on its way,
`message.accepted` answers and the events follow in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from messaging.consumers import ChatConsumer
from messaging.events import StoredEvent
from messaging.models import Event, Message
from messaging.sending import SendResult
from tests.conftest import World
from tests.messaging.conftest import (
    adb,
    answer_to,
    drain,
    last_event_id,
    make_customer,
    receive_until,
    resumed,
    session_key,
    ws_connect,
)

pytestmark = pytest.mark.django_db(transaction=False)


async def _customer_in_conversation(live_db: World, name: str) -> tuple[Any, Any, int]:
    """A customer's socket with a conversation already made (its first send answered)."""
    customer = await adb(make_customer)(name)
    chat_ws, ok, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=customer)
    )
    assert ok
    await resumed(chat_ws, await adb(last_event_id)(live_db.business_a))
    await chat_ws.send_json_to({"type": "send", "body": "first", "client_msg_id": "first"})
    first = await answer_to(chat_ws, "first")
    return customer, chat_ws, first["message"]["conversation_id"]


async def test_a_send_is_answered_by_its_own_message_once_and_other_tabs_get_it(live_db: World) -> None:
    customer, chat_ws, _conversation_id = await _customer_in_conversation(live_db, "One Frame")
    other_tab, ok, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=customer)
    )
    assert ok
    await resumed(other_tab, await adb(last_event_id)(live_db.business_a))
    await drain(chat_ws)

    await chat_ws.send_json_to({"type": "send", "body": "Where is my parcel?", "client_msg_id": "c-9"})
    answer = await answer_to(chat_ws, "c-9")
    assert answer["type"] == "message.created" and isinstance(answer["id"], int)
    assert answer["message"]["body"] == "Where is my parcel?" and answer["message"]["status"] == "sent"
    # Nothing more about it: no message.accepted, no second copy through the relay.
    assert [f for f in await drain(chat_ws, timeout=0.5) if f["type"].startswith("message.")] == []
    # The customer's other tab gets the message as before.
    copy = await receive_until(other_tab, "message.created")
    assert copy["id"] == answer["id"] and copy["message"]["client_msg_id"] == "c-9"

    # A repeat of the same client_msg_id: message.accepted, duplicate, the same message.
    await chat_ws.send_json_to({"type": "send", "body": "Where is my parcel?", "client_msg_id": "c-9"})
    again = await answer_to(chat_ws, "c-9")
    assert again["type"] == "message.accepted" and again["duplicate"] is True
    assert again["message_id"] == answer["message"]["id"] and again["event_id"] == answer["id"]
    await chat_ws.disconnect()
    await other_tab.disconnect()


async def test_with_an_earlier_event_on_its_way_the_send_gets_accepted_and_events_keep_their_order(
    live_db: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's reply is committed but held on its way to the customer's socket when the
    customer's next send commits: answering with the send's message would put it before the
    reply (and the socket would then drop the reply as already covered). So `message.accepted`
    answers, and both events follow in the order written."""
    _customer, chat_ws, conversation_id = await _customer_in_conversation(live_db, "Held Reply")
    agent_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    assert ok
    await resumed(agent_ws, await adb(last_event_id)(live_db.business_a))
    await drain(chat_ws)

    gate = asyncio.Event()
    original = ChatConsumer.conv_frame

    async def held(self: ChatConsumer, message: dict[str, Any]) -> None:
        await gate.wait()
        await original(self, message)

    monkeypatch.setattr(ChatConsumer, "conv_frame", held)
    await agent_ws.send_json_to(
        {"type": "send", "conversation_id": conversation_id, "body": "On its way", "client_msg_id": "a-1"}
    )
    # As the conversation's new assignee the agent also gets the event, racing the answer.
    reply = await receive_until(agent_ws, "message.accepted")
    assert reply["client_msg_id"] == "a-1"

    await chat_ws.send_json_to({"type": "send", "body": "Thanks!", "client_msg_id": "c-2"})
    answer = await answer_to(chat_ws, "c-2")
    assert answer["type"] == "message.accepted" and answer["duplicate"] is False
    gate.set()
    created = [await receive_until(chat_ws, "message.created") for _ in range(2)]
    assert [f["message"]["client_msg_id"] for f in created] == ["a-1", "c-2"]
    assert created[1]["id"] == answer["event_id"] and created[0]["id"] < created[1]["id"]
    await chat_ws.disconnect()
    await agent_ws.disconnect()


class _Recording(ChatConsumer):
    """The consumer's answer rule alone: frames it would send are recorded."""

    def __init__(self, last: int | None) -> None:
        super().__init__()
        self.last = last
        self.delivery = asyncio.Lock()  # as connect() makes it
        self.sent: list[str] = []

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        assert text_data is not None
        self.sent.append(text_data)


def _result(event_id: int, prev_public_id: int, *, duplicate: bool = False) -> SendResult:
    created = StoredEvent(
        id=event_id,
        type="message.created",
        conversation_id=1,
        audience=Event.Audience.EVERYONE,
        frame=f'{{"id":{event_id},"type":"message.created"}}',
        prev_public_id=prev_public_id,
    )
    return SendResult(Message(pk=7, event_id=event_id), duplicate=duplicate, created=None if duplicate else created)


async def test_the_answer_rule() -> None:
    # Next in the stream: answered with the event, which moves the socket's position.
    consumer = _Recording(last=10)
    assert await consumer.answered_by_event(_result(12, prev_public_id=10)) is True
    assert consumer.sent == ['{"id":12,"type":"message.created"}'] and consumer.last == 12
    # Already delivered (the relay came first): answered, nothing sent again.
    assert await consumer.answered_by_event(_result(12, prev_public_id=10)) is True
    assert len(consumer.sent) == 1
    # An earlier customer-visible event (14) not here yet: not answered by the event.
    assert await consumer.answered_by_event(_result(15, prev_public_id=14)) is False
    assert len(consumer.sent) == 1 and consumer.last == 12
    # A duplicate, or a socket not resumed yet: message.accepted.
    assert await consumer.answered_by_event(_result(13, prev_public_id=12, duplicate=True)) is False
    assert await _Recording(last=None).answered_by_event(_result(13, prev_public_id=12)) is False


async def test_an_agents_reply_into_the_open_conversation_is_answered_by_its_own_message(live_db: World) -> None:
    _customer, chat_ws, conversation_id = await _customer_in_conversation(live_db, "Agent Answer")
    agent_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    assert ok
    await resumed(agent_ws, await adb(last_event_id)(live_db.business_a))

    # Not viewing the conversation: message.accepted (the agent follows no stream of it). The
    # reply makes the agent its assignee, so the event also reaches this socket through the
    # assignee's group — before or after the answer, as the relay and the answer race.
    await agent_ws.send_json_to(
        {"type": "send", "conversation_id": conversation_id, "body": "From the list", "client_msg_id": "a-1"}
    )
    first = await receive_until(agent_ws, "message.accepted")
    assert first["client_msg_id"] == "a-1" and first["duplicate"] is False

    await agent_ws.send_json_to({"type": "view", "conversation_id": conversation_id})
    await receive_until(agent_ws, "viewing")
    await drain(agent_ws)
    await agent_ws.send_json_to(
        {"type": "send", "conversation_id": conversation_id, "body": "Looking into it", "client_msg_id": "a-2"}
    )
    answer = await answer_to(agent_ws, "a-2")
    assert answer["type"] == "message.created" and answer["message"]["body"] == "Looking into it"
    assert [f for f in await drain(agent_ws, timeout=0.5) if f["type"] in ("message.created", "message.accepted")] == []
    # The customer gets the reply as before.
    reply = await receive_until(chat_ws, "message.created")
    while reply["message"]["client_msg_id"] != "a-2":
        reply = await receive_until(chat_ws, "message.created")
    assert reply["id"] == answer["id"]
    await agent_ws.disconnect()
    await chat_ws.disconnect()
