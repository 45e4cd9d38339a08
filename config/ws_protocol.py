"""uvicorn's sans-I/O websocket protocol, holding less per idle connection (`config.serve`'s
default `--ws`; issue 9: 10,000 idle sockets on one process).

`uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol` keeps, for the
whole life of every connection (measured with `bench/idle_sockets.py --trace`, per socket):
- an `asyncio.Queue` for the messages the app has not received yet: four deques of 0.7 KiB each
  (items, getters, putters, and the `join()` event's waiters), 2.5–3 KiB, although one task
  ever waits on it and it is empty while the socket is idle;
- an `asyncio.Event` for "the transport may be written to" (one more deque);
- the handshake's request and response (their headers: ~3.5 KiB), which nothing reads after
  the handshake (the ASGI scope has its own copy of the request headers).

Here the queue and the event are small objects of their own with the same behaviour for the
ways uvicorn uses them (`put_nowait`/`get`/`empty`; `set`/`clear`/`wait`), and the handshake
objects are dropped once the handshake is complete. Everything else is uvicorn's, so the
protocol (frames, close handshake, keepalive pings, flow control) is unchanged. Written against
uvicorn 0.54; `tests/config/test_ws_protocol.py` checks the attributes it relies on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class ReceiveQueue:
    """An unbounded FIFO for one consumer at a time: a deque only while items wait, and one
    future only while the consumer waits."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("ReceiveQueue.get() is already being awaited")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        assert self._items is not None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

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


class LeanWebSocketsProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The handshake is over: nothing reads its request or response again.
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]
