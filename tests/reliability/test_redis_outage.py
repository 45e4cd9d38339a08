"""Reliability check 3: Redis goes away for 10 s while a customer writes and an agent reads.

Daphne uses a PRIVATE redis-server (its own port; the shared one is never stopped) for the
channel layer and cache. A customer sends a message every 0.2 s over /ws/chat/ (resending an
unanswered one with the same client_msg_id after a reconnect, as the JS client does); an agent
has the conversation open on /ws/inbox/, reconnecting and resuming its view when needed. Redis is stopped
for 10 s mid-run, then started again. Passing means: every send was either accepted (and is in
PostgreSQL) or refused with an error frame; nothing accepted was dropped; nothing was stored
twice; and after Redis returns the agent, resuming, has every stored message with no gap.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest
from django.conf import settings
from django_tenants.utils import tenant_context
from websockets.sync.client import ClientConnection, connect

from config.websocket import reconnect_delay
from messaging.models import Message
from messaging.services import message_send_customer
from reliability.report import record
from tests.conftest import World, free_port, start_server, stop_server, unique
from tests.messaging.conftest import accepted_id
from tests.reliability.private import private_redis
from tests.reliability.test_isolation_probe import session_key

pytestmark = [pytest.mark.reliability, pytest.mark.reliability_long]
RUN_SECONDS = 25
DOWN_AFTER = 5
DOWN_SECONDS = 10


def open_socket(port: int, host: str, path: str, session: str) -> ClientConnection:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return connect(
        f"ws://{host}:{port}{path}",
        sock=sock,
        origin=f"http://{host}:{port}",  # type: ignore[arg-type]
        additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}"},
        open_timeout=10,
    )


def resume(ws: ClientConnection, after: int) -> list[dict[str, Any]]:
    ws.send(json.dumps({"type": "resume", "after": after}))
    frames = []
    while True:
        frame = json.loads(ws.recv(timeout=15))
        if frame["type"] == "resumed":
            return frames
        if frame.get("id") is not None:
            frames.append(frame)


class Agent:
    """An agent with the customer's conversation open (inbox.js `view`): every event of it, live;
    after a reconnect the view resumes from the last event seen."""

    def __init__(self, port: int, host: str, session: str, after: int, conversation_id: int) -> None:
        self.port, self.host, self.session, self.last = port, host, session, after
        self.conversation_id = conversation_id
        self.created: list[str] = []  # client_msg_ids of message.created, in arrival order
        self.reconnects = 0
        self.stop = threading.Event()

    def _take(self, frame: dict[str, Any]) -> None:
        if frame.get("conversation_id") != self.conversation_id or not isinstance(frame.get("id"), int):
            return
        if frame["id"] <= self.last:
            return  # already seen (the page drops it too)
        self.last = frame["id"]
        if frame.get("type") == "message.created":
            self.created.append(frame["message"].get("client_msg_id", ""))

    def _view(self, ws: ClientConnection) -> None:
        ws.send(json.dumps({"type": "view", "conversation_id": self.conversation_id, "after": self.last}))
        while True:
            frame = json.loads(ws.recv(timeout=15))
            self._take(frame)
            if frame.get("type") == "viewing":
                return

    def run(self) -> None:
        attempt = 0
        while not self.stop.is_set():
            try:
                with open_socket(self.port, self.host, "/ws/inbox/", self.session) as ws:
                    self._view(ws)
                    attempt = 0
                    while not self.stop.is_set():
                        try:
                            self._take(json.loads(ws.recv(timeout=0.5)))
                        except TimeoutError:
                            continue
            except Exception:
                self.reconnects += 1
                time.sleep(reconnect_delay(attempt))
                attempt += 1

    def catch_up(self) -> None:
        with open_socket(self.port, self.host, "/ws/inbox/", self.session) as ws:
            self._view(ws)


def test_redis_outage_loses_nothing_and_clients_resume_with_no_gap(live_db: World) -> None:
    from tests.messaging.conftest import last_event_id, make_customer

    business = live_db.business_a
    customer = make_customer(unique("Redis Outage "))
    start = last_event_id(business)
    with tenant_context(business):  # the conversation the agent has open
        conversation_id = message_send_customer(
            business=business, customer=customer, body="hello"
        ).message.conversation_id
    with private_redis() as redis:
        server = start_server(
            free_port(),
            name="redis-outage",
            extra_env={"REDIS_URL": redis.url, "PARLEY_CHANNEL_PREFIX": unique("sec_outage")},
        )
        agent = Agent(server.port, business.host, session_key(user=live_db.agent_a), start, conversation_id)
        agent_thread = threading.Thread(target=agent.run, daemon=True)
        agent_thread.start()
        accepted: dict[str, int] = {}
        refused: dict[str, str] = {}
        unanswered: list[str] = []
        customer_session = session_key(customer=customer)
        began = time.monotonic()
        restarted = False
        stopped = False
        n = 0
        pending: str | None = None
        ws: ClientConnection | None = None
        try:
            while time.monotonic() - began < RUN_SECONDS:
                elapsed = time.monotonic() - began
                if not stopped and elapsed >= DOWN_AFTER:
                    redis.stop()
                    stopped = True
                if stopped and not restarted and elapsed >= DOWN_AFTER + DOWN_SECONDS:
                    redis.start()
                    restarted = True
                try:
                    if ws is None:
                        ws = open_socket(server.port, business.host, "/ws/chat/", customer_session)
                        resume(ws, 0)
                    if pending is None:
                        n += 1
                        pending = f"outage-{n}"
                    ws.send(json.dumps({"type": "send", "body": f"message {pending}", "client_msg_id": pending}))
                    while True:
                        frame = json.loads(ws.recv(timeout=10))
                        message_id = accepted_id(frame, pending)
                        if message_id is not None:
                            accepted[pending] = message_id
                            break
                        if frame.get("type") == "error":
                            refused[pending] = f"{frame.get('code')}: {frame.get('message')}"
                            break
                    pending = None
                except Exception:
                    # Closed or silent: reconnect and resend the same client_msg_id.
                    if pending is not None and pending not in unanswered:
                        unanswered.append(pending)
                    if ws is not None:
                        ws.close()
                    ws = None
                    time.sleep(0.3)
                    continue
                time.sleep(0.2)
            if not restarted:
                redis.start()
        finally:
            if ws is not None:
                ws.close()
            time.sleep(2)
            agent.stop.set()
            agent_thread.join(10)
            agent.catch_up()
            stop_server(server)

    with tenant_context(business):
        stored = list(
            Message.objects.filter(
                client_msg_id__startswith="outage-", author_key=f"customer:{customer.pk}"
            ).values_list("client_msg_id", flat=True)
        )
    stored_set = set(stored)
    dropped = sorted(set(accepted) - stored_set)
    duplicated = len(stored) - len(stored_set)
    refused_but_stored = sorted(set(refused) & stored_set - set(accepted))
    agent_missing = sorted(stored_set - set(agent.created))
    agent_repeats = len([c for c in agent.created if c.startswith("outage-")]) - len(set(agent.created))
    passed = (
        not dropped
        and not refused_but_stored
        and not duplicated
        and not agent_missing
        and agent_repeats <= 0
        and bool(accepted)
    )
    record(
        check="3. Redis outage",
        tried=f"private Redis stopped {DOWN_SECONDS} s of {RUN_SECONDS} s; customer sent {n} messages "
        f"(one every 0.2 s), an agent with the conversation open, resuming its view after reconnects",
        result=f"{len(accepted)} accepted, {len(refused)} refused with an error frame ({len(refused_but_stored)} of them stored anyway), {len(unanswered)} resent "
        f"after reconnect; {len(stored_set)} in PostgreSQL; {len(dropped)} accepted-but-lost, {duplicated} "
        f"duplicated; agent missed {len(agent_missing)} after resume ({agent.reconnects} reconnects)"
        + (f"; refusals: {sorted(set(refused.values()))[:2]}" if refused else ""),
        passed=passed,
    )
    assert accepted, "nothing was accepted at all"
    assert not dropped, f"accepted but not stored: {dropped}"
    assert not duplicated
    assert not refused_but_stored, f"refused with an error frame, yet stored: {refused_but_stored}"
    assert not agent_missing, f"the agent never received: {agent_missing[:10]}"
