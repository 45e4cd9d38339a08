"""The event loop's pipelined Redis connection (config/redis_wire.py), against the real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from urllib.parse import urlparse

import pytest
import uvloop
from django.core.exceptions import ImproperlyConfigured
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from config.redis_wire import Subscription, WireAddress, WireClient, pack_command, replies

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")


def on_both_loops(scenario: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[Callable[[], Any]], None]:
    """A test run on asyncio's own loop and on uvloop's (the servers' loop: its transports are
    not asyncio's classes)."""

    @pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
    def test(loop_factory: Callable[[], Any]) -> None:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(asyncio.wait_for(scenario(), 10))  # a reply never matched hangs: fail instead

    test.__name__, test.__doc__ = scenario.__name__, scenario.__doc__
    return test


def _client(url: str | None = None) -> WireClient:
    return WireClient(WireAddress.from_url(url or os.environ["REDIS_URL"]))


class _CountingTransport:
    """The connection's transport, counting writes (uvloop's transport attributes are read-only)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport, self.writes = transport, 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _key() -> str:
    return f"parley-test:wire:{uuid.uuid4().hex}"


@on_both_loops
async def test_commands_asked_in_one_turn_leave_in_one_write_and_are_answered_in_order() -> None:
    client = _client()
    key = _key()
    try:
        assert await client.execute("SET", key, b"0") == b"OK"  # connected
        protocol = client.protocol
        assert protocol is not None and protocol.transport is not None
        counting = _CountingTransport(protocol.transport)
        protocol.transport = counting  # type: ignore[assignment]
        futures = [client.send("INCR", key) for _ in range(200)]
        futures.append(client.send("GET", key))
        answers = await replies(futures)
        assert answers == [*range(1, 201), b"200"]
        assert counting.writes == 1
    finally:
        await client.execute("DEL", key)
        client.close()


@on_both_loops
async def test_an_error_reply_fails_its_own_command_only() -> None:
    client = _client()
    key = _key()
    try:
        await client.execute("SET", key, b"not a number")
        wrong, right = client.send("INCR", key), client.send("GET", key)
        with pytest.raises(ResponseError, match="not an integer"):
            await wrong
        assert await right == b"not a number"
        with pytest.raises(NoScriptError):
            await client.execute("EVALSHA", "0" * 40, 0)
        # `replies` waits for every answer, then raises the first error.
        batch = [client.send("GET", key), client.send("INCR", key), client.send("STRLEN", key)]
        with pytest.raises(ResponseError):
            await replies(batch)
        assert all(future.done() for future in batch)
        assert batch[2].result() == len(b"not a number")
    finally:
        await client.execute("DEL", key)
        client.close()


@on_both_loops
async def test_a_caller_that_stops_waiting_does_not_shift_the_replies_of_the_others() -> None:
    client = _client()
    first, second = _key(), _key()
    try:
        await client.execute("MSET", first, b"1", second, b"2")
        abandoned = client.send("GET", first)
        kept = client.send("GET", second)
        abandoned.cancel()
        assert await kept == b"2"
        assert await client.execute("MGET", first, second, _key()) == [b"1", b"2", None]
    finally:
        await client.execute("DEL", first, second)
        client.close()


@on_both_loops
async def test_commands_whose_reply_is_discarded_resolve_to_none_once_redis_answered() -> None:
    client = _client()
    try:
        answered = client.send_discarding_reply("PUBLISH", _key(), b"nobody listens")
        await answered
        assert answered.result() is None
        with pytest.raises(ResponseError):
            await client.send_discarding_reply("PUBLISH", _key())  # wrong number of arguments
    finally:
        client.close()


@on_both_loops
async def test_a_lost_connection_fails_what_waits_on_it_and_the_next_command_reconnects() -> None:
    client = _client()
    killer = aioredis.from_url(os.environ["REDIS_URL"])
    try:
        client_id = await client.execute("CLIENT", "ID")
        waiting = client.send("BLPOP", _key(), 5)  # blocks on the connection until it is killed
        await asyncio.sleep(0.05)
        assert await killer.execute_command("CLIENT", "KILL", "ID", client_id) == 1
        with pytest.raises(RedisConnectionError, match="lost"):
            await asyncio.wait_for(waiting, 2)
        assert await client.execute("PING") == b"PONG"
        assert await client.execute("CLIENT", "ID") != client_id
    finally:
        client.close()
        await killer.aclose()


@on_both_loops
async def test_no_redis_at_the_address_fails_every_queued_command_with_a_clear_error() -> None:
    client = WireClient(WireAddress(host="127.0.0.1", port=1))  # nothing listens on port 1
    queued = [client.send("PING"), client.send("PING")]
    for future in queued:
        with pytest.raises(RedisConnectionError, match=r"Could not connect to Redis at 127\.0\.0\.1:1"):
            await future


@on_both_loops
async def test_the_url_database_is_selected_before_any_command() -> None:
    seventh = urlparse(os.environ["REDIS_URL"])._replace(path="/7").geturl()
    client = _client(seventh)
    other = aioredis.from_url(seventh)
    key = _key()
    try:
        await client.execute("SET", key, b"in seven")
        assert await other.get(key) == b"in seven"
    finally:
        await other.delete(key)
        await other.aclose()
        client.close()


@on_both_loops
async def test_a_database_redis_refuses_fails_the_commands_instead_of_running_them_on_another() -> None:
    missing = urlparse(os.environ["REDIS_URL"])._replace(path="/4096").geturl()  # past `databases`
    client = _client(missing)
    key = _key()
    written = client.send("SET", key, b"on the wrong database?")
    with pytest.raises(RedisConnectionError, match="refused the connection's SELECT: ERR DB index is out of range"):
        await written
    checker = aioredis.from_url(os.environ["REDIS_URL"])
    try:
        assert await checker.exists(key) == 0  # not written on database 0 either
    finally:
        await checker.aclose()
        client.close()


@on_both_loops
async def test_the_url_password_is_sent_first_and_a_refusal_fails_the_commands() -> None:
    parsed = urlparse(os.environ["REDIS_URL"])
    if parsed.password:
        pytest.skip("this Redis has a password: the wrong one is not known here")
    # This Redis has no password, so it refuses any AUTH: proof the password went out first.
    with_password = parsed._replace(netloc=f":not-the-password@{parsed.hostname}:{parsed.port or 6379}").geturl()
    client = _client(with_password)
    try:
        with pytest.raises(RedisConnectionError, match="refused the connection's AUTH"):
            await client.execute("PING")
    finally:
        client.close()


@on_both_loops
async def test_a_large_reply_read_in_many_pieces_is_one_reply() -> None:
    client = _client()
    key = _key()
    value = os.urandom(3 * 1024 * 1024)
    try:
        await client.execute("SET", key, value)
        got, length = client.send("GET", key), client.send("STRLEN", key)
        assert await got == value
        assert await length == len(value)
    finally:
        await client.execute("DEL", key)
        client.close()


def test_addresses_from_urls_and_layer_hosts() -> None:
    plain = WireAddress.from_url("redis://cache.internal:6380/3")
    assert (plain.host, plain.port, plain.db, plain.tls, plain.password) == ("cache.internal", 6380, 3, False, None)
    secret = WireAddress.from_url("rediss://parley:s%3Acret@cache.internal/0")
    assert (secret.username, secret.password, secret.tls, secret.port) == ("parley", "s:cret", True, 6379)
    socket = WireAddress.from_url("unix:///run/redis.sock?db=2")
    assert (socket.path, socket.db) == ("/run/redis.sock", 2)
    assert WireAddress.from_layer_host({"address": "redis://127.0.0.1:6379/1"}).db == 1
    pair = WireAddress.from_layer_host({"host": "10.0.0.5", "port": 6390})
    assert (pair.host, pair.port) == ("10.0.0.5", 6390)
    with pytest.raises(ImproperlyConfigured, match="redis://"):
        WireAddress.from_url("http://127.0.0.1:6379")
    with pytest.raises(ImproperlyConfigured, match="not a number"):
        WireAddress.from_url("redis://127.0.0.1/zero")
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        WireAddress.from_layer_host({"master_name": "main", "sentinels": [("10.0.0.1", 26379)]})


def test_commands_are_packed_as_redis_reads_them() -> None:
    assert pack_command(("SET", "k", b"v\r\n", 7, 0.5)) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$1\r\n7\r\n$3\r\n0.5\r\n"
    )
    assert pack_command(("GET", "ü")) == b"*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xbc\r\n"
    with pytest.raises(TypeError, match="not bool"):
        pack_command(("SET", "k", True))
    with pytest.raises(TypeError, match="not NoneType"):
        pack_command(("GET", None))


# --- the subscriber connection (Subscription: what the channel layer's shards receive with) ----


class _Received:
    """What a Subscription delivered, in order; `until` waits for a count."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.fail_on = fail_on

    def __call__(self, channel: bytes, data: bytes) -> None:
        if data == self.fail_on:
            raise ValueError("this receiver fails on this message")
        self.messages.append((channel.decode(), data))

    async def until(self, count: int) -> list[tuple[str, bytes]]:
        for _ in range(200):
            if len(self.messages) >= count:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # and nothing more arrives
        return self.messages


@contextlib.asynccontextmanager
async def _subscribed(received: _Received) -> AsyncIterator[tuple[Subscription, WireClient]]:
    """A subscription delivering to `received`, and a client to publish with; both closed after."""
    subscription = Subscription(WireAddress.from_url(os.environ["REDIS_URL"]), received)
    publisher = _client()
    try:
        yield subscription, publisher
    finally:
        await subscription.close()
        publisher.close()


@on_both_loops
async def test_a_subscription_is_confirmed_before_subscribe_returns_and_delivers_in_order() -> None:
    received = _Received()
    channel = _key()
    async with _subscribed(received) as (subscription, publisher):
        # Concurrent subscribes of one channel: one SUBSCRIBE, both return once Redis confirmed it,
        # so a message published the moment either returns is delivered.
        await asyncio.gather(subscription.subscribe(channel), subscription.subscribe(channel))
        assert await publisher.execute("PUBSUB", "NUMSUB", channel) == [channel.encode(), 1]
        for n in range(5):
            publisher.send("PUBLISH", channel, f"m{n}")
        assert await received.until(5) == [(channel, f"m{n}".encode()) for n in range(5)]
        assert subscription.channels == {channel} and not subscription.confirming


@on_both_loops
async def test_a_receiver_that_fails_on_one_message_gets_the_next_ones() -> None:
    received = _Received(fail_on=b"bad")
    channel = _key()
    async with _subscribed(received) as (subscription, publisher):
        await subscription.subscribe(channel)
        for data in ("before", "bad", "after"):
            publisher.send("PUBLISH", channel, data)
        assert await received.until(2) == [(channel, b"before"), (channel, b"after")]


@on_both_loops
async def test_unsubscribed_channels_deliver_nothing_and_close_forgets_every_channel() -> None:
    received = _Received()
    kept, left = _key(), _key()
    async with _subscribed(received) as (subscription, publisher):
        await subscription.subscribe(kept)
        await subscription.subscribe(left)
        await subscription.unsubscribe(left)
        await subscription.unsubscribe(left)  # not subscribed any more: nothing to do
        assert await publisher.execute("PUBSUB", "NUMSUB", kept, left) == [kept.encode(), 1, left.encode(), 0]
        publisher.send("PUBLISH", left, "to nobody")
        publisher.send("PUBLISH", kept, "kept")
        assert await received.until(1) == [(kept, b"kept")]
        await subscription.close()
        await asyncio.sleep(0.05)
        assert subscription.channels == set()
        assert await publisher.execute("PUBSUB", "NUMSUB", kept) == [kept.encode(), 0]
        # Usable again after close: a new connection.
        await subscription.subscribe(left)
        publisher.send("PUBLISH", left, "again")
        assert await received.until(2) == [(kept, b"kept"), (left, b"again")]


@on_both_loops
async def test_a_lost_subscription_connects_again_and_subscribes_to_every_channel_first() -> None:
    received = _Received()
    first, second = _key(), _key()
    async with _subscribed(received) as (subscription, publisher):
        await subscription.subscribe(first)
        await subscription.subscribe(second)
        assert subscription.protocol is not None and subscription.protocol.transport is not None
        host, port = subscription.protocol.transport.get_extra_info("sockname")[:2]
        killed = subscription.protocol
        assert await publisher.execute("CLIENT", "KILL", "ADDR", f"{host}:{port}", "SKIPME", "no") == 1
        # Reconnected on its own (no command asked for it), both channels subscribed again.
        for _ in range(200):
            numsub = await publisher.execute("PUBSUB", "NUMSUB", first, second)
            if subscription.protocol not in (None, killed) and numsub == [first.encode(), 1, second.encode(), 1]:
                break
            await asyncio.sleep(0.01)
        assert numsub == [first.encode(), 1, second.encode(), 1]
        publisher.send("PUBLISH", first, "one")
        publisher.send("PUBLISH", second, "two")
        assert await received.until(2) == [(first, b"one"), (second, b"two")]


@on_both_loops
async def test_subscribing_with_no_redis_at_the_address_fails_with_a_clear_error() -> None:
    subscription = Subscription(WireAddress(host="127.0.0.1", port=1), _Received())
    try:
        with pytest.raises(RedisConnectionError, match=r"Could not connect to Redis at 127\.0\.0\.1:1"):
            await subscription.subscribe("anything")
    finally:
        await subscription.close()
