"""The Redis pub/sub channel layer, with publishes pipelined.

channels_redis's `RedisPubSubChannelLayer` publishes one message per round trip, under the same
per-process lock as every subscribe and unsubscribe: at a few thousand publishes a second (each
send fans out to several groups, plus typing, presence and list batches) every `group_send` of
the process queues behind the others, and a socket's `view` (a subscribe) waits behind all of
them. Measured under the inbox load (issue 9) this lock was where the live frames' seconds of
latency came from.

Here publishes go through their own connection, never the subscriber's lock: each is queued at
once (in call order) and whatever queued while the previous round trip was in flight goes out as
one pipeline (`PUBLISH` × n, one round trip, in order). `group_send` still returns only once its
message is published (or raises if Redis failed), so callers keep the layer's contract; messages
published from one task keep their order, and so do messages queued without awaiting in between.

A message may be queued `heard_only` (`group_send_nowait`): published only if some process
subscribes to its group when its pipeline goes out. One `PUBSUB NUMSUB` asks Redis for the
subscribers of all such groups of a batch, in the round trip that publishes the messages queued
before the first of them, and the messages of groups nobody listens to are dropped before they
are serialized. For stored events (messaging.events: a
commit's message to the processes with sockets of its business, the customers' /me/ updates)
that is what publishing them would have done — nobody would have received them — while their
cost (msgpack, redis-py's packing and parsing) is never paid: a notifications delivery job writes
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
from channels_redis.utils import _close_redis, _wrap_close, create_pool
from redis import asyncio as aioredis

# Publishes per pipeline at most (a larger backlog goes out in several, still in order).
PIPELINE_MAX = 1000


def _settle(
    items: list[tuple[str, bytes | tuple[dict[str, Any], Any], asyncio.Future[None]]], error: Exception | None
) -> None:
    """Resolve the futures of published (or dropped) messages, or fail them with `error`."""
    for _channel, _data, future in items:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class _Publisher:
    """One shard's publishing connection and its queue."""

    def __init__(self, host: dict[str, Any]) -> None:
        self.host = host
        self.redis: aioredis.Redis | None = None
        # (channel, serialized message, or the message and its serializer for a heard-only one,
        # future resolved once it is sent or dropped)
        self.pending: list[tuple[str, bytes | tuple[dict[str, Any], Any], asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None

    def publish(self, channel: str, data: bytes | tuple[dict[str, Any], Any]) -> asyncio.Future[None]:
        """Queue now (so call order is publish order); the future resolves once it is sent.
        `data` is the serialized message, or (message, serialize) to publish only if some process
        subscribes to `channel` (serialized only then)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((channel, data, future))
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        return future

    async def _run(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:PIPELINE_MAX], self.pending[PIPELINE_MAX:]
            # The messages before the first heard-only one go out in the same round trip as the
            # question about the heard-only ones' groups; the rest once it is answered, in order.
            # A live send's commit is queued before its customers' updates (which are asked
            # about): it then reaches the other processes one round trip earlier.
            split = next((i for i, (_c, data, _f) in enumerate(batch) if not isinstance(data, bytes)), len(batch))
            head, tail = batch[:split], batch[split:]
            try:
                if self.redis is None:
                    self.redis = aioredis.Redis(connection_pool=create_pool(self.host))
                asked = sorted({channel for channel, data, _future in tail if not isinstance(data, bytes)})
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, data, _future in head:
                        assert isinstance(data, bytes)  # the head ends at the first heard-only one
                        pipe.publish(channel, data)
                    if asked:
                        pipe.pubsub_numsub(*asked)
                    answers = await pipe.execute()  # the batch is not empty: head or asked is not
            except Exception as error:
                _settle(batch, error)
                continue
            _settle(head, None)
            if not tail:
                continue
            heard = {name.decode() if isinstance(name, bytes) else name for name, count in answers[-1] if count}
            try:
                published = 0
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, data, _future in tail:
                        if isinstance(data, bytes):
                            pipe.publish(channel, data)
                        elif channel in heard:
                            message, serialize = data
                            pipe.publish(channel, serialize(message))
                        else:
                            continue
                        published += 1
                    if published:
                        await pipe.execute()
            except Exception as error:
                _settle(tail, error)
            else:
                _settle(tail, None)

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            await asyncio.wait([self.task], timeout=5)
        if self.redis is not None:
            await _close_redis(self.redis)
            self.redis = None


# Channel tables smaller than this are not worth rebuilding (detach_local).
COMPACT_CHANNELS_FROM = 4096


class LocalChannel:
    """An attached socket in the layer's channel table: its delivery callback instead of a queue."""

    __slots__ = ("deliver",)

    def __init__(self, deliver: Callable[[dict[str, Any]], None]) -> None:
        self.deliver = deliver


class _Shard(RedisSingleShardConnection):
    def _receive_message(self, message: Any) -> None:
        """channels_redis's, except that attached sockets get the message decoded (once per
        Redis message, whatever the number of local sockets in the group: they must not mutate
        it) through their callback; channels of ordinary consumers still get the raw bytes
        queued."""
        if message is None:
            return
        name, data = message["channel"], message["data"]
        if isinstance(name, bytes):
            name = name.decode()
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
        itself (shared, as from `_Shard._receive_message`: handlers must not mutate it), an
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
