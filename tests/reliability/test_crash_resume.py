"""Reliability check 2: kill -9 the ASGI server while 200 customers send, then restart it.

200 customers each keep a /ws/chat/ socket and send a message every 2 s; an agent follows
/ws/inbox/ (its list of conversations) and a few agents each have one conversation open (every
event of it). The Daphne process is killed with SIGKILL mid-run and started again on the same
port. Clients do what the JS clients do: reconnect, resume from their last event id, and resend
an unanswered message with the same client_msg_id. Passing means what clients had accepted,
what PostgreSQL holds and what the agents received agree: zero lost, zero duplicated; the list shows
every conversation's last message and all its messages unread; each open conversation got
every message once, in order. Reconnects use realtime.js's rule (backoff with full jitter);
the row reports how long customers took to be back after the kill.
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

from config.websocket import reconnect_delay, send_retry_delay
from messaging.models import Message
from reliability.report import long_run, record
from tests.conftest import World, free_port, start_server, stop_server, unique
from tests.messaging.conftest import accepted_id
from tests.reliability.test_isolation_probe import session_key
from tests.reliability.test_redis_outage import open_socket, resume

pytestmark = [pytest.mark.reliability, pytest.mark.reliability_long]
CUSTOMERS = 200
RUN_SECONDS = 14.0
KILL_AT = 5.0
SEND_AFTER_RESTART = 8.0  # customers go on sending this long after the restarted server listens
SEND_EVERY = 2.0
SETTLE_SECONDS = 90.0
VIEW_AT = 3.0  # agents open conversations once the first messages made them
VIEWERS = 5


class Customer:
    def __init__(self, index: int, port: int, host: str, session: str, tag: str) -> None:
        self.index, self.port, self.host, self.session, self.tag = index, port, host, session, tag
        self.sent: list[str] = []
        self.sent_at: list[float] = []  # when each of `sent` was first sent
        self.accepted: set[str] = set()
        self.refusals: list[str] = []
        self.reconnects = 0
        self.errors: list[str] = []
        self.pending: str | None = None
        self.handshakes: list[tuple[float, float]] = []  # (started, seconds to open and resume)
        self.last_accepted_at = 0.0

    def run(self, stop_sending: threading.Event, give_up: threading.Event) -> None:
        ws: ClientConnection | None = None
        n = 0
        refused = 0  # refusals of the pending message
        # Page loads are spread over the first seconds; after that, reconnects follow
        # static/parley/realtime.js: exponential backoff with full jitter, reset once a socket opens.
        attempt = 0
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
                refused = 0
                self.sent.append(self.pending)
                self.sent_at.append(time.monotonic())
                next_send = time.monotonic() + SEND_EVERY
            try:
                if ws is None:
                    started = time.monotonic()
                    ws = open_socket(self.port, self.host, "/ws/chat/", self.session)
                    resume(ws, 0)
                    self.handshakes.append((started, time.monotonic() - started))
                    attempt = 0
                ws.send(
                    json.dumps({"type": "send", "body": f"crash test {self.pending}", "client_msg_id": self.pending})
                )
                while True:
                    frame = json.loads(ws.recv(timeout=15))
                    if accepted_id(frame, self.pending) is not None:
                        self.accepted.add(self.pending)
                        self.last_accepted_at = time.monotonic()
                        self.pending = None
                        break
                    if frame.get("type") == "error" and frame.get("client_msg_id") in (self.pending, None):
                        # Refused (e.g. overloaded): retry the same message later, as the client does.
                        self.refusals.append(str(frame.get("code")))
                        refused += 1
                        retry_after = frame.get("retry_after")
                        time.sleep(send_retry_delay(float(retry_after) if retry_after else None, refused))
                        break
            except Exception as error:
                self.reconnects += 1
                self.errors.append(repr(error)[:200])
                if ws is not None:
                    with contextlib.suppress(Exception):  # the server is gone
                        ws.close()
                ws = None
                time.sleep(reconnect_delay(attempt))
                attempt += 1
        if ws is not None:
            ws.close()


class AgentList:
    """An agent's inbox list, kept as inbox.js keeps it: resumed by state (the `last` of `resumed`
    and of list batches), then live `conversations.updated` batches; per conversation the state
    with the highest event id wins. Reconnects like the page."""

    def __init__(self, port: int, host: str, session: str, after: int) -> None:
        self.port, self.host, self.session, self.last = port, host, session, after
        self.states: dict[int, tuple[int, dict[str, Any]]] = {}  # conversation -> (event id, conversation)
        self.reconnects = 0
        self.stop = threading.Event()

    def take(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "conversations.updated":
            for event in frame["events"]:
                conversation = event["conversation"]
                if event["id"] > self.states.get(conversation["id"], (0, {}))[0]:
                    self.states[conversation["id"]] = (event["id"], conversation)
        if frame.get("type") in ("conversations.updated", "resumed"):
            self.last = max(self.last, int(frame["last"]))

    def run(self) -> None:
        attempt = 0
        while not self.stop.is_set():
            try:
                with open_socket(self.port, self.host, "/ws/inbox/", self.session) as ws:
                    ws.send(json.dumps({"type": "resume", "after": self.last}))
                    attempt = 0
                    while not self.stop.is_set():
                        try:
                            self.take(json.loads(ws.recv(timeout=0.5)))
                        except TimeoutError:
                            continue
            except Exception:
                self.reconnects += 1
                time.sleep(reconnect_delay(attempt))
                attempt += 1


class ConversationViewer:
    """An agent with one conversation open (inbox.js `view`): every event of it, live and in
    order; after a reconnect the view resumes from the last event seen."""

    def __init__(self, port: int, host: str, session: str, conversation_id: int) -> None:
        self.port, self.host, self.session, self.conversation_id = port, host, session, conversation_id
        self.last = 0
        self.created: list[str] = []  # client_msg_ids of message.created, as the page shows them
        self.reloads = 0
        self.stop = threading.Event()

    def take(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "viewing" and frame.get("reload"):
            self.reloads += 1  # the page would re-read the thread: nothing to verify live then
        if frame.get("conversation_id") != self.conversation_id or not isinstance(frame.get("id"), int):
            return
        if frame["id"] <= self.last:
            return  # already seen (the page drops it too)
        self.last = frame["id"]
        if frame.get("type") == "message.created":
            self.created.append(frame["message"].get("client_msg_id", ""))

    def run(self) -> None:
        attempt = 0
        while not self.stop.is_set():
            try:
                with open_socket(self.port, self.host, "/ws/inbox/", self.session) as ws:
                    ws.send(json.dumps({"type": "view", "conversation_id": self.conversation_id, "after": self.last}))
                    attempt = 0
                    while not self.stop.is_set():
                        try:
                            self.take(json.loads(ws.recv(timeout=0.5)))
                        except TimeoutError:
                            continue
            except Exception:
                time.sleep(reconnect_delay(attempt))
                attempt += 1


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def test_kill_9_mid_run_loses_and_duplicates_nothing(live_db: World) -> None:
    from messaging.models import Conversation
    from tests.messaging.conftest import last_event_id, make_customer

    business = live_db.business_a
    count = int(os.environ.get("PARLEY_CRASH_CUSTOMERS", CUSTOMERS if long_run() else 20))
    tag = unique("crash")
    people = [make_customer(f"Crash {i}") for i in range(count)]
    sessions = [session_key(customer=c) for c in people]
    agent_session = session_key(user=live_db.agent_a)
    start_id = last_event_id(business)
    port = free_port()
    env = {"PARLEY_CHANNEL_PREFIX": unique("sec_crash")}
    server = start_server(port, extra_env=env, name="crash-1")
    agent = AgentList(port, business.host, agent_session, start_id)
    customers = [Customer(i, port, business.host, sessions[i], tag) for i in range(count)]
    stop_sending, give_up = threading.Event(), threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop_sending, give_up), daemon=True) for c in customers]
    agent_thread = threading.Thread(target=agent.run, daemon=True)
    agent_thread.start()
    for thread in threads:
        thread.start()
    began = time.monotonic()
    # A few agents with a conversation open each, following every event of it: once the first
    # messages made the conversations (on a loaded machine that can take longer than VIEW_AT).
    time.sleep(VIEW_AT)
    opened: list[int] = []
    waited_until = time.monotonic() + 30
    while len(opened) < VIEWERS and time.monotonic() < waited_until:
        with tenant_context(business):
            opened = list(
                Conversation.objects.filter(contact__customer__in=people[:VIEWERS]).values_list("pk", flat=True)
            )
        if len(opened) < VIEWERS:
            time.sleep(0.5)
    viewers = [ConversationViewer(port, business.host, agent_session, pk) for pk in opened]
    viewer_threads = [threading.Thread(target=v.run, daemon=True) for v in viewers]
    for thread in viewer_threads:
        thread.start()
    time.sleep(max(1.0, KILL_AT - (time.monotonic() - began)))
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    killed = time.monotonic()
    killed_at = killed - began
    server = start_server(port, extra_env=env, name="crash-2")
    restarted = time.monotonic()
    restarted_in = restarted - killed
    # Customers go on sending after the restart (new messages, not only the resent ones).
    time.sleep(max(SEND_AFTER_RESTART, RUN_SECONDS - (time.monotonic() - began)))
    sending_after = time.monotonic() - restarted
    stop_sending.set()
    deadline = time.monotonic() + SETTLE_SECONDS
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))
    give_up.set()
    time.sleep(3)
    for stop in (agent.stop, *(viewer.stop for viewer in viewers)):
        stop.set()
    for thread in (agent_thread, *viewer_threads):
        thread.join(10)
    stop_server(server)

    with tenant_context(business):
        rows = list(
            Message.objects.filter(client_msg_id__startswith=tag + "-")
            .order_by("id")
            .values_list("client_msg_id", "conversation_id", "body")
        )
    stored = [client_msg_id for client_msg_id, _c, _b in rows]
    by_conversation: dict[int, list[tuple[str, str]]] = {}
    for client_msg_id, conversation_id, body in rows:
        by_conversation.setdefault(conversation_id, []).append((client_msg_id, body))
    sent = {m for c in customers for m in c.sent}
    sent_after_restart = sum(1 for c in customers for at in c.sent_at if at > restarted)
    accepted = {m for c in customers for m in c.accepted}
    unresolved = sorted(c.pending for c in customers if c.pending)
    stored_set = set(stored)
    lost = sorted(accepted - stored_set)
    duplicated_in_db = len(stored) - len(stored_set)
    unacknowledged_but_stored = sorted(stored_set - accepted)
    # The agent's list: every conversation shows its last message and counts all of them unread.
    list_wrong = sorted(
        conversation_id
        for conversation_id, messages in by_conversation.items()
        if conversation_id not in agent.states
        or agent.states[conversation_id][1]["unread"] != len(messages)
        or agent.states[conversation_id][1]["preview"]
        != messages[-1][1][: len(agent.states[conversation_id][1]["preview"])]
        or not agent.states[conversation_id][1]["preview"]
    )
    # The open conversations: every message exactly once, in the order stored.
    viewed_missing = viewed_duplicated = viewed_out_of_order = 0
    for viewer in viewers:
        expected = [m for m, _b in by_conversation.get(viewer.conversation_id, [])]
        got = [m for m in viewer.created if m.startswith(tag + "-")]
        viewed_missing += len(set(expected) - set(got))
        viewed_duplicated += len(got) - len(set(got))
        viewed_out_of_order += int(got != expected and set(got) == set(expected) and len(got) == len(expected))
    viewed_messages = sum(len(by_conversation.get(v.conversation_id, [])) for v in viewers)
    reloads = sum(v.reloads for v in viewers)
    after_restart = [seconds for c in customers for started, seconds in c.handshakes if started > killed]
    back_at = [
        min(started + seconds for started, seconds in c.handshakes if started > killed) - killed
        for c in customers
        if any(started > killed for started, _s in c.handshakes)
    ]
    passed = (
        not (lost or duplicated_in_db or list_wrong or unresolved or unacknowledged_but_stored)
        and not (viewed_missing or viewed_duplicated or viewed_out_of_order or reloads)
        and bool(accepted)
        and len(viewers) > 0
        and sent_after_restart > 0
    )
    record(
        check="2. Crash and resume",
        tried=f"{count} customers sending every {SEND_EVERY:.0f} s, an agent following the inbox list and "
        f"{len(viewers)} agents each with a conversation open; kill -9 of Daphne at {killed_at:.1f} s, restarted on "
        f"the same port ({restarted_in:.1f} s), sending went on {sending_after:.0f} s after it; clients reconnect "
        "(backoff with full jitter), resume, resend unanswered messages",
        result=f"{len(sent)} sent ({sent_after_restart} after the restart), {len(accepted)} accepted, {len(stored_set)} in PostgreSQL; lost {len(lost)}, "
        f"duplicated {duplicated_in_db}, unresolved {len(unresolved)}; agent's list wrong for {len(list_wrong)} of "
        f"{len(by_conversation)} conversations; open conversations: {viewed_messages} messages, missed {viewed_missing}, "
        f"duplicated {viewed_duplicated}; {len(back_at)} customers back {percentile(back_at, 0.5):.1f} s (median) / "
        f"{max(back_at, default=0):.1f} s (last) after the kill; handshake+resume after restart p50 "
        f"{percentile(after_restart, 0.5) * 1000:.0f} ms, p95 {percentile(after_restart, 0.95) * 1000:.0f} ms; "
        f"{sum(c.reconnects for c in customers)} failed attempts, {sum(len(c.refusals) for c in customers)} refusals retried",
        passed=passed,
    )
    assert accepted, sorted({e for c in customers for e in c.errors})[:5]
    assert viewers, "no conversation existed to open"
    assert sent_after_restart, "nothing was sent after the restart"
    assert not lost, f"accepted but not in PostgreSQL: {lost[:10]}"
    assert not duplicated_in_db
    assert not unresolved, f"still unanswered after {SETTLE_SECONDS} s: {unresolved[:10]}"
    assert not unacknowledged_but_stored, f"stored but the client never heard: {unacknowledged_but_stored[:10]}"
    assert not list_wrong, f"the agent's list is stale for conversations {list_wrong[:10]}"
    assert not (viewed_missing or viewed_duplicated or viewed_out_of_order or reloads), (
        viewed_missing,
        viewed_duplicated,
        viewed_out_of_order,
        reloads,
    )
