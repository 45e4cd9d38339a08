"""Issue 9 item 4: delivered/read acks are batched per socket (the highest up_to, debounced),
not one database write per message."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import tenant_context

from messaging import group_commit, services
from messaging.models import Message
from tests.conftest import World
from tests.messaging.conftest import adb, make_customer, receive_until, session_key, ws_connect

pytestmark = pytest.mark.django_db(transaction=False)


async def test_a_burst_of_acks_is_one_write_up_to_the_highest(live_db: World, monkeypatch: pytest.MonkeyPatch) -> None:
    customer = await adb(make_customer)()

    def write_messages() -> list[Message]:
        with tenant_context(live_db.business_a):
            return [
                services.message_send_customer(business=live_db.business_a, customer=customer, body=f"m{n}").message
                for n in range(10)
            ]

    written = await adb(write_messages)()
    calls: list[dict[str, Any]] = []
    real = group_commit.write_marks

    def counted(**kwargs: Any) -> list[Any]:
        calls.append(kwargs)
        return real(**kwargs)

    # Acks of every socket of the process are written in groups, one database trip per group.
    monkeypatch.setattr(group_commit, "write_marks", counted)
    agent_ws, _, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_a.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    chat_ws, _, _ = await ws_connect(
        "/ws/chat/", host=live_db.business_a.host, session=await adb(session_key)(customer=customer)
    )
    await chat_ws.send_json_to({"type": "resume", "after": written[-1].event_id})
    await receive_until(chat_ws, "resumed")
    conversation_id = written[0].conversation_id
    for message in written:  # as an inbox that acks every message it shows
        await agent_ws.send_json_to(
            {"type": "ack", "conversation_id": conversation_id, "up_to": message.pk, "read": False}
        )
    status = await receive_until(chat_ws, "message.status")
    assert status["status"] == "delivered" and status["up_to"] == written[-1].pk
    assert len(calls) == 1 and [m.up_to for m in calls[0]["marks"]] == [written[-1].pk]

    def statuses() -> set[str]:
        with tenant_context(live_db.business_a):
            return set(Message.objects.filter(pk__in=[m.pk for m in written]).values_list("status", flat=True))

    assert await adb(statuses)() == {"delivered"}
    await agent_ws.disconnect()
    await chat_ws.disconnect()
