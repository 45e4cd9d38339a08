"""Reliability check 2: kill -9 the ASGI server while 200 customers send, then restart it.

200 customers each keep a /ws/chat/ socket and send a message every 2 s; an agent follows
/ws/inbox/. The Daphne process is killed with SIGKILL mid-run and started again on the same
port. Clients do what the JS clients do: reconnect, resume from their last event id, and resend
an unanswered message with the same client_msg_id. Passing means what clients had accepted,
what PostgreSQL holds and what the agent received are the same set: zero lost, zero duplicated.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from typing import Any

import pytest
from django_tenants.utils import tenant_context
from websockets.sync.client import ClientConnection

from messaging.models import Message
from reliability.report import long_run, record
from tests.conftest import World, free_port, start_server, stop_server, unique
from tests.reliability.test_isolation_probe import session_key
from tests.reliability.test_redis_outage import open_socket, resume

pytestmark = [pytest.mark.reliability, pytest.mark.reliability_long]
CUSTOMERS = 200
RUN_SECONDS = 14.0
KILL_AT = 5.0
SEND_EVERY = 2.0
SETTLE_SECONDS = 90.0


class Customer:
    def __init__(self, index: int, port: int, host: str, session: str, tag: str) -> None:
        self.index, self.port, self.host, self.session, self.tag = index, port, host, session, tag
        self.sent: list[str] = []
        self.accepted: set[str] = set()
        self.refusals: list[str] = []
        self.reconnects = 0
        self.errors: list[str] = []
        self.pending: str | None = None

    def run(self, stop_sending: threading.Event, give_up: threading.Event) -> None:
        ws: ClientConnection | None = None
        n = 0
        # Page loads are spread over the first seconds; after that, reconnects follow
        # static/parley/realtime.js: 0.5 s, doubling to 10 s, reset once a socket opens.
        backoff = 0.5
        time.sleep((self.index % 40) * 0.05)
        next_send = time.monotonic() + (self.index % 20) * 0.1
        while not give_up.is_set():
            if self.pending is None:
                if stop_sending.is_set():
                    break
                if time.monotonic() < next_send:
                    time.sleep(0.05)
                    continue
                n += 1
                self.pending = f"{self.tag}-{self.index}-{n}"
                self.sent.append(self.pending)
                next_send = time.monotonic() + SEND_EVERY
            try:
                if ws is None:
                    ws = open_socket(self.port, self.host, "/ws/chat/", self.session)
                    resume(ws, 0)
                    backoff = 0.5
                ws.send(
                    json.dumps({"type": "send", "body": f"crash test {self.pending}", "client_msg_id": self.pending})
                )
                while True:
                    frame = json.loads(ws.recv(timeout=15))
                    if frame.get("type") == "message.accepted" and frame.get("client_msg_id") == self.pending:
                        self.accepted.add(self.pending)
                        self.pending = None
                        break
                    if frame.get("type") == "error" and frame.get("client_msg_id") in (self.pending, None):
                        # Refused (e.g. overloaded): retry the same message later, as the client does.
                        self.refusals.append(str(frame.get("code")))
                        time.sleep(float(frame.get("retry_after") or 1.0))
                        break
            except Exception as error:
                self.reconnects += 1
                self.errors.append(repr(error)[:200])
                if ws is not None:
                    with contextlib.suppress(Exception):  # the server is gone
                        ws.close()
                ws = None
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        if ws is not None:
            ws.close()


class AgentFollower:
    def __init__(self, port: int, host: str, session: str, after: int) -> None:
        self.port, self.host, self.session, self.last = port, host, session, after
        self.received: list[str] = []
        self.stop = threading.Event()

    def take(self, frame: dict[str, Any]) -> None:
        if frame.get("id") is not None:
            if frame["id"] <= self.last:
                return
            self.last = frame["id"]
        if frame.get("type") == "message.created":
            self.received.append(frame["message"].get("client_msg_id", ""))

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with open_socket(self.port, self.host, "/ws/inbox/", self.session) as ws:
                    for frame in resume(ws, self.last):
                        self.take(frame)
                    while not self.stop.is_set():
                        try:
                            self.take(json.loads(ws.recv(timeout=0.5)))
                        except TimeoutError:
                            continue
            except Exception:
                time.sleep(0.5)


def test_kill_9_mid_run_loses_and_duplicates_nothing(live_db: World) -> None:
    from tests.messaging.conftest import last_event_id, make_customer

    business = live_db.business_a
    count = int(os.environ.get("PARLEY_CRASH_CUSTOMERS", CUSTOMERS if long_run() else 20))
    tag = unique("crash")
    people = [make_customer(f"Crash {i}") for i in range(count)]
    sessions = [session_key(customer=c) for c in people]
    start_id = last_event_id(business)
    port = free_port()
    env = {"PARLEY_CHANNEL_PREFIX": unique("sec_crash")}
    server = start_server(port, extra_env=env, name="crash-1")
    agent = AgentFollower(port, business.host, session_key(user=live_db.agent_a), start_id)
    customers = [Customer(i, port, business.host, sessions[i], tag) for i in range(count)]
    stop_sending, give_up = threading.Event(), threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop_sending, give_up), daemon=True) for c in customers]
    agent_thread = threading.Thread(target=agent.run, daemon=True)
    agent_thread.start()
    for thread in threads:
        thread.start()
    began = time.monotonic()
    time.sleep(KILL_AT)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    killed_at = time.monotonic() - began
    server = start_server(port, extra_env=env, name="crash-2")
    time.sleep(max(0.0, RUN_SECONDS - (time.monotonic() - began)))
    stop_sending.set()
    deadline = time.monotonic() + SETTLE_SECONDS
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))
    give_up.set()
    time.sleep(3)
    agent.stop.set()
    agent_thread.join(10)
    stop_server(server)

    with tenant_context(business):
        stored = list(
            Message.objects.filter(client_msg_id__startswith=tag + "-").values_list("client_msg_id", flat=True)
        )
    sent = {m for c in customers for m in c.sent}
    accepted = {m for c in customers for m in c.accepted}
    unresolved = sorted(c.pending for c in customers if c.pending)
    stored_set = set(stored)
    received = [m for m in agent.received if m.startswith(tag + "-")]
    lost = sorted(accepted - stored_set)
    duplicated_in_db = len(stored) - len(stored_set)
    duplicated_to_agent = len(received) - len(set(received))
    agent_missing = sorted(stored_set - set(received))
    unacknowledged_but_stored = sorted(stored_set - accepted)
    passed = not (
        lost or duplicated_in_db or duplicated_to_agent or agent_missing or unresolved or unacknowledged_but_stored
    ) and bool(accepted)
    record(
        check="2. Crash and resume",
        tried=f"{count} customers sending every {SEND_EVERY:.0f} s; kill -9 of Daphne at {killed_at:.1f} s, restarted on "
        f"the same port; clients reconnect, resume, resend unanswered messages",
        result=f"{len(sent)} sent, {len(accepted)} accepted, {len(stored_set)} in PostgreSQL, {len(set(received))} "
        f"received by the agent; lost {len(lost)}, duplicated {duplicated_in_db} (DB) / {duplicated_to_agent} (agent), "
        f"agent missed {len(agent_missing)}, unresolved {len(unresolved)}; "
        f"{sum(c.reconnects for c in customers)} reconnects, {sum(len(c.refusals) for c in customers)} refusals retried",
        passed=passed,
    )
    assert accepted, sorted({e for c in customers for e in c.errors})[:5]
    assert not lost, f"accepted but not in PostgreSQL: {lost[:10]}"
    assert not duplicated_in_db
    assert not duplicated_to_agent
    assert not agent_missing, f"in PostgreSQL but never reached the agent: {agent_missing[:10]}"
    assert not unresolved, f"still unanswered after {SETTLE_SECONDS} s: {unresolved[:10]}"
    assert not unacknowledged_but_stored, f"stored but the client never heard: {unacknowledged_but_stored[:10]}"
