"""Issue 9: what an idle websocket holds (one task, no queue or Redis subscription of its own),
and the process-level fan-out that replaces the per-socket channel: a group message reaches
exactly the local sockets in that group, across processes, in order, and never another
business's sockets."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django_tenants.utils import tenant_context

from accounts.models import Customer
from config.layers import LocalChannel, PipelinedPubSubChannelLayer
from messaging import events, services
from tests.conftest import World
from tests.messaging.conftest import (
    adb,
    drain,
    last_event_id,
    make_customer,
    receive_until,
    resumed,
    session_key,
    ws_connect,
)

pytestmark = [
    pytest.mark.django_db(transaction=False),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the Redis layer's fan-out"),
]


def _inner_layer() -> Any:
    layer: Any = get_channel_layer()
    return layer._get_layer()


def _fresh_layer(prefix: str) -> PipelinedPubSubChannelLayer:
    """A layer of its own (own Redis connections and subscriptions): another process, as far as
    Redis can tell."""
    return PipelinedPubSubChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=prefix)


def send_as_customer(business: Any, customer: Customer, body: str) -> int:
    with tenant_context(business):
        return services.message_send_customer(business=business, customer=customer, body=body).message.conversation_id


async def _settle() -> None:
    for _ in range(20):  # drain and worker tasks end once their deques are empty
        await asyncio.sleep(0.05)


async def test_an_idle_socket_holds_one_task_and_no_channel_subscription(live_db: World) -> None:
    host = live_db.business_a.host
    first, ok, _ = await ws_connect(
        "/ws/chat/", host=host, session=await adb(session_key)(customer=await adb(make_customer)())
    )
    assert ok
    start = await adb(last_event_id)(live_db.business_a)
    await resumed(first, start)
    await _settle()
    tasks_before = len(asyncio.all_tasks())
    inner = _inner_layer()
    subscribed_before = {channel for shard in inner._shards for channel in shard._subscribed_to}

    sockets = []
    for _ in range(5):
        customer = await adb(make_customer)()
        ws, ok, _ = await ws_connect("/ws/chat/", host=host, session=await adb(session_key)(customer=customer))
        assert ok
        await resumed(ws, start)
        await ws.send_json_to({"type": "ping"})  # a frame handled: the worker came and went
        await receive_until(ws, "pong")
        sockets.append(ws)
    await _settle()

    # The socket's own task (the communicator's application future) and nothing else.
    assert len(asyncio.all_tasks()) - tasks_before == 5
    local = [name for name, target in inner.channels.items() if isinstance(target, LocalChannel)]
    assert len(local) >= 6
    subscribed = {channel for shard in inner._shards for channel in shard._subscribed_to}
    # No Redis channel per socket: only the groups (each customer's own) were subscribed.
    assert not any(name in subscribed for name in local)
    assert all("__group__" in channel for channel in subscribed - subscribed_before)

    for ws in [first, *sockets]:
        await ws.disconnect()
    await _settle()
    assert not any(isinstance(target, LocalChannel) for target in inner.channels.values())
    assert len(asyncio.all_tasks()) < tasks_before


async def test_a_group_message_reaches_exactly_the_local_sockets_in_it_across_processes() -> None:
    prefix = f"t_idle_{uuid.uuid4().hex[:8]}"
    here, there = _fresh_layer(prefix), _fresh_layer(prefix)
    got: dict[str, list[dict[str, Any]]] = {"a1": [], "a2": [], "b": []}
    inner_here: Any = here._get_layer()
    inner_there: Any = there._get_layer()
    try:
        names = {key: inner_here.attach_local(got[key].append) for key in got}
        await here.group_add("alpha.conv.1", names["a1"])
        await here.group_add("alpha.conv.1", names["a2"])
        await here.group_add("beta.conv.1", names["b"])
        await asyncio.sleep(0.2)  # the subscriptions are in place on Redis

        # Published by the other "process", for one group, in order.
        for n in range(5):
            await there.group_send("alpha.conv.1", {"type": "conv.frame", "n": n})
        for _ in range(50):
            if len(got["a1"]) == 5 and len(got["a2"]) == 5:
                break
            await asyncio.sleep(0.05)
        assert [m["n"] for m in got["a1"]] == [0, 1, 2, 3, 4]
        assert [m["n"] for m in got["a2"]] == [0, 1, 2, 3, 4]
        assert got["b"] == []  # the other business's socket, same process: nothing

        # A socket that left the group hears nothing more; one detached from the layer neither.
        await here.group_discard("alpha.conv.1", names["a2"])
        inner_here.detach_local(names["b"])
        await there.group_send("alpha.conv.1", {"type": "conv.frame", "n": 5})
        await there.group_send("beta.conv.1", {"type": "conv.frame", "n": 6})
        for _ in range(50):
            if len(got["a1"]) == 6:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert [m["n"] for m in got["a1"]] == [0, 1, 2, 3, 4, 5]
        assert len(got["a2"]) == 5 and got["b"] == []
        # Nothing subscribed on Redis for the sockets' own channels.
        subscribed = {channel for shard in inner_here._shards for channel in shard._subscribed_to}
        assert not set(names.values()) & subscribed
    finally:
        await inner_here.flush()
        await inner_there.flush()


async def test_live_frames_reach_only_their_own_business_sockets_on_one_process(live_db: World) -> None:
    """Tenant isolation through the shared fan-out: sockets of A and B in one process, a
    message in each business, each socket gets its own business's frame only."""
    alpha, beta = live_db.business_a, live_db.business_b
    customer = await adb(make_customer)()  # one person, talking to both businesses
    await adb(send_as_customer)(alpha, customer, "hello alpha")
    await adb(send_as_customer)(beta, customer, "hello beta")
    session = await adb(session_key)(customer=customer)
    sockets = {}
    for business in (alpha, beta):
        ws, ok, _ = await ws_connect("/ws/chat/", host=business.host, session=session)
        assert ok
        await resumed(ws, await adb(last_event_id)(business))
        sockets[business.schema_name] = ws
    await adb(send_as_customer)(alpha, customer, "live alpha")
    await adb(send_as_customer)(beta, customer, "live beta")
    alpha_frame = await receive_until(sockets[alpha.schema_name], "message.created")
    beta_frame = await receive_until(sockets[beta.schema_name], "message.created")
    assert alpha_frame["message"]["body"] == "live alpha"
    assert beta_frame["message"]["body"] == "live beta"
    for ws in sockets.values():
        assert all("live beta" not in str(f) and "live alpha" not in str(f) for f in await drain(ws, timeout=0.3))
        await ws.disconnect()


async def test_layer_messages_wait_until_connect_returned() -> None:
    """The drain task starts only after the consumer's connect (as Channels dispatched nothing
    in between), then dispatches in arrival order."""
    from messaging.socket_task import OneTaskWebsocketConsumer

    seen: list[str] = []

    class Probe(OneTaskWebsocketConsumer):
        async def connect(self) -> None:
            self.deliver({"type": "layer.note", "n": "during-connect"})
            await asyncio.sleep(0.05)
            seen.append("connected")
            await self.accept()

        async def layer_note(self, message: dict[str, Any]) -> None:
            seen.append(message["n"])

    from channels.testing import WebsocketCommunicator

    communicator = WebsocketCommunicator(Probe.as_asgi(), "/probe/")
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    await _settle()
    assert seen == ["connected", "during-connect"]
    await communicator.disconnect()
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("PipelinedPubSubChannelLayer")


def test_group_names_keep_the_schema_apart() -> None:
    assert events.conversation_group("alpha", 1) != events.conversation_group("beta", 1)


def _coroutine_chain(communicator: Any) -> list[Any]:
    """The coroutines the socket's task is suspended in, outermost first."""
    chain = []
    coro = communicator.future.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        chain.append(coro)
        coro = coro.cr_await
    return chain


async def test_an_idle_socket_keeps_no_wrapper_coroutines_and_a_slim_scope(live_db: World) -> None:
    """Issue 9: between the server and the consumer's loop only WebsocketScope's coroutine
    (the router, the consumer factory and the memory hook return their inner coroutine instead
    of awaiting it), and after connect the scope keeps what the consumer reads later."""
    from config.routing import WebsocketScope
    from messaging.consumers import ChatConsumer
    from messaging.socket_task import OneTaskWebsocketConsumer

    host = live_db.business_a.host
    customer = await adb(make_customer)()
    key = await adb(session_key)(customer=customer)
    ws, ok, _ = await ws_connect("/ws/chat/", host=host, session=key)
    assert ok
    await resumed(ws, await adb(last_event_id)(live_db.business_a))
    await _settle()
    chain = _coroutine_chain(ws)
    assert [c.cr_code for c in chain[:2]] == [
        WebsocketScope.__call__.__code__,
        OneTaskWebsocketConsumer.__call__.__code__,
    ]
    consumer = chain[1].cr_frame.f_locals["self"]
    assert isinstance(consumer, ChatConsumer)
    scope = consumer.scope
    # Kept: what the consumer reads after connect (and Host/Origin, a few bytes).
    assert scope["business"].pk == live_db.business_a.pk
    assert scope["session"].session_key == key
    assert scope["url_route"] == {"args": (), "kwargs": {}}
    assert {name for name, _value in scope["headers"]} <= {b"host", b"origin"}
    # Dropped: the cookie header and the parsed cookies (read while connecting only).
    assert "cookies" not in scope
    assert all(name != b"cookie" for name, _value in scope["headers"])
    # And the socket still works on what is left: a ping is answered, a rights check passes.
    await ws.send_json_to({"type": "ping"})
    await receive_until(ws, "pong")
    await ws.disconnect()


async def test_a_socket_end_is_reported_for_the_memory_pass(live_db: World, monkeypatch: Any) -> None:
    """The consumer, not a wrapping middleware, reports its end to config.memory (which runs a
    collect-and-trim pass after a burst of closes), refused sockets included."""
    from config import memory

    ended: list[int] = []
    monkeypatch.setattr(memory, "socket_ended", lambda: ended.append(1))
    host = live_db.business_a.host
    ws, ok, _ = await ws_connect(
        "/ws/chat/", host=host, session=await adb(session_key)(customer=await adb(make_customer)())
    )
    assert ok
    await ws.disconnect()
    refused, ok, _ = await ws_connect("/ws/chat/", host=host)  # not signed in
    assert not ok
    await refused.disconnect()  # what a server tells the application after the refusal
    await _settle()
    assert len(ended) == 2


async def test_sockets_of_one_business_share_its_instance_and_never_another_business(live_db: World) -> None:
    """One Business instance per business for the process's sockets (tenancy.asgi), found by
    host on every connect: business A's sockets share A's, B's share B's, never across."""
    sockets = []
    businesses = []
    for business in (live_db.business_a, live_db.business_a, live_db.business_b, live_db.business_b):
        ws, ok, _ = await ws_connect(
            "/ws/chat/", host=business.host, session=await adb(session_key)(customer=await adb(make_customer)())
        )
        assert ok
        sockets.append(ws)
        businesses.append(_coroutine_chain(ws)[1].cr_frame.f_locals["self"].business)
    a1, a2, b1, b2 = businesses
    assert a1 is a2 and b1 is b2 and a1 is not b1
    assert a1.pk == live_db.business_a.pk and a1.schema_name == live_db.business_a.schema_name
    assert b1.pk == live_db.business_b.pk and b1.schema_name == live_db.business_b.schema_name
    for ws in sockets:
        await ws.disconnect()
