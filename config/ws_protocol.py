"""uvicorn's sans-I/O websocket protocol, holding less per idle connection (`config.serve`'s
default `--ws`; issue 9: 10,000 idle sockets on one process).

`uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol` keeps, for the
whole life of every connection (measured with `bench/idle_sockets.py --trace`, per socket):
- an `asyncio.Queue` for the messages the app has not received yet: four deques of 0.7 KiB each
  (items, getters, putters, and the `join()` event's waiters), 2.5–3 KiB, although one task
  ever waits on it and it is empty while the socket is idle;
- an `asyncio.Event` for "the transport may be written to" (one more deque);
- the handshake's request and response (their headers: ~3.5 KiB), which nothing reads after
  the handshake (the ASGI scope has its own copy of the request headers). Dropping uvicorn's
  references is not enough: `websockets`' `ServerProtocol.parse()` is a generator that parses
  the request and then, in the same frame, every websocket frame of the connection, so its
  local `request` lived as long as the socket (found with tracemalloc tracebacks, 2026-12-02);
- the scope it passed to the application (the app keeps what it needs, see config.routing);
- one more coroutine per idle socket: uvicorn's `receive()` awaiting `Queue.get()`;
- an instance dict of 37 attributes: past 30, CPython gives up sharing the keys between
  instances and every connection gets a whole dict of its own (~1.2 KiB more per socket, measured
  on 1,000 instances with tracemalloc). Declared as slots here, the same attributes are stored
  in the instance, 8 bytes each, with nothing else changed.

Here the queue and the event are small objects of their own with the same behaviour for the
ways uvicorn uses them (`put_nowait`/`get`/`empty`; `set`/`clear`/`wait`); once the handshake is
complete the request, the response and the scope are dropped, and the parser generator is
replaced by a fresh frame parser (`Protocol.parse`, what `ServerProtocol.parse` runs after the
request) when it is waiting between frames, as it is right after the handshake; `receive()`
awaits the queue's future itself. A text frame on an open connection without extensions is
written at once (`sent_text_now`), byte for byte what uvicorn would write. An app that registers
a receiver through the scope extension `parley.receive_now` gets each text message that arrives
while it waits in `receive()` with nothing queued within the step that read it, in its own
task's context (`register_receiver`). Everything else is
uvicorn's, so the protocol (close handshake, keepalive pings, flow control, compression) is
unchanged. Written against uvicorn 0.54 and websockets 15–17; `tests/config/test_ws_protocol.py`
checks the attributes it relies on.
"""

from __future__ import annotations

import asyncio
import contextvars
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import Protocol, State
from websockets.streams import StreamReader

# The ASGI scope extension through which an app takes client messages within the step that read
# them (`LeanWebSocketsProtocol.take_now`).
RECEIVE_NOW = "parley.receive_now"


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, unfragmented text frame of `length` bytes (RFC 6455 5.2), as
    `websockets`' `Frame.serialize` writes it for a server without extensions."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class ReceiveQueue:
    """An unbounded FIFO for one consumer at a time: a deque only while items wait, and one
    future only while the consumer waits."""

    __slots__ = ("_items", "_waiter", "taker")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None
        # The app's synchronous receiver (`LeanWebSocketsProtocol.take_now`), or None.
        self.taker: Callable[[Any], bool] | None = None

    def put_nowait(self, item: Any) -> None:
        # Handed to the app at once when it waits for exactly this item (nothing queued before
        # it) and takes it: the app's task is not woken for it.
        taker, waiter = self.taker, self._waiter
        if taker is not None and self._items is None and waiter is not None and not waiter.done() and taker(item):
            return
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def waiter(self) -> asyncio.Future[None]:
        """A future resolved by the next put (the caller awaits it, then pops)."""
        if self._waiter is not None:
            raise RuntimeError("ReceiveQueue.get() is already being awaited")
        self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    def pop(self) -> Any:
        assert self._items
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    async def get(self) -> Any:
        while not self._items:
            try:
                await self.waiter()
            finally:
                self._waiter = None
        return self.pop()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0


class Flag:
    """asyncio.Event's set/clear/wait/is_set, with waiters in a list made only while some wait."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


async def _scope_only(scope: Any, receive: Any, send: Any) -> None:
    return None


class ProxyHeadersFirst:
    """uvicorn's ProxyHeadersMiddleware (`--proxy-headers`) rewrites the scope in place and then
    awaits the application, keeping a coroutine for the life of every websocket. Here its
    rewrite runs to completion at once (it never suspends: its inner app here returns at
    once), then the application's coroutine is returned for the server to await."""

    def __init__(self, middleware: ProxyHeadersMiddleware) -> None:
        self.app = middleware.app
        self.rewrite = ProxyHeadersMiddleware(_scope_only)
        self.rewrite.trusted_hosts = middleware.trusted_hosts

    def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        step = self.rewrite(scope, receive, send)
        try:
            step.send(None)
        except StopIteration:
            pass
        else:  # pragma: no cover - uvicorn's middleware awaited something: finish it the usual way
            raise RuntimeError("ProxyHeadersMiddleware suspended")
        return self.app(scope, receive, send)


class LeanWebSocketsProtocol(WebSocketsSansIOProtocol):
    # Every attribute uvicorn 0.54's protocol sets (see the module docstring); one added by a later
    # uvicorn lands in the instance dict as before.
    __slots__ = (
        "app",
        "app_context",
        "app_receiver",
        "app_state",
        "asgi_version",
        "client",
        "close_sent",
        "close_timeout",
        "close_timer",
        "config",
        "conn",
        "connections",
        "curr_msg_data_type",
        "default_headers",
        "disconnected",
        "frames",
        "handshake_complete",
        "handshake_initiated",
        "initial_response",
        "last_ping_rtt",
        "logger",
        "loop",
        "pending_ping_payload",
        "ping_interval",
        "ping_sent_at",
        "ping_timeout",
        "ping_timer",
        "pong_timer",
        "queue",
        "read_paused",
        "request",
        "response",
        "root_path",
        "scheme",
        "scope",
        "server",
        "tasks",
        "transport",
        "writable",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.app, ProxyHeadersMiddleware):
            # One per server (kept on uvicorn's middleware), not one per connection.
            first = getattr(self.app, "parley_first", None)
            if first is None:
                first = self.app.parley_first = ProxyHeadersFirst(self.app)  # type: ignore[attr-defined]
            self.app = first
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()
        self.app_receiver: Callable[[dict[str, Any]], bool] | None = None
        self.app_context: contextvars.Context | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and self.response is not None and self.response.status_code == 101:
            scope["extensions"][RECEIVE_NOW] = {"register": self.register_receiver, "send_text_now": self.send_text_now}

    def register_receiver(
        self, receiver: Callable[[dict[str, Any]], bool] | None, context: contextvars.Context | None = None
    ) -> None:
        """The app's synchronous receiver, run in `context` (the app task's own), or None to stop.
        From then on a text message arriving while the app waits in `receive()` with nothing
        queued is handed to `receiver` within the step that read it, instead of waking the app's
        task for it on a later turn of the loop (on a saturated loop a turn is a wait behind
        every ready callback: issue 9, the wait between the frame's read and its handler was
        p50 9 / p99 100 ms under 3x overload). True: taken (its answers written); False: it
        goes through the queue as before."""
        self.app_receiver, self.app_context = receiver, context
        self.queue.taker = self.take_now if receiver is not None else None  # type: ignore[attr-defined]

    def send_receive_event_to_app(self) -> None:
        super().send_receive_event_to_app()
        # uvicorn pauses reading after every message until the app asks for the next one; a
        # message taken at once (`take_now`) leaves the app waiting for the next one already.
        if self.read_paused and self.queue.empty() and self.queue._waiter is not None:  # type: ignore[attr-defined]
            self.read_paused = False
            self.transport.resume_reading()

    def take_now(self, message: dict[str, Any]) -> bool:
        receiver, context = self.app_receiver, self.app_context
        if (
            receiver is None
            or context is None
            or message.get("type") != "websocket.receive"
            or not self.can_write_now()
        ):
            return False
        # Only ever called from `data_received` (a client's message), never within a task's step:
        # the app's context is free to enter. The receiver must not raise (a frame it took half
        # would otherwise go through the queue again).
        return context.run(receiver, message)

    def send_text_now(self, text: str) -> bool:
        """Write a text frame at once if `sent_text_now` may (True), else False: nothing written."""
        return self.sent_text_now({"type": "websocket.send", "text": text})

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.send" and self.sent_text_now(message):
            return
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete and self.request is not None:
            # The handshake is over: nothing reads its request, response or scope again (uvicorn
            # reads the scope only to log the handshake's outcome).
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]
            self.scope = None  # type: ignore[assignment]
            self.restart_parser()

    def sent_text_now(self, message: Any) -> bool:
        """Write a text message's frame at once when nothing about the connection needs
        uvicorn's path: open, not closing, writable, no extension (permessage-deflate) and
        nothing else waiting to be written. Most frames a server sends are these; uvicorn's path
        (an awaited flow-control wait, `websockets`' Frame object and its serialization into a
        BytesIO, the protocol's write list) cost more than the frame's JSON. False: left to it,
        which then raises, waits or compresses as before."""
        text = message.get("text")
        if text is None or message.get("bytes") is not None or not self.can_write_now():
            return False
        data = text.encode()
        self.transport.write(text_frame_header(len(data)) + data)
        return True

    def can_write_now(self) -> bool:
        conn = self.conn
        return not (
            not self.handshake_complete
            or self.close_sent
            or self.initial_response is not None
            or self.disconnected
            or not self.writable.is_set()
            or conn.state is not State.OPEN
            or conn.extensions
            or conn.expect_continuation_frame
            or conn.writes
            or conn.debug
        )

    def restart_parser(self) -> bool:
        """Replace the handshake's parser generator by a frame parser when it waits between
        frames (its innermost step is `StreamReader.at_eof`, nothing buffered): the state is then
        the same, without the request the old generator's frame holds. Anywhere else (a frame
        half read, the connection failing) it is left as it is. True if replaced."""
        conn = self.conn
        parser = getattr(conn, "parser", None)
        inner = getattr(parser, "gi_yieldfrom", None)  # Protocol.parse, run by ServerProtocol.parse
        waiting = getattr(inner, "gi_yieldfrom", None)
        if (
            getattr(inner, "gi_code", None) is not Protocol.parse.__code__
            or getattr(waiting, "gi_code", None) is not StreamReader.at_eof.__code__
            or conn.reader.buffer
            or conn.reader.eof
            or conn.parser_exc is not None
        ):
            return False
        fresh = Protocol.parse(conn)
        next(fresh)  # runs up to at_eof's first yield, as the old one waits
        conn.parser = fresh
        return True

    async def receive(self) -> Any:
        # uvicorn's receive with the queue's wait inlined: a future, not a coroutine, per idle socket.
        queue: ReceiveQueue = self.queue  # type: ignore[assignment]
        while queue.empty():
            try:
                await queue.waiter()
            finally:
                queue._waiter = None
        message = queue.pop()
        if self.read_paused and queue.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message
