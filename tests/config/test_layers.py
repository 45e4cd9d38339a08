"""The pipelined Redis channel layer: heard-only messages go out only to groups someone subscribes
to, and keep their place in the publishing order (config.layers)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import asyncio as aioredis

from config.layers import PipelinedPubSubChannelLayer
from tests.conftest import unique

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the Redis layer needs REDIS_URL")


@pytest.fixture
async def layer() -> AsyncIterator[PipelinedPubSubChannelLayer]:
    layer = PipelinedPubSubChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=unique("layertest"))
    yield layer
    await layer.flush()


@pytest.fixture
async def published(layer: PipelinedPubSubChannelLayer) -> AsyncIterator[list[tuple[str, Any]]]:
    """Every message the layer publishes (a pattern subscription, which PUBSUB NUMSUB does not
    count, so watching does not make a group heard)."""
    seen: list[tuple[str, Any]] = []
    redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    pubsub = redis.pubsub()
    prefix = layer._get_layer()._get_group_channel_name("")
    await pubsub.psubscribe(prefix + "*")

    async def watch() -> None:
        async for raw in pubsub.listen():
            if raw["type"] == "pmessage":
                channel = raw["channel"].decode()[len(prefix) :]
                seen.append((channel, layer.deserialize(raw["data"])))

    task = asyncio.ensure_future(watch())
    await asyncio.sleep(0.05)
    yield seen
    task.cancel()
    await pubsub.aclose()
    await redis.aclose()


async def settle(seen: list[tuple[str, Any]], count: int) -> None:
    for _ in range(100):
        if len(seen) >= count:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # and nothing more arrives


async def test_heard_only_messages_reach_only_groups_with_subscribers_in_order(
    layer: PipelinedPubSubChannelLayer, published: list[tuple[str, Any]]
) -> None:
    channel = await layer.new_channel()
    await layer.group_add("listened", channel)
    inner = layer._get_layer()
    sends = [
        inner.group_send_nowait("listened", {"type": "x", "n": 1}, heard_only=True),
        inner.group_send_nowait("nobody", {"type": "x", "n": 2}, heard_only=True),
        inner.group_send_nowait("nobody", {"type": "x", "n": 3}),  # not heard-only: published all the same
        inner.group_send_nowait("listened", {"type": "x", "n": 4}, heard_only=True),
        inner.group_send_nowait("listened", {"type": "x", "n": 5}),
    ]
    # Every future resolves, the dropped ones too (nothing to wait for, nothing failed).
    assert await asyncio.gather(*sends) == [None] * 5
    await settle(published, 4)
    assert [(group, m["n"]) for group, m in published] == [
        ("listened", 1),
        ("nobody", 3),
        ("listened", 4),
        ("listened", 5),
    ]
    received = [await asyncio.wait_for(layer.receive(channel), 2) for _ in range(3)]
    assert [m["n"] for m in received] == [1, 4, 5]


async def test_a_group_is_heard_from_the_moment_someone_subscribes(
    layer: PipelinedPubSubChannelLayer, published: list[tuple[str, Any]]
) -> None:
    inner = layer._get_layer()
    await inner.group_send_nowait("later", {"type": "x", "n": 1}, heard_only=True)
    channel = await layer.new_channel()
    await layer.group_add("later", channel)
    await inner.group_send_nowait("later", {"type": "x", "n": 2}, heard_only=True)
    assert (await asyncio.wait_for(layer.receive(channel), 2))["n"] == 2
    # The last subscriber left: nobody hears the group again.
    await layer.group_discard("later", channel)
    await asyncio.sleep(0.05)
    await inner.group_send_nowait("later", {"type": "x", "n": 3}, heard_only=True)
    await settle(published, 1)
    assert [m["n"] for _group, m in published] == [2]


async def test_the_channel_table_gives_its_memory_back_after_a_mass_close(layer: PipelinedPubSubChannelLayer) -> None:
    """A dict keeps its largest table after deletes; the layer rebuilds its channel table once
    most attached sockets are gone (issue 9: memory returned when sockets close), and the
    sockets still attached keep receiving."""
    loop_layer = layer._get_layer()
    got: list[Any] = []
    kept = loop_layer.attach_local(got.append)
    channels = [loop_layer.attach_local(lambda message: None) for _ in range(10_000)]
    table = loop_layer.channels
    full = sys.getsizeof(table)
    for channel in channels:
        loop_layer.detach_local(channel)
    assert loop_layer.channels is table  # rebuilt in place: the same dict
    assert set(table) == {kept}
    assert sys.getsizeof(table) < full / 5
    await layer.group_add("compact", kept)
    loop_layer.group_send_local("compact", {"type": "chat.message", "n": 1})
    assert got == [{"type": "chat.message", "n": 1}]
    await layer.group_discard("compact", kept)
    loop_layer.detach_local(kept)


async def test_messages_queued_before_heard_only_ones_go_out_with_the_question(
    layer: PipelinedPubSubChannelLayer, published: list[tuple[str, Any]]
) -> None:
    """A live send group's commit (to a group this process subscribes to) is queued before its
    customers' updates (heard-only): it is published in the round trip that asks who hears
    them, not after that answer; the order of publishing stays the order of queueing."""
    channel = await layer.new_channel()
    await layer.group_add("listened", channel)
    inner = layer._get_layer()
    # Another process's subscriber: a plain SUBSCRIBE, which PUBSUB NUMSUB counts.
    redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    elsewhere = redis.pubsub()
    await elsewhere.subscribe(inner._get_group_channel_name("elsewhere"))
    try:
        commit = inner.group_send_nowait("listened", {"type": "x", "n": 1})
        updates = [
            inner.group_send_nowait("nobody", {"type": "x", "n": 2}, heard_only=True),
            inner.group_send_nowait("elsewhere", {"type": "x", "n": 3}, heard_only=True),
            inner.group_send_nowait("listened", {"type": "x", "n": 4}),
        ]
        # What was still on its way when the commit's publish was confirmed.
        pending_then: list[list[bool]] = []
        commit.add_done_callback(lambda _done: pending_then.append([not u.done() for u in updates]))
        assert await asyncio.gather(commit, *updates) == [None] * 4
        assert pending_then == [[True, True, True]]
        await settle(published, 3)
        assert [(group, m["n"]) for group, m in published] == [("listened", 1), ("elsewhere", 3), ("listened", 4)]
    finally:
        await elsewhere.aclose()
        await redis.aclose()


async def test_a_heard_only_message_that_cannot_be_serialized_fails_alone(
    layer: PipelinedPubSubChannelLayer, published: list[tuple[str, Any]]
) -> None:
    """Its group is heard (another process subscribes), so it is serialized only once Redis
    answered: the failure is its own, the messages behind it still go out in order, and so do
    later ones (nothing stays held behind it)."""
    other = PipelinedPubSubChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=layer.prefix)
    try:
        await other.group_add("elsewhere", await other.new_channel())
        inner = layer._get_layer()
        broken = inner.group_send_nowait("elsewhere", {"type": "x", "n": object()}, heard_only=True)
        behind = inner.group_send_nowait("elsewhere", {"type": "x", "n": 2})
        with pytest.raises(TypeError):
            await asyncio.wait_for(broken, 5)
        # Bounded: a publisher stopped by the failure left these waiting for ever.
        await asyncio.wait_for(behind, 5)
        await asyncio.wait_for(inner.group_send_nowait("elsewhere", {"type": "x", "n": 3}, heard_only=True), 5)
        await settle(published, 2)
        assert [(group, m["n"]) for group, m in published] == [("elsewhere", 2), ("elsewhere", 3)]
    finally:
        await other.flush()
