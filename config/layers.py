"""The Redis pub/sub channel layer, with publishes pipelined.

channels_redis's `RedisPubSubChannelLayer` publishes one message per round trip, under the same
per-process lock as every subscribe and unsubscribe: at a few thousand publishes a second (each
send fans out to several groups, plus typing, presence and list batches) every `group_send` of
the process queues behind the others, and a socket's `view` (a subscribe) waits behind all of
them. Measured under the inbox load (issue 9) this lock was where the live frames' seconds of
latency came from.

Here publishes go through their own connection (`config.redis_wire`), never the subscriber's
lock: each is queued at once (in call order), and whatever is published in one turn of the event
loop leaves in one write (`PUBLISH` × n, pipelined, answered in order). `group_send` still
returns only once its message is published (or raises if Redis failed), so callers keep the
layer's contract; messages published from one task keep their order, and so do messages queued
without awaiting in between.

A message may be queued `heard_only` (`group_send_nowait`): published only if some process
subscribes to its group when Redis answers about it. One `PUBSUB NUMSUB` asks Redis for the
subscribers of all such groups published meanwhile (the messages behind them are held, in order,
until the answer), and the messages of groups nobody listens to are dropped before they are
serialized. For stored events (messaging.events: a
commit's message to the processes with sockets of its business, the customers' /me/ updates)
that is what publishing them would have done — nobody would have received them — while their
cost (msgpack, packing, Redis's fan-out) is never paid: a notifications delivery job writes
to 100 customers at a time, of whom few have a page open. A socket whose subscription comes
after the question misses the message exactly as it would have missed a publish made before its
subscription reached Redis: its resume, read after it subscribed, replays it.

Sockets of this process are attached, not subscribed (`attach_local`, used by
messaging.consumers): Channels gives every consumer a channel of its own — a Redis SUBSCRIBE, an
`asyncio.Queue` and a task blocked on it, for the life of the socket — although Parley's sockets
are reached through groups only. An attached socket has none of these: it is a callback in the
process's table, and a group message that arrives on the process's one subscription to the group
is decoded once and handed to the callback of every local socket in it (the process-level
fan-out registry is `groups`: group channel -> channel names, as in channels_redis). Nothing is
sent to an attached socket's own channel name (it is still unique, for presence rows).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close
from redis.exceptions import RedisError

from config.redis_wire import Subscription, WireAddress, WireClient

_Held = tuple[str, bytes | tuple[dict[str, Any], Any], asyncio.Future[Any]]


def _settle(future: asyncio.Future[Any], sent: asyncio.Future[Any] | None, error: Exception | None = None) -> None:
    """Resolve a held message's future when its publish is answered (`sent`), at once (dropped:
    nobody subscribes), or with `error`."""
    if future.done():
        return
    if sent is None:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
        return

    def copy(done: asyncio.Future[Any]) -> None:
        if future.done():
            return
        if done.cancelled():
            future.cancel()
        elif (failure := done.exception()) is not None:
            future.set_exception(failure)
        else:
            future.set_result(None)

    sent.add_done_callback(copy)


class _Publisher:
    """One shard's publishing connection (`config.redis_wire`: whatever is published in one turn
    of the loop leaves in one write, in call order)."""

    def __init__(self, host: dict[str, Any]) -> None:
        self.client = WireClient(WireAddress.from_layer_host(host))
        # Messages published while a heard-only one waits for its PUBSUB NUMSUB answer: held, in
        # order, behind it (None: nothing waits, a publish goes out at once).
        self.held: list[_Held] | None = None
        self.task: asyncio.Task[None] | None = None

    def publish(self, channel: str, data: bytes | tuple[dict[str, Any], Any]) -> asyncio.Future[None]:
        """Sent now, or held behind a heard-only message still being asked about (so call order is
        publish order); the future resolves once Redis answered. `data` is the serialized message,
        or (message, serialize) to publish only if some process subscribes to `channel`
        (serialized only then)."""
        if self.held is None:
            if isinstance(data, bytes):
                return self.client.send_discarding_reply("PUBLISH", channel, data)
            self.held = []
            self.task = asyncio.ensure_future(self._release_held())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.held.append((channel, data, future))
        return future

    async def _release_held(self) -> None:
        """Ask which held heard-only messages' groups have subscribers, then send the held messages
        in order up to the next heard-only one asked about later (or all of them)."""
        held = self.held
        assert held is not None
        try:
            while held:
                await self._release_asked(held)
        finally:
            # Stopped (the loop closing) or failed: whatever is still held fails now, and the next
            # publish goes out at once instead of queueing behind a task that is gone.
            for _channel, _data, future in held:
                if not future.done():
                    future.cancel()
            self.held = None

    async def _release_asked(self, held: list[_Held]) -> None:
        asked_upto = len(held)
        asked = sorted({channel for channel, data, _future in held[:asked_upto] if not isinstance(data, bytes)})
        try:
            answer = await self.client.send("PUBSUB", "NUMSUB", *asked)
        except (RedisError, OSError) as error:
            for _channel, _data, future in held[:asked_upto]:
                _settle(future, None, error)
            del held[:asked_upto]
            return
        heard = {name.decode() for name, count in zip(answer[::2], answer[1::2], strict=True) if count}
        for channel, data, future in held[:asked_upto]:
            if isinstance(data, bytes):
                _settle(future, self.client.send_discarding_reply("PUBLISH", channel, data))
            elif channel in heard:
                message, serialize = data
                try:
                    serialized = serialize(message)
                except Exception as error:  # this message only: the others still go out
                    _settle(future, None, error)
                    continue
                _settle(future, self.client.send_discarding_reply("PUBLISH", channel, serialized))
            else:
                _settle(future, None)
        del held[:asked_upto]
        # Messages held meanwhile: go out now, up to the first heard-only one (asked next).
        while held and isinstance(held[0][1], bytes):
            channel, data, future = held.pop(0)
            assert isinstance(data, bytes)
            _settle(future, self.client.send_discarding_reply("PUBLISH", channel, data))

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            await asyncio.wait([self.task], timeout=5)
        self.client.close()


# Channel tables smaller than this are not worth rebuilding (detach_local).
COMPACT_CHANNELS_FROM = 4096


class LocalChannel:
    """An attached socket in the layer's channel table: its delivery callback instead of a queue."""

    __slots__ = ("deliver",)

    def __init__(self, deliver: Callable[[dict[str, Any]], None]) -> None:
        self.deliver = deliver


class _Shard(RedisSingleShardConnection):
    """channels_redis's shard connection, subscribed through `config.redis_wire.Subscription`
    (each message delivered from the connection's read callback) instead of redis-py's PubSub
    read by a task one `get_message` at a time. Publishing is the layer's (`_Publisher`)."""

    def __init__(self, host: dict[str, Any], channel_layer: Any) -> None:
        super().__init__(host, channel_layer)
        self.subscription = Subscription(WireAddress.from_layer_host(host), self._receive)
        # The channels this process subscribes to (channels_redis's name for them).
        self._subscribed_to = self.subscription.channels

    async def subscribe(self, channel: str) -> None:
        await self.subscription.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self.subscription.unsubscribe(channel)

    async def flush(self) -> None:
        await self.subscription.close()
        await super().flush()
        self._subscribed_to = self.subscription.channels

    def _receive(self, raw_name: bytes, data: bytes) -> None:
        """A message on a subscribed channel: attached sockets get it decoded (once per Redis
        message, whatever the number of local sockets in the group: they must not mutate it)
        through their callback; channels of ordinary consumers get the raw bytes queued."""
        name = raw_name.decode()
        layer: Any = self.channel_layer
        if name in layer.channels:
            targets: Any = (name,)
        elif name in layer.groups:
            targets = tuple(layer.groups[name])  # a callback may not change the set, but be safe
        else:
            return
        decoded: dict[str, Any] | None = None
        for channel_name in targets:
            target = layer.channels.get(channel_name)
            if target is None:
                continue
            if isinstance(target, LocalChannel):
                if decoded is None:
                    decoded = layer.channel_layer.deserialize(data)
                target.deliver(decoded)
            else:
                target.put_nowait(data)


class PipelinedPubSubLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, hosts: Any = None, **kwargs: Any) -> None:
        super().__init__(hosts, **kwargs)
        inherited: list[Any] = self._shards  # type: ignore[has-type]
        self._shards: list[Any] = [_Shard(shard.host, self) for shard in inherited]
        self._publishers = [_Publisher(shard.host) for shard in self._shards]
        self._channels_peak = 0

    def attach_local(self, deliver: Callable[[dict[str, Any]], None], prefix: str = "specific.") -> str:
        """A channel name for a socket of this process whose group messages go to `deliver`
        (called on the event loop, synchronously, in arrival order). No Redis subscription."""
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
        self.channels[channel] = LocalChannel(deliver)
        self._channels_peak = max(self._channels_peak, len(self.channels))
        return channel

    def detach_local(self, channel: str) -> None:
        """After the socket left its groups (`group_discard`): nothing is delivered to it anymore."""
        self.channels.pop(channel, None)
        # A dict never shrinks its table on deletes: after 10,000 sockets closed the empty
        # channel table kept its 0.2 MiB. Rebuilt in place (callers hold the dict) once it fell to
        # an eighth of its peak: amortised O(1) per socket, and only for large tables.
        if self._channels_peak >= COMPACT_CHANNELS_FROM and len(self.channels) * 8 <= self._channels_peak:
            remaining = list(self.channels.items())
            self.channels.clear()
            self.channels.update(remaining)
            self._channels_peak = len(remaining)

    def _publisher(self, name: str) -> _Publisher:
        return self._publishers[self._shards.index(self._get_shard(name))]

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._publisher(channel).publish(channel, self.channel_layer.serialize(message))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self.group_send_nowait(group, message)

    def group_send_nowait(
        self, group: str, message: dict[str, Any], *, heard_only: bool = False
    ) -> asyncio.Future[None]:
        """Queue now, in call order; the future resolves once it is published (messaging.events
        hands a commit's messages over without awaiting between them). `heard_only`: dropped
        instead if no process subscribes to the group when it would go out (module docstring)."""
        channel = self._get_group_channel_name(group)
        # A group this process subscribes to is heard (a server process watching the business it
        # commits for): publish without asking Redis first, one round trip less per live send.
        if heard_only and channel not in self.groups:
            return self._publisher(channel).publish(channel, (message, self.channel_layer.serialize))
        return self._publisher(channel).publish(channel, self.channel_layer.serialize(message))

    def group_send_local(self, group: str, message: dict[str, Any]) -> None:
        """To this process's members of the group only, without Redis (messaging.events.Relay
        hands every process's commits to its own sockets): an attached socket gets the message
        itself (shared, as from `_Shard._receive`: handlers must not mutate it), an
        ordinary consumer's queue the message serialized once."""
        members = self.groups.get(self._get_group_channel_name(group))
        if not members:
            return
        data: bytes | None = None
        for channel in tuple(members):
            target = self.channels.get(channel)
            if target is None:
                continue
            if isinstance(target, LocalChannel):
                target.deliver(message)
            else:
                if data is None:
                    data = self.channel_layer.serialize(message)
                target.put_nowait(data)

    async def flush(self) -> None:
        for publisher in self._publishers:
            await publisher.close()
        await super().flush()


class PipelinedPubSubChannelLayer(RedisPubSubChannelLayer):
    """`RedisPubSubChannelLayer` with pipelined publishes (see the module docstring)."""

    def _get_layer(self) -> PipelinedPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        try:
            layer = self._layers[loop]
        except KeyError:
            layer = PipelinedPubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer  # type: ignore[no-any-return]
