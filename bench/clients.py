"""The load generator's clients: what static/parley/chat.js, inbox.js and realtime.js do on the
wire, in one place, so the benchmark follows the protocol (messaging/README.md) as it changes.

- `PageSocket` is realtime.js's ResumingSocket: resume after every (re)connect, drop frames with
  an id already seen, reconnect with backoff and full jitter (not after 4401/4403/4404), ping every 25 s.
- `ChatPage` is chat.js: send with a fresh client_msg_id (accepted by `message.accepted` or by
  its own `message.created`), typing at most every 2.5 s, an ack
  (read, the tab is visible) whenever a business message arrives, and a refused send (`rate_limited`,
  `overloaded`) holds every later send: it goes again alone with the same client_msg_id after
  `retry_after`, doubled for each further refusal of that message (`config.websocket.send_retry_delay`,
  realtime.js's rule), and the held ones follow in a window that grows by one with each
  acceptance (realtime.js SendOutbox).
- `InboxPage` is inbox.js: `view` the open conversation (a reply into it is accepted as a
  customer's send is), read-ack inbound messages of the open conversation, delivered-ack inbound
  messages of other conversations that reach it, typing before a reply, replies with
  `conversation_id`.
- Both pages' acks go through `AckBatcher`, realtime.js's: merged and sent every 0.5 s.

Every message body starts with the send time (`time.time()`), so any process on this machine
can measure latency from any frame that carries the body or its preview.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from config.websocket import reconnect_delay, send_retry_delay

PING_EVERY = 25.0
TYPING_EVERY = 2.5
ACK_DELAY = 0.5  # realtime.js AckBatcher's delay
RETRYABLE = {"rate_limited", "overloaded"}
LIST_BATCH = "conversations.updated"
FINAL_CLOSE = {4401, 4403, 4404}


def _dumps(frame: dict[str, Any]) -> str:
    # orjson, as the server: the generator shares the machine with the server it measures, and
    # the standard library's decoder was a third of its CPU (parsing agents' list frames).
    return orjson.dumps(frame).decode()


def stamp_body(seq: int, pad: int = 40) -> str:
    return f"{time.time():.6f} bench message {seq} " + "x" * pad


def stamp_of(text: str | None) -> float | None:
    if not text:
        return None
    head = text.split(" ", 1)[0]
    try:
        return float(head)
    except ValueError:
        return None


@dataclass
class Stats:
    """What one generator process saw; merged by the parent."""

    frames: int = 0
    frames_unread: int = 0  # list frames of agents that do not read theirs (InboxPage `reads_list`)
    sent: dict[str, float] = field(default_factory=dict)  # client_msg_id -> first send time
    accepted: set[str] = field(default_factory=set)
    refused_final: dict[str, str] = field(default_factory=dict)  # client_msg_id -> code
    refusals: int = 0  # every retryable refusal frame (a send may be refused and retried)
    refusal_codes: dict[str, int] = field(default_factory=dict)
    refusal_latency: list[float] = field(default_factory=list)  # first send -> refusal frame
    # this attempt (the first send or a retry) -> its refusal: how fast the server says no
    refusal_answer: list[float] = field(default_factory=list)
    accept_latency: list[float] = field(default_factory=list)  # send -> message.accepted
    # the attempt that was accepted (the first send or a retry) -> message.accepted: how long the
    # server kept a send it took, without the waits the page held it for after refusals
    attempt_accept_latency: list[float] = field(default_factory=list)
    customer_to_agent: list[float] = field(default_factory=list)
    # A customer's message.accepted → its copy at the viewing agent, both seen by this generator
    # process (negative: the agent had it first): whether the sender's ack lags the delivery.
    accepted_at: dict[str, float] = field(default_factory=dict)
    viewed_at: dict[str, float] = field(default_factory=dict)  # the agent's copy came first
    accepted_to_viewer: list[float] = field(default_factory=list)
    agent_to_customer: list[float] = field(default_factory=list)
    list_staleness: list[float] = field(default_factory=list)  # every list copy naming a message
    # the first time each agent's list shows a message (a later copy of the same preview, e.g.
    # after a read receipt changed the unread count, is not the message's staleness)
    list_first_staleness: list[float] = field(default_factory=list)
    received_by_customer: set[str] = field(default_factory=set)  # client_msg_ids seen on the customer's socket
    received_by_viewer: set[str] = field(default_factory=set)  # customer messages seen by a viewing agent
    errors: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    acks_sent: int = 0
    # Messages stamped before this (an earlier run on the same database, replayed on resume) are
    # not this run's latency.
    since: float = 0.0

    def count_error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class AckBatcher:
    """realtime.js's AckBatcher: acks wait `delay` seconds, merged per conversation and kind (read
    or delivered: the highest up_to), then go together; a delivered ack at or below a read one of
    the same conversation is left out. Acked one frame per message instead, a customer coming
    back to a conversation with dozens of unread replies sent dozens of frames at once (its
    resume's replay), past the server's frame queue and frame rate (refused `overloaded` and
    `rate_limited`), which no page does."""

    def __init__(self, send: Callable[[dict[str, Any]], None], stats: Stats, delay: float = ACK_DELAY) -> None:
        self.send = send
        self.stats = stats
        self.delay = delay
        self.pending: dict[tuple[Any, bool], dict[str, Any]] = {}
        self.timer: asyncio.TimerHandle | None = None

    def add(self, frame: dict[str, Any]) -> None:
        key = (frame.get("conversation_id"), bool(frame.get("read")))
        known = self.pending.get(key)
        if known is None or known["up_to"] < frame["up_to"]:
            self.pending[key] = frame
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.delay, self.flush)

    def flush(self) -> None:
        self.timer = None
        pending, self.pending = self.pending, {}
        for (conversation_id, read), frame in pending.items():
            covering = None if read else pending.get((conversation_id, True))
            if covering is not None and covering["up_to"] >= frame["up_to"]:
                continue
            self.stats.acks_sent += 1
            self.send(frame)


class PageSocket:
    """realtime.js's ResumingSocket."""

    def __init__(
        self,
        *,
        url: str,
        host: str,
        port: int,
        cookie: str,
        on_frame: Callable[[dict[str, Any]], None],
        on_open: Callable[[], None],
        stats: Stats,
        last_event_id: int = 0,
        unread: Callable[[str], bool] | None = None,
    ) -> None:
        self.url, self.host, self.port, self.cookie = url, host, port, cookie
        self.on_frame, self.on_open, self.stats = on_frame, on_open, stats
        self.unread = unread  # frames counted but not parsed (they carry no id and need no answer)
        self.last = last_event_id
        self.ws: ClientConnection | None = None
        self.resumed = asyncio.Event()
        self.closed_for_good = False
        self.queue: list[dict[str, Any]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.sending: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        await self._connect()
        self.tasks.append(asyncio.create_task(self._pinger()))

    async def _connect(self) -> None:
        origin = f"http://{self.host}:{self.port}"
        self.ws = await connect(
            self.url,
            host="127.0.0.1",
            port=self.port,
            origin=origin,  # type: ignore[arg-type]
            additional_headers={"Cookie": self.cookie},
            compression=None,
            max_queue=None,
            ping_interval=None,
            open_timeout=60,
        )
        self.resumed.clear()
        await self.ws.send(_dumps({"type": "resume", "after": self.last}))
        queued, self.queue = self.queue, []
        for frame in queued:
            await self.ws.send(_dumps(frame))
        self.tasks.append(asyncio.create_task(self._reader(self.ws)))
        self.on_open()

    async def _reader(self, ws: ClientConnection) -> None:
        attempt = 0
        try:
            async for text in ws:
                self.stats.frames += 1
                if self.unread is not None and isinstance(text, str) and self.unread(text):
                    self.stats.frames_unread += 1
                    continue
                try:
                    frame = orjson.loads(text)
                except ValueError:
                    continue
                if not isinstance(frame, dict):
                    continue
                if isinstance(frame.get("id"), int):
                    if frame["id"] <= self.last:
                        continue
                    self.last = frame["id"]
                if frame.get("type") == "resumed":
                    self.resumed.set()
                self.on_frame(frame)
        except ConnectionClosed:
            pass
        code = ws.close_code
        if self.closed_for_good or code in FINAL_CLOSE:
            self.closed_for_good = True
            return
        # As the page does: reconnect with backoff and full jitter, resume from the last id seen.
        while not self.closed_for_good:
            await asyncio.sleep(reconnect_delay(attempt))
            try:
                self.stats.reconnects += 1
                await self._connect()
                return
            except (OSError, ConnectionClosed, TimeoutError):
                attempt += 1

    async def _pinger(self) -> None:
        while not self.closed_for_good:
            await asyncio.sleep(PING_EVERY)
            self.send({"type": "ping"}, queue=False)

    @property
    def open(self) -> bool:
        return self.ws is not None and self.ws.state.name == "OPEN"

    def send(self, frame: dict[str, Any], *, queue: bool = True) -> None:
        if self.open:
            assert self.ws is not None
            task = asyncio.ensure_future(self._send_text(self.ws, _dumps(frame)))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)
        elif queue:
            self.queue.append(frame)

    async def _send_text(self, ws: ClientConnection, text: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(text)

    async def close(self) -> None:
        self.closed_for_good = True
        for task in self.tasks:
            task.cancel()
        if self.ws is not None:
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                await asyncio.wait_for(self.ws.close(), 5)


class _Page:
    """realtime.js SendOutbox: sends go in the order written; a refusal for load or rate holds
    every send not yet accepted until the refused one's wait is over, then they go oldest first
    in a window — one on its way at first, one more for each accepted (or the hold starts again
    if one is refused) — until none is left."""

    stats: Stats
    socket: PageSocket
    pending: dict[str, dict[str, Any]]  # client_msg_id -> frame not yet accepted, in the order written
    attempts: dict[str, float]  # client_msg_id -> when it was last sent
    refusals: dict[str, int]  # client_msg_id -> how often it was refused
    on_their_way: set[str]  # after a hold: sent and not yet answered
    held = False  # waiting out a refusal
    window = 0  # after a hold: how many sends may be on their way at once (0: no hold to recover from)

    def batched_acks(self) -> AckBatcher:
        """The page's acks, through realtime.js's batcher, on its socket."""
        return AckBatcher(lambda frame: self.socket.send(frame, queue=False), self.stats)

    def send_message(self, frame: dict[str, Any]) -> None:
        cmid = frame["client_msg_id"]
        self.pending[cmid] = frame
        self.stats.sent.setdefault(cmid, time.time())
        if self.held:
            return
        if self.window == 0:
            self._transmit(cmid, frame)
        else:
            self._fill()

    def _transmit(self, cmid: str, frame: dict[str, Any]) -> None:
        self.attempts[cmid] = time.time()
        self.socket.send(frame, queue=False)

    def _fill(self) -> None:
        """After a hold: the oldest pending sends go, as many as the window lets be on their way;
        none left: sends go at once again."""
        if not self.pending:
            self.window = 0
            return
        for cmid, frame in self.pending.items():
            if cmid in self.on_their_way:
                continue
            if len(self.on_their_way) >= self.window:
                return
            self.on_their_way.add(cmid)
            self._transmit(cmid, frame)

    def reconnected(self) -> None:
        """Every pending send again, in the order written (as the window lets, after a hold)."""
        if self.held:
            return
        if self.window:
            self.on_their_way.clear()
            self._fill()
            return
        for cmid, frame in list(self.pending.items()):
            self._transmit(cmid, frame)

    def on_send_error(self, frame: dict[str, Any]) -> None:
        """realtime.js SendOutbox.refused: retryable refusals go again with the same client_msg_id."""
        code = frame.get("code", "?")
        cmid = str(frame.get("client_msg_id") or "")
        pending = self.pending.get(cmid) if cmid else None
        if pending is None:  # "late" in realtime.js: a refused repeat of a send already stored
            self.stats.count_error(f"late {code}" if cmid and code in RETRYABLE else code)
            return
        if code in RETRYABLE:
            self.stats.refusals += 1
            self.stats.refusal_codes[code] = self.stats.refusal_codes.get(code, 0) + 1
            self.stats.refusal_latency.append(time.time() - self.stats.sent[cmid])
            self.stats.refusal_answer.append(time.time() - self.attempts.get(cmid, self.stats.sent[cmid]))
            self.refusals[cmid] = refusals = self.refusals.get(cmid, 0) + 1
            if not self.held and (self.window == 0 or cmid in self.on_their_way):
                self.held = True
                self.window = 1
                self.on_their_way.clear()
                retry_after = frame.get("retry_after")
                delay = send_retry_delay(float(retry_after) if retry_after else None, refusals)
                asyncio.get_running_loop().call_later(delay, self._release)
            return
        self.stats.count_error(code)
        self.stats.refused_final[cmid] = code
        self.pending.pop(cmid, None)
        self.refusals.pop(cmid, None)
        if cmid in self.on_their_way:
            self.on_their_way.discard(cmid)
            self._fill()

    def _release(self) -> None:
        self.held = False
        self._fill()

    def on_accepted(self, frame: dict[str, Any]) -> None:
        cmid = frame.get("client_msg_id")
        if cmid and self.pending.pop(cmid, None) is not None:
            self.refusals.pop(cmid, None)
            self.stats.accepted.add(cmid)
            now = time.time()
            self.stats.accept_latency.append(now - self.stats.sent[cmid])
            self.stats.attempt_accept_latency.append(now - self.attempts.get(cmid, self.stats.sent[cmid]))
            viewed_at = self.stats.viewed_at.pop(cmid, None)
            if viewed_at is not None:
                self.stats.accepted_to_viewer.append(viewed_at - now)
            elif cmid.startswith("c"):
                self.stats.accepted_at[cmid] = now
        if cmid is not None and cmid in self.on_their_way:
            self.on_their_way.discard(cmid)
            self.window += 1
            self._fill()


class ChatPage(_Page):
    """chat.js: one customer's conversation with the business."""

    def __init__(
        self, *, url: str, host: str, port: int, cookie: str, stats: Stats, prefix: str, conversation_id: int
    ) -> None:
        self.stats = stats
        self.conversation_id = conversation_id
        self.prefix = prefix
        self.pending = {}
        self.attempts = {}
        self.refusals = {}
        self.on_their_way = set()
        self.seq = 0
        self.last_typing = 0.0
        self.theirs_max = 0  # the newest business message id seen
        self.acked = 0
        self.socket = PageSocket(
            url=url, host=host, port=port, cookie=cookie, on_frame=self.on_frame, on_open=self.on_open, stats=stats
        )
        self.acks = self.batched_acks()

    def on_open(self) -> None:
        # Unconfirmed sends go again (same client_msg_id), then acknowledge what was seen.
        self.reconnected()
        self.acknowledge()

    def acknowledge(self) -> None:
        if self.theirs_max > self.acked:
            self.acked = self.theirs_max
            self.acks.add({"type": "ack", "up_to": self.theirs_max, "read": True})

    def type_and_send(self) -> None:
        now = time.time()
        if now - self.last_typing > TYPING_EVERY:
            self.last_typing = now
            self.socket.send({"type": "typing"}, queue=False)
        self.seq += 1
        self.send_message({"type": "send", "body": stamp_body(self.seq), "client_msg_id": f"{self.prefix}-{self.seq}"})

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message.created":
            message = frame["message"]
            if message.get("conversation_id", self.conversation_id) != self.conversation_id:
                return  # a server that broadcasts (the tutorial chat): not this customer's
            cmid = message.get("client_msg_id") or ""
            self.stats.received_by_customer.add(cmid)
            if cmid in self.pending:
                # chat.js: a send answered with its own message (nothing came between).
                self.on_accepted(message)
            if message.get("direction") == "out":
                sent = stamp_of(message.get("body"))
                if sent is not None and sent >= self.stats.since and cmid.startswith("a"):
                    self.stats.agent_to_customer.append(time.time() - sent)
                self.theirs_max = max(self.theirs_max, int(message.get("id") or 0))
                self.acknowledge()
        elif kind == "message.accepted":
            self.on_accepted(frame)
        elif kind == "error":
            self.on_send_error(frame)


def is_list_batch(text: str) -> bool:
    """A coalesced list update (`conversations.updated`), told by its type near the start of the
    text (Parley's and the limit server's both name it within the first 64 characters)."""
    return f'"{LIST_BATCH}"' in text[:64]


class InboxPage(_Page):
    """inbox.js: an agent with one conversation open.

    `reads_list=False`: the page counts its list batches without parsing them. The pages send
    nothing in answer to a list batch, so the server sees the same load either way; but the
    generator runs every agent in one process, where parsing 50 agents' batches (a few a second
    each, ~140 KB each at 1,000 msgs/s) was a third of its CPU and held its event loop for tens
    of milliseconds each time a server process flushed its lists to all of them, adding that to
    every latency it measured meanwhile. `bench/inbox_load.py --list-sample` picks the agents
    that read theirs (and measure list staleness)."""

    def __init__(
        self,
        *,
        url: str,
        host: str,
        port: int,
        cookie: str,
        stats: Stats,
        prefix: str,
        view: int | None,
        reads_list: bool = True,
    ) -> None:
        self.stats = stats
        self.prefix = prefix
        self.pending = {}
        self.attempts = {}
        self.refusals = {}
        self.on_their_way = set()
        self.seq = 0
        self.current = view
        self.read_up_to = 0
        self.list_shown: dict[Any, float] = {}  # conversation id -> newest preview stamp counted
        self.reads_list = reads_list
        self.socket = PageSocket(
            url=url,
            host=host,
            port=port,
            cookie=cookie,
            on_frame=self.on_frame,
            on_open=self.on_open,
            stats=stats,
            unread=None if reads_list else is_list_batch,
        )
        self.acks = self.batched_acks()

    def on_open(self) -> None:
        if self.current is not None:
            self.socket.send({"type": "view", "conversation_id": self.current})
        self.reconnected()

    def ack(self, conversation_id: int, up_to: int, *, read: bool) -> None:
        self.acks.add({"type": "ack", "conversation_id": conversation_id, "up_to": up_to, "read": read})

    def reply(self) -> None:
        if self.current is None:
            return
        self.socket.send({"type": "typing", "conversation_id": self.current}, queue=False)
        self.seq += 1
        self.send_message(
            {
                "type": "send",
                "conversation_id": self.current,
                "kind": "text",
                "body": stamp_body(self.seq),
                "client_msg_id": f"{self.prefix}-{self.seq}",
            }
        )

    def _list_update(self, conversation: dict[str, Any]) -> None:
        sent = stamp_of(conversation.get("preview"))
        if sent is not None and sent >= self.stats.since:
            now = time.time()
            self.stats.list_staleness.append(now - sent)
            conversation_id = conversation.get("id")
            if sent > self.list_shown.get(conversation_id, 0.0):
                self.list_shown[conversation_id] = sent
                self.stats.list_first_staleness.append(now - sent)

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message.created":
            message = frame["message"]
            if (message.get("client_msg_id") or "") in self.pending:
                # inbox.js: a reply answered with its own message (nothing came between).
                self.on_accepted(message)
            conversation_id = message.get("conversation_id", frame.get("conversation_id"))
            inbound = message.get("direction") == "in"
            if conversation_id == self.current:
                if inbound:
                    cmid = message.get("client_msg_id") or ""
                    self.stats.received_by_viewer.add(cmid)
                    sent = stamp_of(message.get("body"))
                    if sent is not None and sent >= self.stats.since:
                        now = time.time()
                        self.stats.customer_to_agent.append(now - sent)
                        accepted_at = self.stats.accepted_at.pop(cmid, None)
                        if accepted_at is not None:
                            self.stats.accepted_to_viewer.append(now - accepted_at)
                        else:
                            self.stats.viewed_at[cmid] = now
                    # markRead: the open conversation's inbound messages are read.
                    if message["id"] > self.read_up_to:
                        self.read_up_to = message["id"]
                        self.ack(conversation_id, message["id"], read=True)
            elif inbound and conversation_id is not None:
                # Reached an agent's screen: the customer sees "delivered".
                self.ack(conversation_id, message["id"], read=False)
        elif kind == "conversation.updated":
            self._list_update(frame["conversation"])
        elif kind == LIST_BATCH:  # a coalesced list update
            # Parley's carries the stored conversation.updated events (inbox.js reads `events`);
            # the limit server's the conversations themselves.
            for event in frame.get("events", []):
                if isinstance(event, dict) and isinstance(event.get("conversation"), dict):
                    self._list_update(event["conversation"])
            for conversation in frame.get("conversations", []):
                self._list_update(conversation)
        elif kind == "message.accepted":
            self.on_accepted(frame)
        elif kind == "error":
            self.on_send_error(frame)


def new_prefix(kind: str) -> str:
    # "c…" for customers, "a…" for agents: the prefix says who wrote a message.
    return f"{kind}{uuid.uuid4().hex[:10]}"
