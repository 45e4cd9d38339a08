"""One pipelining Redis connection per event loop and server, for the commands a server process
sends for nearly every websocket frame: the rights versions' MGET, the send tokens' EVALSHA and
the channel layer's PUBLISH.

redis-py's asyncio client costs 50–100 µs of the loop's CPU per command (a connection taken from
its pool and given back, retry and timeout wrappers, a pure-Python reply parser) and writes each
command, or each pipeline, with a system call of its own. Here a command is packed and appended to
the connection's output, every command asked for in one turn of the loop leaves in one write, and
replies are parsed by hiredis and handed to the waiting futures in order: 4–6 µs a command when
many are in flight, 40 µs for a lone one (figures: the README's benchmarks, session 20).

Replies are matched to commands by order (Redis answers in order on one connection), so a caller
that stops waiting (cancelled) leaves its future to be resolved and ignored, never a reply to be
read by the next command. A lost connection fails every command waiting on it with
`redis.exceptions.ConnectionError`; the next command connects again. Errors use redis-py's
exception classes, so callers catch the same errors whichever client they talk to.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

CONNECT_TIMEOUT = 5.0

_CRLF = b"\r\n"


def pack_command(args: tuple[Any, ...]) -> bytes:
    """A command in Redis's wire format (RESP): bytes as they are, str as UTF-8, numbers as text."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            data = repr(arg).encode()
        else:
            raise TypeError(f"a Redis command argument must be bytes, str, int or float, not {type(arg).__name__}")
        parts += (b"$%d\r\n" % len(data), data, _CRLF)
    return b"".join(parts)


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
            future, wanted = waiting.popleft()
            if future.done():  # its caller stopped waiting
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_reply_error(str(reply)))
            else:
                future.set_result(reply if wanted else None)

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
                if address.path is not None:
                    _transport, protocol = await loop.create_unix_connection(lambda: _WireProtocol(loop), address.path)
                else:
                    _transport, protocol = await loop.create_connection(
                        lambda: _WireProtocol(loop),
                        address.host,
                        address.port,
                        ssl=ssl.create_default_context() if address.tls else None,
                    )
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
