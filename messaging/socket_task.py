"""One task per idle websocket: the socket's own ASGI task reads the client; layer messages are
dispatched by a task that exists only while some are waiting.

Channels runs every consumer as `await_many_dispatch([receive, channel_receive])`: two tasks
besides the socket's own (one blocked on the server's queue, one on the channel layer's
per-channel `asyncio.Queue`, itself fed by a Redis subscription per socket), re-created after
every message, plus an `asyncio.wait` per message. Idle, a socket held three tasks, two queues
and a Redis channel for nothing (issue 9: 10,000 idle sockets on one process).

Here, with the Redis layer (config.layers), a consumer is *attached* to the process's layer: the
group messages the process receives on its one subscription per group are handed to the
consumer's `deliver` callback, which appends them to a deque made on demand and starts a drain
task if none runs; the task dispatches them one by one, in arrival order, and ends when the
deque is empty. The socket's own task loops on `receive()` and dispatches client messages itself.
Layer messages wait until `connect` returned (as before: Channels dispatched nothing in between).

Differences from Channels' loop, on purpose:
- a layer handler and a client message's handler may interleave at an `await` (they did not,
  but a slow layer handler, e.g. a catch-up from PostgreSQL, no longer delays reading the client);
  the consumers keep their ordering with their own delivery lock, and client frames are only
  queued by the socket's task (messaging.consumers);
- a layer handler that fails closes the socket with 1011 (the server's answer to an app that
  raised, as before), logged; one whose client is gone (OSError on send) just stops.

Any other layer (the in-memory one of development without Redis) runs Channels' loop unchanged.

Also per idle socket (issue 9): `as_asgi` returns the consumer's own coroutine instead of
awaiting it in one more (config.websocket.frameless); once `connect` was handled the scope drops
what only the handshake reads (config.websocket.slim_scope); and the socket's end is reported to
config.memory (which returns the memory of a burst of closed sockets to the OS).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from config import memory
from config.websocket import frameless, slim_scope
from config.ws_protocol import RECEIVE_NOW

logger = logging.getLogger("parley.messaging")

CLOSE_INTERNAL_ERROR = 1011


class OneTaskWebsocketConsumer(AsyncWebsocketConsumer):
    _layer_inbox: deque[dict[str, Any]] | None = None
    _layer_drain: asyncio.Task[None] | None = None
    _layer_ready = False
    _attached = False
    _stop_receiving_now: Any = None  # the server's register(None) once registered

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        """Channels' as_asgi, returning the consumer's coroutine instead of awaiting it in one
        of its own (a coroutine less per socket, for the socket's whole life)."""

        def app(scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
            return cls(**initkwargs)(scope, receive, send)  # type: ignore[no-any-return]

        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        app._asgi_single_callable = True  # type: ignore[attr-defined]
        functools.update_wrapper(app, cls, updated=())
        return frameless(app)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        memory.socket_started()
        try:
            layer = get_channel_layer(self.channel_layer_alias)
            attach = getattr(layer, "attach_local", None) if layer is not None else None
            if attach is None:
                await super().__call__(scope, receive, send)
                return
            self.scope = scope
            self.channel_layer = layer
            self.base_send = send
            self.channel_name = attach(self.deliver)
            self._attached = True
            try:
                while True:
                    await self.dispatch(await receive())
                    if not self._layer_ready:
                        # The first message is websocket.connect: layer messages wait until it was handled.
                        self._layer_ready = True
                        self.connect_handled()
                        self._start_drain()
            except StopConsumer:
                pass
        finally:
            try:
                if self._stop_receiving_now is not None:
                    self._stop_receiving_now(None)
                    self._stop_receiving_now = None
                self.stop_layer_dispatch()
                await self.ended()
            finally:
                memory.socket_ended()

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # The close codes are an IntEnum (config.websocket.CloseCode); Daphne's websocket library
        # (autobahn) takes only an exact int and raised on the enum, so the socket stayed open
        # and answered nothing after a seat was removed or its session ended.
        if isinstance(code, int) and not isinstance(code, bool):
            code = int(code)
        await super().close(code, reason)

    def connect_handled(self) -> None:
        """websocket.connect was handled: what only the handshake reads leaves the scope."""
        slim_scope(self.scope)
        self.take_messages_now()

    def receive_now(self, message: dict[str, Any]) -> bool:
        """Take a client message synchronously (True), or leave it to `dispatch` (False)."""
        return False

    def send_text_now(self, text: str) -> bool:
        """Write a text frame at once (True), or nothing (False: send it the usual way)."""
        return False

    def take_messages_now(self) -> None:
        """With config.serve's protocol (the ASGI extension `parley.receive_now`) a subclass's
        `receive_now` is handed each client message that arrives while this task waits for one,
        within the server's step that read it and in this task's context (its language and
        other context variables), instead of this task being woken for it on a later turn of
        the loop. Messages arriving while this task is busy, or that `receive_now` leaves, come
        through `receive()` in their order."""
        extension = self.scope.get("extensions", {}).pop(RECEIVE_NOW, None)
        task = asyncio.current_task()
        if extension is None or task is None or type(self).receive_now is OneTaskWebsocketConsumer.receive_now:
            return
        self.send_text_now = extension["send_text_now"]  # type: ignore[method-assign]
        register = extension["register"]
        register(self.receive_now, task.get_context())
        self._stop_receiving_now = register

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # As in Channels' loop, no layer message is dispatched once the client is gone.
        self.stop_layer_dispatch()
        await super().websocket_disconnect(message)

    async def ended(self) -> None:
        """Whatever way the socket ended (a close, a refused handshake, the server cancelling
        the consumer): the subclass's clean-up. Here, not in an override of `__call__`, so a
        socket's task keeps one coroutine less for its whole life."""

    def deliver(self, message: dict[str, Any]) -> None:
        """Called by the layer, on the loop, for each group message (shared between the local
        sockets of the group: never mutated)."""
        if self._layer_inbox is None:
            self._layer_inbox = deque()
        self._layer_inbox.append(message)
        self._start_drain()

    def _start_drain(self) -> None:
        if self._layer_ready and self._layer_inbox and self._layer_drain is None and self._attached:
            self._layer_drain = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            while self._layer_inbox:
                message = self._layer_inbox.popleft()
                try:
                    await self.dispatch(message)
                except OSError:
                    # The client left (uvicorn raises ClientDisconnected, an OSError, on a send to a
                    # closed socket): the socket's task is told by the server and ends it.
                    logger.debug("layer message %s: client gone", message.get("type"))
                    self._layer_inbox = None
                    return
                except Exception:
                    logger.exception("layer message %s failed; closing the socket", message.get("type"))
                    self._layer_inbox = None
                    try:
                        await self.close(CLOSE_INTERNAL_ERROR)
                    except Exception:  # already closing or gone: the socket's task ends it
                        logger.debug("could not close after a failed layer message", exc_info=True)
                    return
            self._layer_inbox = None  # an idle socket keeps no deque
        finally:
            self._layer_drain = None

    def stop_layer_dispatch(self) -> None:
        """The socket ended: drop what waits, stop the drain, take the callback out of the layer
        (its groups may be left before or after: group_discard needs nothing of the channel)."""
        self._layer_inbox = None
        if self._layer_drain is not None:
            self._layer_drain.cancel()
            self._layer_drain = None
        if self._attached:
            self._attached = False
            self.channel_layer.detach_local(self.channel_name)
