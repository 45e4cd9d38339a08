"""Issue 9: a socket's sends are pipelined — its worker takes the next frame once a send is in
its business's queue, instead of waiting for the send's group to commit — and a send refused for
load or rate still holds back every later send of its socket, wherever that one is by then
(queued for a group, or in the same group)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import override_settings
from django.utils import translation
from django.utils.translation import gettext

from accounts.models import Customer
from messaging import send_limits
from messaging.consumers import StreamConsumer
from messaging.group_commit import LiveGatherer, live_gatherer
from tests.conftest import World
from tests.messaging.conftest import adb, make_customer, receive_until, session_key, ws_connect
from tests.messaging.test_backpressure import customer_send, hold_stream_counter, stored_order

pytestmark = pytest.mark.django_db(transaction=False)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


async def chatting_customer(world: World, language: str | None = None) -> tuple[Customer, WebsocketCommunicator]:
    """A customer whose conversation exists (a socket pipelines its sends from then on), on its chat socket."""
    customer = await adb(make_customer)()
    await adb(customer_send)(world, customer, "hello")
    ws, ok, _ = await ws_connect(
        "/ws/chat/", host=world.business_a.host, session=await adb(session_key)(customer=customer), language=language
    )
    assert ok
    live_gatherer.stats_reset()
    return customer, ws


async def send(ws: WebsocketCommunicator, client_msg_id: str) -> None:
    await ws.send_json_to({"type": "send", "body": client_msg_id, "client_msg_id": client_msg_id})


async def answer_to(ws: WebsocketCommunicator, client_msg_id: str) -> dict[str, Any]:
    """The socket's next answer to a send (its acceptance or its refusal), skipping other frames."""
    while True:
        frame = await ws.receive_json_from(timeout=5)
        if frame["type"] in ("message.accepted", "error"):
            assert frame.get("client_msg_id") == client_msg_id, frame
            return frame


async def wait_for(condition: Any, timeout: float = 3.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_a_sockets_next_send_is_queued_while_the_one_before_waits_for_its_group(
    live_db: World, gate: threading.Event
) -> None:
    """The writer is held (another transaction holds the stream counter): the socket's first send
    waits in its group, and its second send is in the business's queue meanwhile — before, it
    waited on the socket's worker until the first one committed. Both are written, in order,
    and answered in order."""
    customer, ws = await chatting_customer(live_db)
    schema = live_db.business_a.schema_name
    await hold_stream_counter(live_db, gate)
    groups = len(live_gatherer.stats_batches())
    await send(ws, "pipe-1")
    # In its group before the second is sent (a send reaches its business's queue within the
    # step its frame is taken in: sent together, both would be in one group).
    assert await wait_for(lambda: len(live_gatherer.stats_batches()) > groups), "the first send's group never started"
    await send(ws, "pipe-2")
    assert await wait_for(lambda: live_gatherer.queued(schema) == 1), "the second send never reached the queue"
    assert live_gatherer.stats_batches()[-1:] == [1], "the first send's group holds it alone"
    assert await adb(stored_order)(live_db, customer) == [""], "nothing written while the writer is held"
    gate.set()
    first, second = await answer_to(ws, "pipe-1"), await answer_to(ws, "pipe-2")
    assert first["type"] == second["type"] == "message.accepted"
    assert first["message_id"] < second["message_id"]
    assert await adb(stored_order)(live_db, customer) == ["", "pipe-1", "pipe-2"]
    await ws.disconnect()


@pytest.mark.skipif(
    not settings.REDIS_URL, reason="without Redis a send's rights are read on a database thread before it is queued"
)
async def test_a_send_is_in_its_business_queue_within_the_step_its_frame_was_taken_in(
    live_db: World, gate: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket's worker, the send and its rights read start within the frame's own step, not
    on later turns of the loop (each a wait behind every ready callback on a busy server): the
    send is queued in the same turn its frame was taken in. (The writer is held: nothing else
    happens meanwhile.)"""
    customer, ws = await chatting_customer(live_db)
    await hold_stream_counter(live_db, gate)
    loop = asyncio.get_running_loop()
    turn = 0

    def count_turns() -> None:  # runs once per turn of the loop: what is ready then
        nonlocal turn, ticking
        turn += 1
        ticking = loop.call_soon(count_turns)

    ticking = loop.call_soon(count_turns)
    seen: dict[str, int] = {}
    taken, queued = StreamConsumer.take_frame, LiveGatherer.send

    async def take_frame(self: StreamConsumer, text_data: str | None) -> None:
        seen.setdefault("taken", turn)
        await taken(self, text_data)

    async def send_queued(self: LiveGatherer, **kwargs: Any) -> Any:
        seen.setdefault("queued", turn)
        return await queued(self, **kwargs)

    monkeypatch.setattr(StreamConsumer, "take_frame", take_frame)
    monkeypatch.setattr(LiveGatherer, "send", send_queued)
    try:
        await send(ws, "now-1")
        assert await wait_for(lambda: "queued" in seen), "the send never reached the queue"
    finally:
        ticking.cancel()
    assert seen["queued"] == seen["taken"], seen
    gate.set()
    assert (await answer_to(ws, "now-1"))["type"] == "message.accepted"
    assert await adb(stored_order)(live_db, customer) == ["", "now-1"]
    await ws.disconnect()


# The premise is the token bucket's (a token again 0.25 s later): the database cache, without
# Redis, keeps a fixed window instead (messaging.send_limits), where rl-3 is refused by the
# limit itself, not held back behind rl-2.
@pytest.mark.skipif(not settings.REDIS_URL, reason="the send limit is a token bucket with Redis only")
async def test_a_send_refused_by_its_authors_limit_in_a_group_holds_back_its_sockets_later_sends_in_it(
    live_db: World, gate: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three sends of one socket in one group: the author's shared limit (a burst of 1, 4 a
    second) lets the first and the third through and refuses the second. The third is refused
    with it (`rate_limited`), not written ahead of it; a fourth sent after the refusal is
    refused too until the second comes back; then all go through in the order written. The
    refusals are in the customer's language (German), not in that of the socket whose send
    started the group's writer."""
    holder = await adb(make_customer)()
    other, ok, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=holder)
    )
    assert ok
    customer, ws = await chatting_customer(live_db, language="de")
    schema = live_db.business_a.schema_name
    with translation.override("de"):
        too_fast_de = gettext("You are sending too fast. Please wait a moment.")
    assert too_fast_de != "You are sending too fast. Please wait a moment."
    monkeypatch.setattr(send_limits, "SEND_BURST", 1)
    monkeypatch.setattr(send_limits, "SEND_RATE", 4.0)
    await hold_stream_counter(live_db, gate)
    await other.send_json_to({"type": "send", "body": "holds the writer", "client_msg_id": "w-0"})
    assert await wait_for(lambda: bool(live_gatherer.stats_batches())), "the holder's group never started"
    await send(ws, "rl-1")
    await send(ws, "rl-2")
    assert await wait_for(lambda: live_gatherer.queued(schema) == 2)
    await asyncio.sleep(0.4)  # the author's bucket has a token again for rl-3
    await send(ws, "rl-3")
    assert await wait_for(lambda: live_gatherer.queued(schema) == 3)
    gate.set()
    assert (await answer_to(ws, "rl-1"))["type"] == "message.accepted"
    for client_msg_id in ("rl-2", "rl-3"):
        refused = await answer_to(ws, client_msg_id)
        assert refused["code"] == "rate_limited" and refused["retry_after"] > 0, refused
        assert refused["message"] == too_fast_de
    assert live_gatherer.stats_batches()[-1] == 3, "the three sends were in one group"
    assert await adb(stored_order)(live_db, customer) == ["", "rl-1"]
    await send(ws, "rl-4")
    refused = await answer_to(ws, "rl-4")
    assert refused["code"] == "rate_limited", refused
    monkeypatch.setattr(send_limits, "SEND_RATE", 1000.0)  # the bucket fills again at once
    for client_msg_id in ("rl-2", "rl-3", "rl-4"):
        await send(ws, client_msg_id)
        assert (await answer_to(ws, client_msg_id))["type"] == "message.accepted"
    assert await adb(stored_order)(live_db, customer) == ["", "rl-1", "rl-2", "rl-3", "rl-4"]
    assert (await receive_until(other, "message.accepted"))["client_msg_id"] == "w-0"
    await other.disconnect()
    await ws.disconnect()


async def test_a_send_that_waited_too_long_in_the_queue_takes_its_sockets_later_queued_sends_with_it(
    live_db: World, gate: threading.Event
) -> None:
    """Both sends of the socket are queued behind a held writer; the first waits out its limit
    and is refused `overloaded`. The second, queued later (its own limit still ahead), is
    refused at the same moment: with the writer free again it would have been written ahead of
    the first. Sent again, both are written in order."""
    holder = await adb(make_customer)()
    other, ok, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=holder)
    )
    assert ok
    customer, ws = await chatting_customer(live_db)
    schema = live_db.business_a.schema_name
    await hold_stream_counter(live_db, gate)
    with override_settings(PARLEY_SEND_MAX_WAIT=0.15):  # an admitted send waits 4× that: 0.6 s
        await other.send_json_to({"type": "send", "body": "holds the writer", "client_msg_id": "w-0"})
        assert await wait_for(lambda: bool(live_gatherer.stats_batches()))
        await send(ws, "exp-1")
        assert await wait_for(lambda: live_gatherer.queued(schema) == 1)
        await asyncio.sleep(0.3)
        await send(ws, "exp-2")
        assert await wait_for(lambda: live_gatherer.queued(schema) == 2)
        refused = await answer_to(ws, "exp-1")
        gate.set()  # the writer is free again before exp-2's own limit (0.3 s later) runs out
        assert refused["code"] == "overloaded", refused
        refused = await answer_to(ws, "exp-2")
        assert refused["code"] == "overloaded", refused
        assert (await receive_until(other, "message.accepted"))["client_msg_id"] == "w-0"
        assert await adb(stored_order)(live_db, customer) == [""]
        for client_msg_id in ("exp-1", "exp-2"):
            await send(ws, client_msg_id)
            assert (await answer_to(ws, client_msg_id))["type"] == "message.accepted"
    assert await adb(stored_order)(live_db, customer) == ["", "exp-1", "exp-2"]
    await other.disconnect()
    await ws.disconnect()
