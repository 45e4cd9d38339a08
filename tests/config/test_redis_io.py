"""The event loop's Redis commands go out through `os.write` (the GIL released for the system
call, config.redis_io) on plain TCP, and arrive whole and in order whatever the socket takes at
once: a command larger than the socket's buffer goes on through the transport, and a command
behind bytes still queued in the transport waits behind them."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvloop
from redis import asyncio as aioredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

from config import redis_io
from config.layers import PipelinedPubSubChannelLayer
from config.redis_io import GilFreeWriteConnection, connection_class_for

needs_redis = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")

LOOPS: dict[str, Callable[[Awaitable[Any]], Any]] = {"uvloop": uvloop.run, "asyncio": asyncio.run}


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The sizes `os.write` was called with, and what it wrote, by config.redis_io."""
    calls: list[int] = []
    real = os.write

    def counting(fd: int, data: Any) -> int:
        calls.append(len(data))
        return real(fd, data)

    monkeypatch.setattr(redis_io.os, "write", counting)
    yield calls


def test_only_plain_tcp_urls_get_the_gil_free_connection() -> None:
    assert connection_class_for("redis://127.0.0.1:6379/0") == {"connection_class": GilFreeWriteConnection}
    assert connection_class_for("rediss://cache.example:6380/0") == {}
    assert connection_class_for("unix:///run/redis.sock") == {}
    assert connection_class_for("") == {}
    # What redis-py then makes of each: TLS and Unix sockets keep their own classes.
    assert (
        aioredis.from_url(
            "rediss://cache.example:6380/0", **connection_class_for("rediss://x")
        ).connection_pool.connection_class
        is SSLConnection
    )
    unix = aioredis.from_url("unix:///run/redis.sock", **connection_class_for("unix:///run/redis.sock"))
    assert unix.connection_pool.connection_class is UnixDomainSocketConnection


@needs_redis
@pytest.mark.parametrize("loop", LOOPS)
def test_commands_go_out_through_os_write_whole_and_in_order(loop: str, writes: list[int]) -> None:
    url = os.environ["REDIS_URL"]
    key = f"parley-test:redis-io:{uuid.uuid4().hex}"
    big = os.urandom(8 * 1024 * 1024)  # far more than a socket takes at once

    async def scenario() -> None:
        client = aioredis.from_url(url, **connection_class_for(url))
        try:
            assert await client.ping()
            await client.set(key, b"small")
            assert await client.get(key) == b"small"
            # A command the socket cannot take at once: the rest goes through the transport,
            # and the commands right behind it (same connection) arrive after it, in order.
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(key, big)
                pipe.strlen(key)
                pipe.append(key, b"!")
                answers = await pipe.execute()
            assert answers == [True, len(big), len(big) + 1]
            await client.set(f"{key}:other", big)
            assert await client.get(key) == big + b"!"
            assert await client.get(f"{key}:other") == big
            pool = client.connection_pool
            assert pool.connection_class is GilFreeWriteConnection
        finally:
            await client.delete(key, f"{key}:other")
            await client.aclose()

    LOOPS[loop](scenario())
    assert writes, "every command went through the transport, none through os.write"
    # The big commands were offered to the socket whole first.
    assert max(writes) > len(big)


@needs_redis
def test_the_channel_layers_publisher_writes_without_the_gil(writes: list[int]) -> None:
    layer = PipelinedPubSubChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=f"t{uuid.uuid4().hex[:6]}")

    async def scenario() -> None:
        try:
            await layer.group_send("parley-test-group", {"type": "probe.message", "text": "hello"})
            publisher = layer._get_layer()._publishers[0]
            assert publisher.redis is not None
            assert publisher.redis.connection_pool.connection_class is GilFreeWriteConnection
        finally:
            await layer.flush()

    uvloop.run(scenario())
    assert writes
