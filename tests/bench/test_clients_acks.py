"""The load generator's pages ack as realtime.js's AckBatcher does (the pages' own batching is
covered in the browser tests): merged per conversation and kind, sent together after a delay, a
delivered ack left out when a read one of the same conversation covers it."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.clients import AckBatcher, Stats


async def test_a_burst_of_acks_goes_as_one_frame_per_conversation_and_kind() -> None:
    sent: list[dict[str, Any]] = []
    stats = Stats()
    acks = AckBatcher(sent.append, stats, delay=0.05)
    for up_to in (5, 9, 7):  # a customer's resume replaying three replies
        acks.add({"type": "ack", "up_to": up_to, "read": True})
    assert sent == [], "nothing goes before the delay"
    await asyncio.sleep(0.15)
    assert sent == [{"type": "ack", "up_to": 9, "read": True}]
    assert stats.acks_sent == 1

    acks.add({"type": "ack", "up_to": 11, "read": True})
    await asyncio.sleep(0.15)
    assert sent[-1] == {"type": "ack", "up_to": 11, "read": True} and stats.acks_sent == 2


async def test_a_delivered_ack_covered_by_a_read_one_of_its_conversation_is_left_out() -> None:
    sent: list[dict[str, Any]] = []
    acks = AckBatcher(sent.append, Stats(), delay=0.05)
    acks.add({"type": "ack", "conversation_id": 1, "up_to": 4, "read": False})
    acks.add({"type": "ack", "conversation_id": 1, "up_to": 6, "read": True})
    acks.add({"type": "ack", "conversation_id": 2, "up_to": 3, "read": False})
    await asyncio.sleep(0.15)
    assert sorted((f["conversation_id"], f["up_to"], f["read"]) for f in sent) == [(1, 6, True), (2, 3, False)]

    sent.clear()
    acks.add({"type": "ack", "conversation_id": 1, "up_to": 8, "read": False})
    acks.add({"type": "ack", "conversation_id": 1, "up_to": 6, "read": True})
    await asyncio.sleep(0.15)
    assert sorted((f["up_to"], f["read"]) for f in sent) == [(6, True), (8, False)], "not covered: both go"
