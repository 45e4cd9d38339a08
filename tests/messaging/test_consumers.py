"""The websocket protocol: auth, origin, tenant isolation, resume, idempotency, refusals."""

from __future__ import annotations

import inspect
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Customer, Membership, User
from billing.models import UsageRecord
from customers.models import Block
from messaging import consumers, events
from messaging.jobs import prune_events
from messaging.models import Conversation, Event, Message
from messaging.services import message_send_customer
from tenancy import db
from tests.conftest import World
from tests.messaging.conftest import (
    adb,
    answer_to,
    drain,
    durable,
    last_event_id,
    make_customer,
    receive_until,
    resumed,
    session_key,
    ws_connect,
)

pytestmark = pytest.mark.django_db(transaction=False)


def send_as_customer(world: World, customer: Customer, body: str, client_msg_id: str = "") -> Message:
    with tenant_context(world.business_a):
        return message_send_customer(
            business=world.business_a, customer=customer, body=body, client_msg_id=client_msg_id
        ).message


def conversation_of(world: World, customer: Customer) -> Conversation:
    with tenant_context(world.business_a):
        return Conversation.objects.select_related("contact").get(contact__customer=customer)


# --- who may connect ---------------------------------------------------------------------


async def test_inbox_refuses_anonymous_and_strangers(live_db: World) -> None:
    alpha = live_db.business_a.host
    _c, connected, code = await ws_connect("/ws/inbox/", host=alpha)
    assert (connected, code) == (False, 4401)

    stranger = await adb(session_key)(user=live_db.agent_b)
    _c, connected, code = await ws_connect("/ws/inbox/", host=alpha, session=stranger)
    assert (connected, code) == (False, 4403)

    member = await adb(session_key)(user=live_db.agent_a)
    communicator, connected, _code = await ws_connect("/ws/inbox/", host=alpha, session=member)
    assert connected
    await communicator.disconnect()


async def test_chat_needs_a_signed_in_customer(live_db: World) -> None:
    _c, connected, code = await ws_connect("/ws/chat/", host=live_db.business_a.host)
    assert (connected, code) == (False, 4401)
    # An agent's login is not a customer sign-in.
    agent = await adb(session_key)(user=live_db.agent_a)
    _c, connected, code = await ws_connect("/ws/chat/", host=live_db.business_a.host, session=agent)
    assert (connected, code) == (False, 4401)


async def test_origin_is_checked(live_db: World) -> None:
    member = await adb(session_key)(user=live_db.agent_a)
    alpha = live_db.business_a.host
    # A foreign site.
    _c, connected, _code = await ws_connect("/ws/inbox/", host=alpha, origin="evil.example", session=member)
    assert not connected
    # Another business's page on the platform cannot drive this business's socket.
    _c, connected, code = await ws_connect("/ws/inbox/", host=alpha, origin=live_db.business_b.host, session=member)
    assert (connected, code) == (False, 4403)
    # No origin at all (not a browser page of ours).
    _c, connected, code = await ws_connect("/ws/inbox/", host=alpha, origin="", session=member)
    assert not connected


async def test_unknown_host_and_public_host_are_refused(live_db: World) -> None:
    member = await adb(session_key)(user=live_db.agent_a)
    _c, connected, code = await ws_connect("/ws/inbox/", host="nope.parley.localhost", session=member)
    assert (connected, code) == (False, 4404)
    _c, connected, code = await ws_connect("/ws/inbox/", host="parley.localhost", session=member)
    assert (connected, code) == (False, 4404)


# --- live delivery --------------------------------------------------------------------------


async def listed(communicator: Any, conversation_id: int | None = None) -> dict[str, Any]:
    """The next list update (a conversations.updated batch) naming the conversation; its latest state."""
    while True:
        frame = await receive_until(communicator, "conversations.updated")
        assert frame["id"] is None and isinstance(frame["last"], int)
        for event in reversed(frame["events"]):
            assert event["type"] == "conversation.updated"
            if conversation_id is None or event["conversation"]["id"] == conversation_id:
                return event


async def test_customer_message_reaches_agent_live_and_reply_reaches_customer(live_db: World) -> None:
    customer = await adb(make_customer)("Greta")
    start = await adb(last_event_id)(live_db.business_a)
    agent_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    assert ok
    assert await resumed(agent_ws, start) == []
    chat_ws, ok, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=customer)
    )
    assert ok
    assert await resumed(chat_ws, start) == []

    await chat_ws.send_json_to({"type": "send", "body": "Is my flight on time?", "client_msg_id": "c-1"})
    # A fresh send is answered with its own message: one frame, not message.accepted and a copy.
    created = await receive_until(chat_ws, "message.created")
    assert created["message"]["body"] == "Is my flight on time?" and created["message"]["client_msg_id"] == "c-1"
    assert [f for f in await drain(chat_ws) if f["type"].startswith("message.")] == []

    # Every agent's list hears of it (not the message itself: it is not theirs to see yet).
    update = await listed(agent_ws)
    assert update["id"] == created["id"] + 1
    assert update["conversation"]["unread"] == 1 and update["conversation"]["preview"] == "Is my flight on time?"
    conversation_id = update["conversation"]["id"]

    # The agent opens the conversation, sees the customer typing and the next message, replies.
    await agent_ws.send_json_to({"type": "view", "conversation_id": conversation_id})
    viewing = await receive_until(agent_ws, "viewing")
    assert viewing["conversation_id"] == conversation_id and viewing["last"] == update["id"]
    second_tab, ok, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=customer)
    )
    assert ok
    await resumed(second_tab, update["id"])
    await chat_ws.send_json_to({"type": "typing"})
    typing = await receive_until(agent_ws, "typing")
    assert typing["who"] == "customer" and typing["id"] is None
    # The customer's other tab is not told they type (chat.js shows only the business typing).
    assert [f for f in await drain(second_tab) if f["type"] == "typing"] == []
    await agent_ws.send_json_to({"type": "typing", "conversation_id": conversation_id})
    assert (await receive_until(chat_ws, "typing"))["who"] == "agent"
    assert (await receive_until(second_tab, "typing"))["who"] == "agent"
    await second_tab.disconnect()
    await chat_ws.send_json_to({"type": "send", "body": "Hello?", "client_msg_id": "c-2"})
    seen = await receive_until(agent_ws, "message.created")
    assert seen["message"]["body"] == "Hello?" and seen["message"]["client_msg_id"] == "c-2"

    # Reading in the inbox turns the customer's ticks to "read".
    await agent_ws.send_json_to(
        {"type": "ack", "conversation_id": conversation_id, "up_to": seen["message"]["id"], "read": True}
    )
    status = await receive_until(chat_ws, "message.status")
    assert status["direction"] == "in" and status["status"] == "read" and status["up_to"] == seen["message"]["id"]

    await agent_ws.send_json_to(
        {"type": "send", "conversation_id": conversation_id, "body": "Yes, on time.", "client_msg_id": "a-1"}
    )
    reply = await receive_until(chat_ws, "message.created")
    assert reply["message"]["direction"] == "out" and reply["message"]["body"] == "Yes, on time."

    # The customer's page shows the reply: the agent sees it was read.
    await chat_ws.send_json_to({"type": "ack", "up_to": reply["message"]["id"], "read": True})
    status = await receive_until(agent_ws, "message.status")
    while status["direction"] != "out":  # the agent's own read receipt came first
        status = await receive_until(agent_ws, "message.status")
    assert status["direction"] == "out" and status["status"] == "read"

    # A note stays with the agents.
    await agent_ws.send_json_to(
        {"type": "send", "conversation_id": conversation_id, "body": "VIP", "kind": "note", "client_msg_id": "n-1"}
    )
    note = await receive_until(agent_ws, "message.created")
    assert note["message"]["kind"] == "note"
    assert all(f.get("type") != "message.created" for f in await drain(chat_ws))

    # Billing was asked once for the accepted reply, never for the note.
    records = await adb(lambda: UsageRecord.objects.filter(customer_id=customer.pk).count())()
    assert records == 1
    await agent_ws.disconnect()
    await chat_ws.disconnect()


async def test_a_message_goes_to_its_participants_not_to_every_agent(live_db: World) -> None:
    """Issue 9 delivery policy: the viewing agent and the assignee get the message; another
    agent's socket gets only the coalesced list update."""
    customer = await adb(make_customer)()
    first = await adb(send_as_customer)(live_db, customer, "first")
    conversation_id = first.conversation_id
    start = await adb(last_event_id)(live_db.business_a)
    sessions = [await adb(session_key)(user=live_db.agent_a) for _ in range(3)]
    viewer, bystander, other = [
        (await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=s))[0] for s in sessions
    ]
    for ws in (viewer, bystander, other):
        await resumed(ws, start)
    await viewer.send_json_to({"type": "view", "conversation_id": conversation_id})
    await receive_until(viewer, "viewing")
    # Assigned to the owner: the owner's sockets get its messages without opening it.
    owner_ws, _, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.owner_a)
    )
    await resumed(owner_ws, start)
    await viewer.send_json_to({"type": "assign", "conversation_id": conversation_id, "assignee_id": live_db.owner_a.pk})
    await listed(bystander, conversation_id)

    for n in range(5):
        await adb(send_as_customer)(live_db, customer, f"burst {n}")
    bodies = []
    while len(bodies) < 5:
        frame = await receive_until(viewer, "message.created")
        bodies.append(frame["message"]["body"])
    assert bodies == [f"burst {n}" for n in range(5)]
    owner_bodies = []
    while len(owner_bodies) < 5:
        owner_bodies.append((await receive_until(owner_ws, "message.created"))["message"]["body"])
    assert owner_bodies == bodies
    # The bystander: list updates only, coalesced (far fewer frames than events), ending on the
    # latest state.
    frames = await drain(bystander, timeout=0.6)
    assert all(f["type"] != "message.created" for f in frames)
    batches = [f for f in frames if f["type"] == "conversations.updated"]
    assert 1 <= len(batches) < 5
    latest = [e for f in batches for e in f["events"] if e["conversation"]["id"] == conversation_id][-1]
    assert latest["conversation"]["preview"] == "burst 4"
    assert all(f["type"] != "message.created" for f in await drain(other, timeout=0.1))
    for ws in (viewer, bystander, other, owner_ws):
        await ws.disconnect()


async def test_me_socket_hears_about_replies(live_db: World) -> None:
    customer = await adb(make_customer)()
    message = await adb(send_as_customer)(live_db, customer, "Hallo")
    me_ws, ok, _ = await ws_connect(
        "/ws/me/", host="parley.localhost", session=await adb(session_key)(customer=customer)
    )
    assert ok
    agent_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    await agent_ws.send_json_to(
        {"type": "send", "conversation_id": message.conversation_id, "body": "Hallo zurück", "client_msg_id": "x"}
    )
    frame = await receive_until(me_ws, "thread.updated")
    assert frame["business_id"] == live_db.business_a.pk and frame["unread"] == 1
    assert "Hallo" not in str(frame)  # the public list carries no message text
    await me_ws.disconnect()
    await agent_ws.disconnect()


# --- resume -------------------------------------------------------------------------------


async def test_resume_after_disconnect_has_no_gap_and_no_duplicate(live_db: World) -> None:
    """The list resumes by state (the latest state of each conversation changed since the id it
    had); the open conversation resumes from its own events."""
    customer = await adb(make_customer)()
    agent_session = await adb(session_key)(user=live_db.agent_a)
    start = await adb(last_event_id)(live_db.business_a)
    agent_ws, _, _ = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=agent_session)
    await resumed(agent_ws, start)
    await adb(send_as_customer)(live_db, customer, "one")
    frame = await receive_until(agent_ws, "conversations.updated")
    list_last = frame["last"]
    conversation_id = frame["events"][-1]["conversation"]["id"]
    await agent_ws.send_json_to({"type": "view", "conversation_id": conversation_id})
    conv_last = (await receive_until(agent_ws, "viewing"))["last"]
    await agent_ws.disconnect()

    # While the agent is away.
    for body in ("two", "three", "four"):
        await adb(send_as_customer)(live_db, customer, body)

    agent_ws, _, _ = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=agent_session)
    await agent_ws.send_json_to({"type": "resume", "after": list_last})
    state = await receive_until(agent_ws, "conversations.updated")
    mine = [e for e in state["events"] if e["conversation"]["id"] == conversation_id]
    assert len(mine) == 1  # one state per conversation, not one frame per event missed
    assert mine[0]["conversation"]["preview"] == "four" and mine[0]["conversation"]["unread"] == 4
    head = (await receive_until(agent_ws, "resumed"))["last"]
    assert head == state["last"] >= mine[0]["id"]

    # The open conversation: exactly what was missed, in order, nothing repeated.
    await agent_ws.send_json_to({"type": "view", "conversation_id": conversation_id, "after": conv_last})
    replay = []
    while (frame := await agent_ws.receive_json_from(timeout=5))["type"] != "viewing":
        if frame.get("id") is not None:
            replay.append(frame)
    assert [f["message"]["body"] for f in replay if f["type"] == "message.created"] == ["two", "three", "four"]
    ids = [f["id"] for f in replay]
    assert ids == sorted(set(ids)) and ids[0] > conv_last
    assert frame["last"] == ids[-1]
    # Live frames continue right after the replay, once each.
    await adb(send_as_customer)(live_db, customer, "five")
    live = await receive_until(agent_ws, "message.created")
    assert live["message"]["body"] == "five" and live["id"] > ids[-1]
    later = []  # up to the list update that covers it (lists are coalesced: a moment later)
    while not (later and later[-1]["type"] == "conversations.updated" and later[-1]["last"] >= live["id"]):
        later.append(await agent_ws.receive_json_from(timeout=5))
    assert all(f["id"] not in ids + [live["id"]] for f in later if f.get("id"))
    await agent_ws.disconnect()


async def test_customer_resume_sees_only_its_own_conversation(live_db: World) -> None:
    mine, other = await adb(make_customer)(), await adb(make_customer)()
    start = await adb(last_event_id)(live_db.business_a)
    await adb(send_as_customer)(live_db, mine, "mine")
    await adb(send_as_customer)(live_db, other, "someone else's")
    chat_ws, _, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=mine)
    )
    replay = await resumed(chat_ws, start)
    assert [f["type"] for f in replay] == ["message.created"]  # conversation.updated is for agents
    assert replay[0]["message"]["body"] == "mine"
    await chat_ws.disconnect()


async def test_a_lost_live_frame_is_filled_from_the_stream(live_db: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The layer is at-most-once: when a publish is lost, the viewing agent's next frame names a
    previous event it never got, and the consumer reads it from PostgreSQL first; the list sees
    a hole in the ids its batches cover and fills it from the stream."""
    customer = await adb(make_customer)()
    conversation_id = (await adb(send_as_customer)(live_db, customer, "opening")).conversation_id
    start = await adb(last_event_id)(live_db.business_a)
    session = await adb(session_key)(user=live_db.agent_a)
    viewer, _, _ = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=session)
    lister, _, _ = await ws_connect("/ws/inbox/", host=live_db.business_a.host, session=session)
    await resumed(viewer, start)
    await resumed(lister, start)
    await viewer.send_json_to({"type": "view", "conversation_id": conversation_id})
    await receive_until(viewer, "viewing")
    # The send core publishes through publish_numbered_on_commit (its ids are known once the
    # COMMIT's round trip is in): both are silenced, so this message is never published.
    real, real_numbered = events.publish_on_commit, events.publish_numbered_on_commit
    monkeypatch.setattr(events, "publish_on_commit", lambda **kwargs: None)
    monkeypatch.setattr(events, "publish_numbered_on_commit", lambda **kwargs: None)
    await adb(send_as_customer)(live_db, customer, "lost on the wire")
    monkeypatch.setattr(events, "publish_on_commit", real)
    monkeypatch.setattr(events, "publish_numbered_on_commit", real_numbered)
    await adb(send_as_customer)(live_db, customer, "arrives")
    frames = await durable(viewer, 4)
    assert [f["id"] for f in frames] == list(range(start + 1, start + 5))
    assert [f["message"]["body"] for f in frames if f["type"] == "message.created"] == ["lost on the wire", "arrives"]

    batches = []
    while not batches or batches[-1]["last"] < start + 4:
        batches.append(await receive_until(lister, "conversations.updated"))
    assert [b["last"] for b in batches] == sorted(b["last"] for b in batches)
    assert batches[-1]["events"][-1]["conversation"]["preview"] == "arrives"
    await viewer.disconnect()
    await lister.disconnect()


def list_state(event_id: int, conversation_id: int, preview: str) -> events.StoredEvent:
    """A stored conversation.updated as a commit publishes it (the list forwards its text as is)."""
    frame = events.dumps(
        {"id": event_id, "type": "conversation.updated", "conversation": {"id": conversation_id, "preview": preview}}
    )
    return events.StoredEvent(
        id=event_id,
        type=events.CONVERSATION_UPDATED,
        conversation_id=conversation_id,
        audience=Event.Audience.AGENTS,
        frame=frame,
        prev_public_id=0,
    )


async def publish_list_updates(schema_name: str, ids: list[int], states: list[events.StoredEvent]) -> None:
    """A commit of events `ids` (these list states among them) as any server process publishes it."""
    message = events.commit_message(schema_name, states)
    message["ranges"] = [list(r) for r in events.id_ranges(ids)]
    await get_channel_layer().group_send(events.commits_group(schema_name), message)


async def test_every_process_commits_reach_an_agent_as_one_list_stream(
    live_db: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9: with several server processes, each agent socket gets one stream of list batches
    gathered by its own process from every process's commits, not each process's batches; a batch
    whose ids skip a commit still on its way waits for it (here as long as it takes) and then goes
    out complete, at once."""
    monkeypatch.setattr(events, "INBOX_GAP_WAIT_SECONDS", 30.0)
    schema = live_db.business_a.schema_name
    start = await adb(last_event_id)(live_db.business_a)
    agent_ws, _, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    await resumed(agent_ws, start)
    # Two processes' commits in one flush interval: one list frame with both.
    await publish_list_updates(schema, [start + 1, start + 2], [list_state(start + 2, 9001, "from process one")])
    await publish_list_updates(schema, [start + 3, start + 4], [list_state(start + 4, 9002, "from process two")])
    batch = await receive_until(agent_ws, "conversations.updated")
    assert batch["last"] == start + 4
    assert [e["conversation"]["preview"] for e in batch["events"]] == ["from process one", "from process two"]
    # Process two's next commit arrives before process one's earlier one: nothing goes out with
    # ids missing; when the missing commit comes, one complete frame with the latest states.
    await publish_list_updates(
        schema, [start + 7, start + 8], [list_state(start + 8, 9002, "two, later"), list_state(start + 7, 9001, "x")]
    )
    assert await drain(agent_ws, timeout=0.6) == []
    await publish_list_updates(schema, [start + 5, start + 6], [list_state(start + 6, 9001, "one, earlier")])
    batch = await receive_until(agent_ws, "conversations.updated")
    assert batch["last"] == start + 8
    assert sorted((e["conversation"]["id"], e["conversation"]["preview"]) for e in batch["events"]) == [
        (9001, "x"),  # event start + 7 is the conversation's latest, whatever arrived last
        (9002, "two, later"),
    ]
    assert await drain(agent_ws, timeout=0.4) == []
    await agent_ws.disconnect()


# --- sends ----------------------------------------------------------------------------------


async def test_send_is_idempotent_per_client_msg_id(live_db: World) -> None:
    customer = await adb(make_customer)()
    chat_ws, _, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=customer)
    )
    await resumed(chat_ws, await adb(last_event_id)(live_db.business_a))
    for _ in range(3):
        await chat_ws.send_json_to({"type": "send", "body": "only once", "client_msg_id": "retry-1"})
    answers = [await answer_to(chat_ws, "retry-1") for _ in range(3)]
    # The first is answered with its message; its repeats with the same message, as duplicates.
    assert [a["type"] for a in answers] == ["message.created", "message.accepted", "message.accepted"]
    assert [a["duplicate"] for a in answers[1:]] == [True, True]
    assert {answers[0]["message"]["id"], *(a["message_id"] for a in answers[1:])} == {answers[0]["message"]["id"]}

    def counts() -> tuple[int, int]:
        with tenant_context(live_db.business_a):
            conversation = Conversation.objects.get(contact__customer=customer)
            return (
                Message.objects.filter(conversation=conversation).count(),
                Event.objects.filter(conversation_id=conversation.pk, type="message.created").count(),
            )

    assert await adb(counts)() == (1, 1)
    await chat_ws.disconnect()


async def test_reply_outside_the_window_is_refused_with_a_template_hint(live_db: World) -> None:
    customer = await adb(make_customer)()
    message = await adb(send_as_customer)(live_db, customer, "old question")

    def close_window() -> None:
        with tenant_context(live_db.business_a):
            Conversation.objects.filter(pk=message.conversation_id).update(
                window_expires_at=timezone.now() - timedelta(minutes=1)
            )

    await adb(close_window)()
    agent_ws, _, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    await agent_ws.send_json_to(
        {"type": "send", "conversation_id": message.conversation_id, "body": "late answer", "client_msg_id": "w"}
    )
    error = await receive_until(agent_ws, "error")
    assert error["code"] == "window_closed" and "template" in error["message"]
    assert error["client_msg_id"] == "w" and error["id"] is None
    assert await adb(lambda: UsageRecord.objects.filter(customer_id=customer.pk).count())() == 0
    await agent_ws.disconnect()


async def test_reply_to_a_customer_who_blocked_is_refused_and_not_billed(live_db: World) -> None:
    customer = await adb(make_customer)()
    message = await adb(send_as_customer)(live_db, customer, "stop writing me")
    block = await adb(Block.objects.create)(customer=customer, business=live_db.business_a)
    try:
        await _blocked_customer_is_refused(live_db, customer, message)
    finally:
        await adb(block.delete)()  # committed: other suites assume no blocks on the shared businesses


async def _blocked_customer_is_refused(live_db: World, customer: Customer, message: Message) -> None:
    agent_ws, _, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    await agent_ws.send_json_to(
        {"type": "send", "conversation_id": message.conversation_id, "body": "but…", "client_msg_id": "b"}
    )
    error = await receive_until(agent_ws, "error")
    assert error["code"] == "blocked"

    def state() -> tuple[int, int]:
        with tenant_context(live_db.business_a):
            sent = Message.objects.filter(conversation_id=message.conversation_id, direction="out").count()
        return sent, UsageRecord.objects.filter(customer_id=customer.pk).count()

    assert await adb(state)() == (0, 0)
    # The customer who blocked cannot write either, and is told how to undo it.
    chat_ws, _, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=customer)
    )
    await chat_ws.send_json_to({"type": "send", "body": "hm", "client_msg_id": "c"})
    assert (await receive_until(chat_ws, "error"))["code"] == "blocked"
    await agent_ws.disconnect()
    await chat_ws.disconnect()


async def test_bad_frames_get_error_frames_not_crashes(live_db: World) -> None:
    agent_ws, _, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    await agent_ws.send_to(text_data="not json")
    assert (await receive_until(agent_ws, "error"))["code"] == "bad_frame"
    await agent_ws.send_json_to({"type": "launch.rockets"})
    assert (await receive_until(agent_ws, "error"))["code"] == "unknown_type"
    await agent_ws.send_json_to({"type": "send", "conversation_id": "x", "body": "hi"})
    assert (await receive_until(agent_ws, "error"))["code"] == "not_found"
    # Past bigint's range (it reached PostgreSQL as a server_error), and ids that are no whole
    # number (`true` and 1.9 were taken as conversation 1): not found, answered to that send.
    customer = await adb(make_customer)()

    def a_conversation() -> int:
        with tenant_context(live_db.business_a):
            return message_send_customer(
                business=live_db.business_a, customer=customer, body="hi"
            ).message.conversation_id

    near = await adb(a_conversation)() + 0.25  # int() of it names a real conversation
    for n, bad_id in enumerate([10**23, 2**63, 1e20, True, near, f"{near}"]):
        await agent_ws.send_json_to({"type": "send", "conversation_id": bad_id, "body": "hi", "client_msg_id": f"b{n}"})
        error = await receive_until(agent_ws, "error")
        assert (error["code"], error.get("client_msg_id")) == ("not_found", f"b{n}"), bad_id
    await agent_ws.send_json_to({"type": "resume", "after": "yesterday"})
    assert (await receive_until(agent_ws, "error"))["code"] == "invalid"
    await agent_ws.disconnect()


# --- tenant isolation -------------------------------------------------------------------------


async def test_an_agent_of_a_never_sees_or_touches_business_b(live_db: World) -> None:
    customer = await adb(make_customer)()

    def beta_conversation() -> int:
        with tenant_context(live_db.business_b):
            result = message_send_customer(business=live_db.business_b, customer=customer, body="secret beta")
            return result.message.conversation_id

    def alpha_ids() -> set[int]:
        with tenant_context(live_db.business_a):
            return set(Conversation.objects.values_list("id", flat=True))

    start = await adb(last_event_id)(live_db.business_a)
    agent_ws, _, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    await resumed(agent_ws, start)
    beta_id = await adb(beta_conversation)()
    # Nothing of beta's arrives on alpha's inbox, live or replayed.
    frames = await drain(agent_ws, timeout=0.5)
    assert all("secret beta" not in str(f) for f in frames)
    assert all("secret beta" not in str(f) for f in await resumed(agent_ws, 0))

    # Naming beta's conversation id from alpha only ever reaches alpha's own rows.
    unused = max(await adb(alpha_ids)() | {beta_id}) + 1000
    for conversation_id in (unused, beta_id) if beta_id not in await adb(alpha_ids)() else (unused,):
        await agent_ws.send_json_to({"type": "view", "conversation_id": conversation_id})
        assert (await receive_until(agent_ws, "error"))["code"] == "not_found"
        await agent_ws.send_json_to(
            {"type": "send", "conversation_id": conversation_id, "body": "hi", "client_msg_id": "iso"}
        )
        assert (await receive_until(agent_ws, "error"))["code"] == "not_found"
    await agent_ws.disconnect()

    # Connecting to beta's host with alpha's seat is refused.
    _c, connected, code = await ws_connect(
        "/ws/inbox/", host=live_db.business_b.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    assert (connected, code) == (False, 4403)


async def test_group_names_carry_the_schema() -> None:
    assert events.inbox_group("alpha") == "t.alpha.inbox"
    assert events.conversation_group("alpha", 7) == "t.alpha.conv.7"
    with pytest.raises(ValueError):
        events.conversation_group("alpha", "7.beta")  # type: ignore[arg-type]


async def test_claim_assign_resolve_and_one_serialization(live_db: World) -> None:
    customer = await adb(make_customer)()
    message = await adb(send_as_customer)(live_db, customer, "please help")
    conversation_id = message.conversation_id
    agent_ws, _, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    await resumed(agent_ws, await adb(last_event_id)(live_db.business_a))
    await agent_ws.send_json_to({"type": "assign", "conversation_id": conversation_id, "assignee_id": "me"})
    updated = await receive_until(agent_ws, "conversation.updated")
    assert updated["conversation"]["assignee"]["id"] == live_db.agent_a.pk
    # Only members of this business can be assigned.
    await agent_ws.send_json_to(
        {"type": "assign", "conversation_id": conversation_id, "assignee_id": live_db.agent_b.pk}
    )
    assert (await receive_until(agent_ws, "error"))["code"] == "invalid"
    await agent_ws.send_json_to({"type": "status", "conversation_id": conversation_id, "status": "resolved"})
    resolved = await receive_until(agent_ws, "conversation.updated")
    assert resolved["conversation"]["status"] == "resolved"

    # The frame on the wire is byte for byte the text stored for resume: serialized once.
    await adb(send_as_customer)(live_db, customer, "again")
    raw = await agent_ws.receive_from(timeout=5)
    while '"message.created"' not in raw:
        raw = await agent_ws.receive_from(timeout=5)

    def stored(event_id: int) -> str:
        with tenant_context(live_db.business_a):
            return Event.objects.get(pk=event_id).frame

    assert raw == await adb(stored)(json.loads(raw)["id"])
    reopened = await receive_until(agent_ws, "conversation.updated")
    assert reopened["conversation"]["status"] == "open"  # a new customer message reopens it
    await agent_ws.disconnect()


async def test_a_removed_seat_ends_the_inbox_stream(live_db: World) -> None:
    user = await adb(User.objects.create_user)(f"temp-{uuid.uuid4().hex[:8]}@alpha.test", "pw-irrelevant-123")
    membership = await adb(Membership.objects.create)(user=user, business=live_db.business_a, role="agent")
    agent_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=user)
    )
    assert ok
    await agent_ws.send_json_to({"type": "ping"})
    assert (await receive_until(agent_ws, "pong"))["id"] is None
    await adb(membership.delete)()
    await agent_ws.send_json_to({"type": "ping"})
    while True:
        output = await agent_ws.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            assert type(output["code"]) is int and output["code"] == 4403  # an exact int: Daphne takes no other
            break


async def test_a_second_tab_joins_the_conversation_another_tab_started(live_db: World) -> None:
    customer = await adb(make_customer)()
    session = await adb(session_key)(customer=customer)
    start = await adb(last_event_id)(live_db.business_a)
    tabs = []
    for _ in range(2):
        tab, ok, _ = await ws_connect("/ws/chat/", host=live_db.business_a.host, session=session)
        assert ok
        await resumed(tab, start)
        tabs.append(tab)
    await tabs[0].send_json_to({"type": "send", "body": "from tab one", "client_msg_id": "t1"})
    assert (await receive_until(tabs[1], "message.created"))["message"]["body"] == "from tab one"
    conversation_id = (await receive_until(tabs[0], "message.created"))["message"]["conversation_id"]
    agent_ws, _, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    await agent_ws.send_json_to(
        {"type": "send", "conversation_id": conversation_id, "body": "to both tabs", "client_msg_id": "a"}
    )
    for tab in tabs:
        assert (await receive_until(tab, "message.created"))["message"]["body"] == "to both tabs"
        await tab.disconnect()
    await agent_ws.disconnect()


async def test_a_resume_from_before_the_retained_stream_asks_for_a_reload(live_db: World) -> None:
    # Works on beta's stream, whose old events this test may throw away.
    customer = await adb(make_customer)()
    beta = live_db.business_b

    def send(body: str) -> None:
        with tenant_context(beta):
            message_send_customer(business=beta, customer=customer, body=body)

    def age_everything() -> None:
        with tenant_context(beta):
            Event.objects.update(created_at=timezone.now() - timedelta(days=31))

    await adb(send)("old")
    await adb(age_everything)()
    start = await adb(last_event_id)(beta)
    await adb(send)("new")
    assert await adb(prune_events)(schema_name=beta.schema_name) > 0
    assert await adb(last_event_id)(beta) == start + 2  # the counter survives pruning

    agent_ws, _, _ = await ws_connect(
        "/ws/inbox/", host=beta.host, session=await adb(session_key)(user=live_db.agent_b)
    )
    await agent_ws.send_json_to({"type": "resume", "after": start - 1})
    assert (await receive_until(agent_ws, "resync"))["id"] is None
    # A resume point inside the retained stream brings the list up to date normally.
    await agent_ws.send_json_to({"type": "resume", "after": start})
    state = await receive_until(agent_ws, "conversations.updated")
    assert [e["conversation"]["preview"] for e in state["events"]] == ["new"]
    await agent_ws.disconnect()


async def test_floods_are_refused(live_db: World) -> None:
    customer = await adb(make_customer)()
    chat_ws, _, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=customer)
    )
    for n in range(25):
        await chat_ws.send_json_to({"type": "send", "body": f"spam {n}", "client_msg_id": f"s{n}"})
    frames: list[dict[str, Any]] = []
    while len(frames) < 25:
        frame = await chat_ws.receive_json_from(timeout=5)
        if frame["type"] != "queue":  # the place in line (issue 12): ephemeral, beside the answers
            frames.append(frame)
    accepted = [f for f in frames if f["type"] == "message.accepted"]
    refused = [f for f in frames if f["type"] == "error"]
    assert 20 <= len(accepted) < 25
    assert refused and {f["code"] for f in refused} == {"rate_limited"}
    assert refused[0]["client_msg_id"].startswith("s")  # the client can retry exactly that one
    await chat_ws.disconnect()


async def test_a_resume_after_everything_was_pruned_asks_for_a_reload(live_db: World) -> None:
    """A quiet business can have its whole stream pruned; a client that saw less than the
    counter's last id must not be told it is up to date."""
    customer = await adb(make_customer)()
    beta = live_db.business_b

    def send_and_prune_everything() -> None:
        with tenant_context(beta):
            message_send_customer(business=beta, customer=customer, body="gone after 30 days")
            Event.objects.update(created_at=timezone.now() - timedelta(days=31))
        prune_events(schema_name=beta.schema_name)
        with tenant_context(beta):
            assert not Event.objects.exists()

    seen = await adb(last_event_id)(beta)
    await adb(send_and_prune_everything)()
    agent_ws, _, _ = await ws_connect(
        "/ws/inbox/", host=beta.host, session=await adb(session_key)(user=live_db.agent_b)
    )
    await agent_ws.send_json_to({"type": "resume", "after": seen})
    assert (await receive_until(agent_ws, "resync"))["id"] is None
    # Up to date: nothing to replay, no reload.
    assert await resumed(agent_ws, await adb(last_event_id)(beta)) == []
    await agent_ws.disconnect()


def test_consumers_reach_the_database_only_through_db() -> None:
    """Database work runs on the pool's shared threads: a call that did not enter its schema
    would query whatever schema the thread's last user left set. `_db` is the one wrapper, and
    the pool enters the schema itself, inside the thread."""
    source = inspect.getsource(consumers)
    assert "database_sync_to_async" not in source and "sync_to_async" not in source
    assert source.count("run_in_schema(") == 1  # inside _db
    assert "with schema_context(schema_name):" in inspect.getsource(db._run)
