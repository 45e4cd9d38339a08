"""One pipelining Redis connection per event loop and server, for the commands a server process
sends for nearly every websocket frame: the rights versions' MGET, the send tokens' EVALSHA and
the channel layer's PUBLISH.

redis-py's asyncio client costs 50–100 µs of the loop's CPU per command (a connection taken from
its pool and given back, retry and timeout wrappers, a pure-Python reply parser) and writes each
command, or each pipeline, with a system call of its own. Here a command is packed and appended to
the connection's output, every command asked for in one turn of the loop leaves in one write, and
replies are parsed by hiredis and handed to the waiting futures in order: 4–6 µs a command when
many are in flight, 40 µs for a lone one (figures: docs/performance.md, session 20).

Replies are matched to commands by order (Redis answers in order on one connection), so a caller
that stops waiting (cancelled) leaves its future to be resolved and ignored, never a reply to be
read by the next command. A lost connection fails every command waiting on it with
`redis.exceptions.ConnectionError`; the next command connects again. Errors use redis-py's
exception classes, so callers catch the same errors whichever client they talk to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

logger = logging.getLogger("parley.redis")

CONNECT_TIMEOUT = 5.0
# A lost subscriber connection is made again after this, doubling up to RECONNECT_MAX_SECONDS.
RECONNECT_FIRST_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 2.0


def pack_command(args: tuple[Any, ...]) -> bytes:
    """A command in Redis's wire format (RESP): bytes as they are, str as UTF-8, numbers as text.
    hiredis packs it (C, ~4x faster than a Python loop over the arguments: a group's send tokens
    are one command of ~20 arguments); it refuses the same types this names."""
    try:
        return hiredis.pack_command(args)
    except TypeError:
        for arg in args:
            if isinstance(arg, bool) or not isinstance(arg, bytes | str | int | float):
                raise TypeError(
                    f"a Redis command argument must be bytes, str, int or float, not {type(arg).__name__}"
                ) from None
        raise


def _reply_error(message: str) -> ResponseError:
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class _WireProtocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        # (future, whether its caller wants the reply or only to know the command was answered)
        self.waiting: deque[tuple[asyncio.Future[Any], bool]] = deque()
        self.output: list[bytes] = []
        self.flush_scheduled = False
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's: typed only.
        self.transport = cast(asyncio.Transport, transport)

    def queue(self, packed: bytes, future: asyncio.Future[Any], reply: bool = True) -> None:
        self.output.append(packed)
        self.waiting.append((future, reply))
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        output, self.output = self.output, []
        if output and self.transport is not None and self.lost is None:
            self.transport.write(b"".join(output))

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as error:  # not Redis speaking: nothing more can be matched
                self.fail(RedisConnectionError(f"Redis protocol error: {error}"))
                if self.transport is not None:
                    self.transport.close()
                return
            if reply is False:
                return
            if self.pushed(reply):
                continue
            future, wanted = waiting.popleft()
            if future.done():  # its caller stopped waiting
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_reply_error(str(reply)))
            else:
                future.set_result(reply if wanted else None)

    def pushed(self, reply: Any) -> bool:
        """Whether `reply` is something Redis sent unasked (a subscriber's message), handled here
        instead of answering the next command. A command connection gets none."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Connection to Redis lost: {exc or 'closed'}"))

    def fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        self.output = []
        waiting, self.waiting = self.waiting, deque()
        for future, _wanted in waiting:
            if not future.done():
                future.set_exception(error)


class WireAddress:
    """Where and how to connect, from a redis:// rediss:// or unix:// URL (as REDIS_URL) or a
    channels_redis host entry ({"address": url} or {"host": …, "port": …})."""

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
    ) -> None:
        self.host, self.port, self.path, self.db = host, port, path, db
        self.username, self.password, self.tls = username, password, tls

    @classmethod
    def from_url(cls, url: str) -> WireAddress:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ImproperlyConfigured(f"A Redis URL starts with redis://, rediss:// or unix://, not {url!r}.")
        query = parse_qs(parsed.query)
        db_text = query.get("db", [""])[0] or (parsed.path.lstrip("/") if parsed.scheme != "unix" else "") or "0"
        try:
            db = int(db_text)
        except ValueError:
            raise ImproperlyConfigured(f"The Redis database in {url!r} is not a number.") from None
        return cls(
            host=parsed.hostname or "localhost",
            port=parsed.port or 6379,
            path=unquote(parsed.path) if parsed.scheme == "unix" else None,
            db=db,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            tls=parsed.scheme == "rediss",
        )

    @classmethod
    def from_layer_host(cls, host: dict[str, Any]) -> WireAddress:
        if set(host) == {"address"} and isinstance(host["address"], str):
            return cls.from_url(host["address"])
        if set(host) <= {"host", "port"}:
            return cls(host=host.get("host", "localhost"), port=int(host.get("port", 6379)))
        raise ImproperlyConfigured(
            f"Parley's channel layer takes Redis hosts as URLs or (host, port), not {sorted(host)}: "
            "set REDIS_URL (redis://, rediss:// or unix://)."
        )


class WireClient:
    """Commands on one connection, pipelined: `send` queues a command now (so calls in a row go
    in that order) and returns the future of its reply."""

    def __init__(self, address: WireAddress) -> None:
        self.address = address
        self.loop: asyncio.AbstractEventLoop | None = None
        self.protocol: _WireProtocol | None = None
        self.connecting: list[tuple[bytes, asyncio.Future[Any], bool]] | None = None  # queued until connected
        self.connector: asyncio.Task[None] | None = None

    def send(self, *args: Any) -> asyncio.Future[Any]:
        return self._send(args, True)

    def send_discarding_reply(self, *args: Any) -> asyncio.Future[None]:
        """As `send`, for a command whose reply nobody needs (PUBLISH's count of receivers): the
        future resolves to None once Redis answered, or fails as `send`'s would."""
        return self._send(args, False)

    def _send(self, args: tuple[Any, ...], reply: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # a client belongs to one loop (tests run one per test)
            self.loop, self.protocol, self.connecting = loop, None, None
        future: asyncio.Future[Any] = loop.create_future()
        packed = pack_command(args)
        protocol = self.protocol
        if protocol is not None and protocol.lost is None:
            protocol.queue(packed, future, reply)
        else:
            if self.connecting is None:
                self.connecting = []
                self.connector = loop.create_task(self._connect(loop))
            self.connecting.append((packed, future, reply))
        return future

    async def execute(self, *args: Any) -> Any:
        return await self.send(*args)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        address = self.address
        where = address.path or f"{address.host}:{address.port}"
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                protocol = await _open(loop, address, lambda: _WireProtocol(loop))
                # AUTH and SELECT answered before anything else is sent: commands written behind
                # a failed SELECT would run on database 0.
                await _set_up(protocol, address, where)
        except (OSError, TimeoutError, RedisConnectionError) as error:
            failure = error if isinstance(error, RedisConnectionError) else None
            queued, self.connecting = self.connecting or [], None
            for _packed, future, _reply in queued:
                if not future.done():
                    future.set_exception(
                        failure or RedisConnectionError(f"Could not connect to Redis at {where}: {error}")
                    )
            return
        if self.loop is not loop:  # the client moved to another loop meanwhile
            if protocol.transport is not None:
                protocol.transport.close()
            return
        queued, self.connecting = self.connecting or [], None
        for packed, future, reply in queued:
            protocol.queue(packed, future, reply)
        self.protocol = protocol

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None


class _SubscriberProtocol(_WireProtocol):
    """A connection in Redis's subscribed state: a published message is pushed (["message",
    channel, data]) and handed to `deliver` at once, from the loop's read callback; every other
    reply answers the next command (AUTH, SELECT, and one confirmation per channel of a
    SUBSCRIBE or UNSUBSCRIBE, in the order they were sent)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[bytes, bytes], None],
        on_lost: Callable[[_SubscriberProtocol], None],
    ) -> None:
        super().__init__(loop)
        self.deliver = deliver
        self.on_lost = on_lost

    def pushed(self, reply: Any) -> bool:
        if type(reply) is not list or len(reply) != 3 or reply[0] != b"message":
            return False
        try:
            self.deliver(reply[1], reply[2])
        except Exception:  # one message's receiver failing must not end the subscription
            logger.exception("a message on %r could not be delivered", reply[1])
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.on_lost(self)


class Subscription:
    """One connection subscribed to channels, without redis-py's PubSub: channels_redis reads
    its subscription with a task that asks redis-py for one message at a time (`get_message`
    with a timeout, a retry wrapper, its push-message handlers and a logger lookup per message),
    which was most of what receiving a message cost a server process (issue 9: a send's
    wall-clock profile through its socket, docs/performance.md, session 38). Here each message is
    delivered from the connection's read callback as it is parsed by hiredis.

    `subscribe` returns once Redis confirmed the subscription, so what is published after it
    returns is delivered (Relay.watch relies on that: a socket's resume is read afterwards).
    The wanted channels are `channels`; a lost connection is made again (backing off, up to
    RECONNECT_MAX_SECONDS) and subscribes to all of them before anything waits on it — what
    was published meanwhile is missed, as with any channel layer (at most once; clients catch
    up from the stream)."""

    def __init__(self, address: WireAddress, deliver: Callable[[bytes, bytes], None]) -> None:
        self.address = address
        self.deliver = deliver
        self.channels: set[str] = set()
        # The latest SUBSCRIBE of a channel still unconfirmed: a second caller waits for it too.
        self.confirming: dict[str, asyncio.Future[Any]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.protocol: _SubscriberProtocol | None = None
        self.connecting: asyncio.Task[_SubscriberProtocol] | None = None
        self.reconnecting: asyncio.Task[None] | None = None
        self.sending: set[asyncio.Task[None]] = set()  # commands waiting for a connection

    async def subscribe(self, channel: str) -> None:
        if channel not in self.channels:
            self.channels.add(channel)
            future = self._command("SUBSCRIBE", channel)
            self.confirming[channel] = future
            future.add_done_callback(lambda done: self._confirmed(channel, done))
        else:
            pending = self.confirming.get(channel)
            if pending is None:
                if self.protocol is None:  # lost: subscribed again once connected
                    await self._connected()
                return
            future = pending
        try:
            await asyncio.shield(future)
        except RedisConnectionError:
            # Lost on the way: the next connection subscribes to every wanted channel, this one
            # included, before it is handed out.
            await self._connected()

    def _confirmed(self, channel: str, done: asyncio.Future[Any]) -> None:
        retrieve(done)  # a caller that stopped waiting leaves its error unread
        if self.confirming.get(channel) is done:
            del self.confirming[channel]

    async def unsubscribe(self, channel: str) -> None:
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        self.confirming.pop(channel, None)
        with contextlib.suppress(RedisConnectionError):  # lost: a new connection is not subscribed to it
            await self._command("UNSUBSCRIBE", channel)

    def _command(self, *args: Any) -> asyncio.Future[Any]:
        """Sent on the live connection, or once connected; the future is Redis's confirmation."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        protocol = self.protocol
        if self.loop is loop and protocol is not None and protocol.lost is None:
            protocol.queue(pack_command(args), future)
            return future

        async def when_connected() -> None:
            try:
                live = await self._connected()
            except BaseException as error:
                if not future.done():
                    future.set_exception(error)
                return
            live.queue(pack_command(args), future)

        task = loop.create_task(when_connected())
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)
        return future

    async def _connected(self) -> _SubscriberProtocol:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # one loop's (tests run one per test)
            self.loop, self.protocol, self.connecting = loop, None, None
        protocol = self.protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        if self.connecting is None or self.connecting.done():
            self.connecting = loop.create_task(self._connect(loop))
            self.connecting.add_done_callback(retrieve)
        return await asyncio.shield(self.connecting)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _SubscriberProtocol:
        address = self.address
        where = address.path or f"{address.host}:{address.port}"

        def made() -> _SubscriberProtocol:
            return _SubscriberProtocol(loop, self.deliver, self._lost)

        protocol: _SubscriberProtocol | None = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                protocol = await _open(loop, address, made)
                await _set_up(protocol, address, where)
                # Every wanted channel, confirmed, before anyone is told the connection is up.
                confirmations = []
                for channel in sorted(self.channels):
                    confirmed: asyncio.Future[Any] = loop.create_future()
                    protocol.queue(pack_command(("SUBSCRIBE", channel)), confirmed)
                    confirmations.append(confirmed)
                await replies(confirmations)
        except BaseException as error:
            if protocol is not None and protocol.transport is not None:
                protocol.transport.close()
            if isinstance(error, OSError | TimeoutError):
                raise RedisConnectionError(f"Could not connect to Redis at {where}: {error}") from error
            raise
        self.protocol = protocol
        return protocol

    def _lost(self, protocol: _SubscriberProtocol) -> None:
        if protocol is not self.protocol:
            return  # an older connection, closed on purpose or already replaced
        self.protocol = None
        if self.channels and (self.reconnecting is None or self.reconnecting.done()):
            logger.warning("the Redis subscription was lost (%s); connecting again", protocol.lost)
            self.reconnecting = protocol.loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST_SECONDS
        while self.channels and self.protocol is None:
            try:
                await self._connected()
                return
            except RedisError as error:
                logger.warning("the Redis subscription could not connect again (%s); retrying in %.2f s", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def close(self) -> None:
        """Every channel forgotten and the connection closed (a later subscribe connects anew)."""
        self.channels.clear()
        self.confirming.clear()
        for task in (self.reconnecting, self.connecting):
            if task is not None and not task.done():
                task.cancel()
        self.reconnecting = self.connecting = None
        protocol, self.protocol = self.protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


async def _open[P: _WireProtocol](loop: asyncio.AbstractEventLoop, address: WireAddress, made: Callable[[], P]) -> P:
    """A connection to `address` (Unix socket, TCP, or TLS for rediss://) with its protocol."""
    if address.path is not None:
        _transport, protocol = await loop.create_unix_connection(made, address.path)
    else:
        _transport, protocol = await loop.create_connection(
            made, address.host, address.port, ssl=ssl.create_default_context() if address.tls else None
        )
    return protocol


async def _set_up(protocol: _WireProtocol, address: WireAddress, where: str) -> None:
    commands: list[tuple[Any, ...]] = []
    if address.password is not None:
        commands.append(
            ("AUTH", address.username, address.password) if address.username else ("AUTH", address.password)
        )
    if address.db:
        commands.append(("SELECT", address.db))
    for command in commands:
        answered: asyncio.Future[Any] = protocol.loop.create_future()
        protocol.queue(pack_command(command), answered)
        try:
            await answered
        except ResponseError as error:
            if protocol.transport is not None:
                protocol.transport.close()
            raise RedisConnectionError(f"Redis at {where} refused the connection's {command[0]}: {error}") from error


def retrieve(future: asyncio.Future[Any]) -> None:
    """Marks an error nobody waits for as seen (asyncio logs errors never retrieved)."""
    if not future.cancelled():
        future.exception()


async def replies(futures: list[asyncio.Future[Any]]) -> list[Any]:
    """Every reply of commands sent together, in order; the first error is raised once all are in
    (so none is left unretrieved)."""
    results: list[Any] = []
    first_error: BaseException | None = None
    for index, future in enumerate(futures):
        try:
            results.append(await future)
        except (RedisConnectionError, ResponseError) as error:
            first_error = first_error or error
            results.append(error)
        except asyncio.CancelledError:
            for rest in futures[index + 1 :]:
                rest.add_done_callback(retrieve)
            raise
    if first_error is not None:
        raise first_error
    return results
