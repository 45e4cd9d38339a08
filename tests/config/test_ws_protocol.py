"""config/ws_protocol.py: uvicorn's sans-I/O websocket protocol with a lighter receive queue and
writable flag, and without the handshake's request and response once it is complete."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol

from config.serve import server_command
from config.ws_protocol import (
    RECEIVE_NOW,
    Flag,
    LeanWebSocketsProtocol,
    ProxyHeadersFirst,
    ReceiveQueue,
    text_frame_header,
)
from tests.conftest import free_port


@contextlib.asynccontextmanager
async def serving(app: Any, protocol: type[LeanWebSocketsProtocol]) -> AsyncIterator[int]:
    """uvicorn serving `app` with `protocol` on a free port (yielded) until the block ends."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws=protocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    running = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        await running


async def test_the_receive_queue_is_a_fifo_that_holds_nothing_when_empty() -> None:
    queue = ReceiveQueue()
    assert queue.empty() and queue._items is None
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert await getter == 1
    assert not queue.empty() and queue.qsize() == 1
    assert await queue.get() == 2
    assert queue.empty() and queue._items is None and queue._waiter is None
    # A cancelled get loses nothing.
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    queue.put_nowait(3)
    assert await queue.get() == 3


async def test_the_flag_behaves_like_an_event() -> None:
    flag = Flag()
    assert not flag.is_set()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True]
    flag.clear()
    assert not flag.is_set()
    flag.set()
    assert await flag.wait() is True


async def test_a_real_connection_through_uvicorn_drops_the_handshake_and_echoes() -> None:
    protocols: list[Any] = []

    class Recording(LeanWebSocketsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            protocols.append(self)

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "echo " + message["text"]})

    async with serving(echo, Recording) as port, connect(f"ws://127.0.0.1:{port}/") as ws:
        for n in range(3):
            await ws.send(f"hi {n}")
            assert await ws.recv() == f"echo hi {n}"
        (protocol,) = protocols
        assert protocol.handshake_complete
        assert protocol.request is None and protocol.response is None and protocol.scope is None
        # The handshake's parser generator (whose frame held the request) was replaced by a
        # frame parser, which parsed the frames above.
        assert protocol.conn.parser.gi_code is Protocol.parse.__code__
        assert "request" not in protocol.conn.parser.gi_frame.f_locals
        # uvicorn's attributes are slots: no dict of its own per connection.
        assert not vars(protocol)
        assert isinstance(protocol.queue, ReceiveQueue) and protocol.queue.empty()
        assert isinstance(protocol.writable, Flag) and protocol.writable.is_set()


def test_config_serve_runs_uvicorn_with_the_lean_protocol_by_default() -> None:
    command = server_command("uvicorn", 3)
    assert command[command.index("--ws") + 1] == "config.ws_protocol:LeanWebSocketsProtocol"
    command = server_command("uvicorn", 3, ws="websockets-sansio")
    assert command[command.index("--ws") + 1] == "websockets-sansio"


def _handshaken() -> Any:
    from websockets.server import ServerProtocol

    conn = ServerProtocol()
    conn.receive_data(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    (request,) = conn.events_received()
    conn.send_response(conn.accept(request))
    conn.data_to_send()
    return conn


def test_the_parser_is_replaced_only_between_frames() -> None:
    protocol = LeanWebSocketsProtocol.__new__(LeanWebSocketsProtocol)
    protocol.conn = _handshaken()
    assert protocol.restart_parser()
    assert protocol.conn.parser.gi_code is Protocol.parse.__code__
    assert not protocol.restart_parser()  # already a frame parser: nothing to drop
    # Half a frame received: the handshake's parser is in the middle of it and stays.
    protocol.conn = _handshaken()
    old = protocol.conn.parser
    protocol.conn.receive_data(b"\x81\x85")  # a masked 5-byte text frame's header, no payload yet
    assert not protocol.restart_parser()
    assert protocol.conn.parser is old
    protocol.conn.receive_data(b"\x00\x00\x00\x00hello")
    (frame,) = protocol.conn.events_received()
    assert frame.data == b"hello"
    # A frame parser after replacement parses frames just the same.
    protocol.conn = _handshaken()
    assert protocol.restart_parser()
    protocol.conn.receive_data(b"\x81\x82\x00\x00\x00\x00hi")
    (frame,) = protocol.conn.events_received()
    assert frame.data == b"hi"


async def test_proxy_headers_are_applied_without_a_coroutine_of_their_own() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> str:
        seen.append(scope)
        return "done"

    first = ProxyHeadersFirst(ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1"))
    scope: dict[str, Any] = {
        "type": "websocket",
        "scheme": "ws",
        "client": ("127.0.0.1", 5000),
        "headers": [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")],
    }
    inner = first(scope, None, None)
    assert inner.cr_code is app.__code__  # the application's own coroutine, returned
    assert await inner == "done"
    assert seen[0]["client"] == ("203.0.113.7", 0) and seen[0]["scheme"] == "wss"
    # An untrusted peer's headers are ignored, as by uvicorn's middleware.
    scope = dict(scope, client=("198.51.100.1", 5000), scheme="ws")
    await first(scope, None, None)
    assert seen[1]["client"] == ("198.51.100.1", 5000) and seen[1]["scheme"] == "ws"


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_text_frame_header_is_the_one_websockets_writes(length: int) -> None:
    data = b"x" * length
    assert text_frame_header(length) + data == Frame(Opcode.TEXT, data).serialize(mask=False, extensions=[])


# Around each length where the header changes, in characters of two UTF-8 bytes, plus ASCII.
TEXTS = ["", "a", "ü" * 62, "ü" * 63, "ü" * 64, "x" * 65535, "x" * 65536, "ü" * 40000]


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_text_frames_go_out_directly_unless_an_extension_is_on(compression: str | None) -> None:
    """Without permessage-deflate every text frame is written at once (sent_text_now) and the
    client reads exactly the texts sent; with it, uvicorn's path compresses them as before. A
    binary frame, and a frame after the app closed, still take uvicorn's path."""
    direct: list[bool] = []
    outcome: list[str] = []

    class Recording(LeanWebSocketsProtocol):
        def sent_text_now(self, message: Any) -> bool:
            sent = super().sent_text_now(message)
            direct.append(sent)
            return sent

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        assert (await receive())["text"] == "go"
        for text in TEXTS:
            await send({"type": "websocket.send", "text": text})
        await send({"type": "websocket.send", "bytes": b"\x00\x01"})
        await send({"type": "websocket.close", "code": 1000})
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except RuntimeError as error:  # uvicorn's own refusal after a close
            outcome.append(str(error))

    async with serving(app, Recording) as port:
        async with connect(f"ws://127.0.0.1:{port}/", compression=compression, max_size=None) as ws:
            await ws.send("go")
            received = [await ws.recv() for _ in TEXTS]
            assert received == TEXTS
            assert await ws.recv() == b"\x00\x01"
        while not outcome:
            await asyncio.sleep(0.01)
    # The texts went out directly (without deflate); the binary frame and the text after the
    # close were declined, left to uvicorn.
    assert direct[: len(TEXTS)] == [compression is None] * len(TEXTS)
    assert direct[len(TEXTS) :] == [False, False]
    assert "after sending 'websocket.close'" in outcome[0]


async def test_an_app_takes_each_message_in_the_step_that_read_it_in_its_own_context() -> None:
    """The `parley.receive_now` extension (issue 9): while the app waits in `receive()` with
    nothing queued, a text message goes to its registered receiver within the server's read
    step, not through a wake-up of the app's task on a later turn of the loop (under 3x
    overload that turn was p50 9 / p99 100 ms of a refusal's time). The receiver runs in the
    app task's own context (its context variables: the page's language), outside any task; its
    answer is written at once; reading goes on after each (uvicorn pauses reading after every
    message until the app asks again: left paused, the socket was never read again). A message
    the receiver leaves, one arriving while the app is busy, and every message after the app
    unregistered come through `receive()`, in their order."""
    page_language: contextvars.ContextVar[str] = contextvars.ContextVar("page_language", default="")
    taken: list[tuple[str, str, bool]] = []
    woken: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        page_language.set("de")
        extension = scope["extensions"][RECEIVE_NOW]

        def receive_now(message: dict[str, Any]) -> bool:
            text = message["text"]
            if text in ("leave", "busy", "stop"):
                return False
            taken.append((text, page_language.get(), asyncio.current_task() is None))
            assert extension["send_text_now"](f"took {text}")
            return True

        task = asyncio.current_task()
        assert task is not None
        # Before the accept, so the client's first message finds it (none is taken before then).
        extension["register"](receive_now, task.get_context())
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            woken.append(message["text"])
            if message["text"] == "busy":
                await asyncio.sleep(0.3)
            if message["text"] == "stop":
                extension["register"](None)
            await send({"type": "websocket.send", "text": f"received {message['text']}"})

    # No permessage-deflate (as config.serve): a compressed connection is always left to the queue.
    async with (
        serving(app, LeanWebSocketsProtocol) as port,
        connect(f"ws://127.0.0.1:{port}/", compression=None) as ws,
    ):
        for n in range(5):
            await ws.send(f"m{n}")
            assert await ws.recv() == f"took m{n}"
        await ws.send("leave")
        assert await ws.recv() == "received leave"
        await ws.send("busy")
        await asyncio.sleep(0.05)  # the app is busy with it: the next message waits for it
        await ws.send("m5")
        assert [await ws.recv() for _ in range(2)] == ["received busy", "received m5"]
        await ws.send("m6")
        assert await ws.recv() == "took m6"
        await ws.send("stop")
        assert await ws.recv() == "received stop"
        await ws.send("m7")
        assert await ws.recv() == "received m7"
    assert taken == [(f"m{n}", "de", True) for n in (0, 1, 2, 3, 4, 6)]
    assert woken == ["leave", "busy", "m5", "stop", "m7"]


async def test_a_compressed_connection_takes_every_message_through_the_queue() -> None:
    """With permessage-deflate the protocol cannot write an answer at once (`sent_text_now`
    leaves compression to uvicorn), so a registered receiver is never handed a message: every
    one comes through `receive()`."""
    taken: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        task = asyncio.current_task()
        assert task is not None

        def receive_now(message: dict[str, Any]) -> bool:
            taken.append(message["text"])
            return True

        scope["extensions"][RECEIVE_NOW]["register"](receive_now, task.get_context())
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": f"received {message['text']}"})

    async with serving(app, LeanWebSocketsProtocol) as port, connect(f"ws://127.0.0.1:{port}/") as ws:
        assert ws.protocol.extensions, "the client offers permessage-deflate by default"
        for n in range(3):
            await ws.send(f"m{n}")
            assert await ws.recv() == f"received m{n}"
    assert taken == []
