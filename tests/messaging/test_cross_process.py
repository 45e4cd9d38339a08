"""Two real Daphne processes sharing Redis: a customer on one, an agent on the other, live."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from websockets.sync.client import ClientConnection, connect

from tests.conftest import LiveServer, World, free_port, start_server, stop_server, unique
from tests.messaging.conftest import accepted_id, last_event_id, make_customer, session_key

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="cross-process fan-out needs REDIS_URL")


@pytest.fixture
def two_servers(live_db: World) -> Iterator[tuple[LiveServer, LiveServer]]:
    env = {"REDIS_URL": os.environ["REDIS_URL"], "PARLEY_CHANNEL_PREFIX": unique("xproc")}
    first = start_server(free_port(), extra_env=env, name="xproc-a")
    try:
        second = start_server(free_port(), extra_env=env, name="xproc-b")
    except Exception:
        stop_server(first)
        raise
    yield first, second
    stop_server(first)
    stop_server(second)


def open_socket(server: LiveServer, host: str, path: str, session: str) -> ClientConnection:
    # Python does not resolve *.localhost: connect to loopback, name the business in Host.
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return connect(
        f"ws://{host}:{server.port}{path}",
        sock=sock,
        origin=f"http://{host}:{server.port}",  # type: ignore[arg-type]
        additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}"},
        open_timeout=10,
    )


def until(ws: ClientConnection, wanted: str) -> dict[str, Any]:
    while True:
        frame = json.loads(ws.recv(timeout=10))
        if frame["type"] == wanted:
            return frame


def answer(ws: ClientConnection, client_msg_id: str) -> dict[str, Any]:
    """The socket's answer to its send: `message.accepted`, or its own `message.created`."""
    while True:
        frame = json.loads(ws.recv(timeout=10))
        if accepted_id(frame, client_msg_id) is not None:
            return frame


def test_customer_and_agent_on_different_processes_talk_live(
    live_db: World, two_servers: tuple[LiveServer, LiveServer]
) -> None:
    first, second = two_servers
    customer = make_customer("Cross Process")
    host = live_db.business_a.host
    start = last_event_id(live_db.business_a)

    with (
        open_socket(second, host, "/ws/inbox/", session_key(user=live_db.agent_a)) as agent,
        open_socket(first, host, "/ws/chat/", session_key(customer=customer)) as chat,
    ):
        for ws in (agent, chat):
            ws.send(json.dumps({"type": "resume", "after": start}))
            until(ws, "resumed")

        chat.send(json.dumps({"type": "send", "body": "Hello from process one", "client_msg_id": "x1"}))
        # The agent's list learns of it (a coalesced batch from process one)...
        listed = until(agent, "conversations.updated")["events"][-1]["conversation"]
        assert listed["preview"] == "Hello from process one" and listed["unread"] == 1
        conversation_id = listed["id"]

        # ...and with the conversation open, its messages arrive one by one.
        agent.send(json.dumps({"type": "view", "conversation_id": conversation_id}))
        until(agent, "viewing")
        chat.send(json.dumps({"type": "typing"}))
        assert until(agent, "typing")["who"] == "customer"
        chat.send(json.dumps({"type": "send", "body": "Still there?", "client_msg_id": "x2"}))
        seen = until(agent, "message.created")
        assert seen["message"]["body"] == "Still there?"

        agent.send(
            json.dumps(
                {"type": "send", "conversation_id": conversation_id, "body": "Hi from two", "client_msg_id": "y"}
            )
        )
        reply = until(chat, "message.created")
        while reply["message"]["direction"] != "out":
            reply = until(chat, "message.created")
        assert reply["message"]["body"] == "Hi from two"
        assert reply["id"] > seen["id"]
        last_seen = reply["id"]

    # The customer drops off process one; while away the agent writes; back on process two,
    # the resume replays exactly what was missed.
    with open_socket(second, host, "/ws/inbox/", session_key(user=live_db.agent_a)) as agent:
        agent.send(json.dumps({"type": "resume", "after": last_seen}))
        until(agent, "resumed")
        for n in range(3):
            agent.send(
                json.dumps(
                    {"type": "send", "conversation_id": conversation_id, "body": f"away {n}", "client_msg_id": f"w{n}"}
                )
            )
            until(agent, "message.accepted")
    with open_socket(second, host, "/ws/chat/", session_key(customer=customer)) as chat:
        chat.send(json.dumps({"type": "resume", "after": last_seen}))
        replay = []
        while (frame := json.loads(chat.recv(timeout=10)))["type"] != "resumed":
            if frame["id"] is not None:
                replay.append(frame)
        bodies = [f["message"]["body"] for f in replay if f["type"] == "message.created"]
        assert bodies == ["away 0", "away 1", "away 2"]
        assert [f["id"] for f in replay] == sorted({f["id"] for f in replay})


def test_an_agent_gets_one_list_stream_from_every_process(
    live_db: World, two_servers: tuple[LiveServer, LiveServer]
) -> None:
    """Issue 9: the agent's process gathers the list updates of both processes' commits into one
    stream of batches (each batch naming conversations written on either process), in order,
    nothing lost; before, each process sent the agent its own batches on its own timer."""
    first, second = two_servers
    here, there = make_customer("List Here"), make_customer("List There")
    host = live_db.business_a.host
    start = last_event_id(live_db.business_a)

    with (
        open_socket(second, host, "/ws/inbox/", session_key(user=live_db.agent_a)) as agent,
        open_socket(first, host, "/ws/chat/", session_key(customer=there)) as on_first,
        open_socket(second, host, "/ws/chat/", session_key(customer=here)) as on_second,
    ):
        for ws in (agent, on_first, on_second):
            ws.send(json.dumps({"type": "resume", "after": start}))
            until(ws, "resumed")
        lasts: list[int] = []
        together = False
        for attempt in range(3):  # a pair of sends may straddle a flush now and then
            bodies = {f"first {attempt}", f"second {attempt}"}
            on_first.send(json.dumps({"type": "send", "body": f"first {attempt}", "client_msg_id": f"f{attempt}"}))
            on_second.send(json.dumps({"type": "send", "body": f"second {attempt}", "client_msg_id": f"s{attempt}"}))
            answer(on_first, f"f{attempt}")
            answer(on_second, f"s{attempt}")
            listed: set[str] = set()
            while not bodies <= listed:
                batch = until(agent, "conversations.updated")
                lasts.append(batch["last"])
                previews = {e["conversation"]["preview"] for e in batch["events"]}
                together = together or bodies <= previews
                listed |= previews
            if together:
                break
        assert together, "no list batch carried both processes' commits"
        assert lasts == sorted(set(lasts))
