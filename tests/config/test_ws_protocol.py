"""config/ws_protocol.py: uvicorn's sans-I/O websocket protocol with a lighter receive queue and
writable flag, and without the handshake's request and response once it is complete."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect

from config.serve import server_command
from config.ws_protocol import Flag, LeanWebSocketsProtocol, ReceiveQueue
from tests.conftest import free_port


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

    port = free_port()
    config = uvicorn.Config(echo, host="127.0.0.1", port=port, ws=Recording, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            for n in range(3):
                await ws.send(f"hi {n}")
                assert await ws.recv() == f"echo hi {n}"
            (protocol,) = protocols
            assert protocol.handshake_complete
            assert protocol.request is None and protocol.response is None
            assert isinstance(protocol.queue, ReceiveQueue) and protocol.queue.empty()
            assert isinstance(protocol.writable, Flag) and protocol.writable.is_set()
    finally:
        server.should_exit = True
        await serving


def test_config_serve_runs_uvicorn_with_the_lean_protocol_by_default() -> None:
    command = server_command("uvicorn", 3)
    assert command[command.index("--ws") + 1] == "config.ws_protocol:LeanWebSocketsProtocol"
    command = server_command("uvicorn", 3, ws="websockets-sansio")
    assert command[command.index("--ws") + 1] == "websockets-sansio"
