"""@mentions and label changes reach agents live, in their own business only; every frame
matches its declared shape (collab.events)."""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
from django_tenants.utils import tenant_context

from collab import events, services
from collab.models import AgentNotification, Label
from messaging.services import message_send_customer
from tests.conftest import World, unique
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

pytestmark = pytest.mark.django_db(transaction=False)


def _check(value: Any, shape: Any, path: str) -> list[str]:
    origin = get_origin(shape)
    if shape is type(None):
        return [] if value is None else [f"{path}: expected null"]
    if origin is Literal:
        return [] if value in get_args(shape) else [f"{path}: {value!r} not in {get_args(shape)}"]
    if origin in (Union, types.UnionType):
        return [] if any(not _check(value, o, path) for o in get_args(shape)) else [f"{path}: fits none"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(value) for p in _check(item, get_args(shape)[0], f"{path}[{i}]")]
    if typing.is_typeddict(shape):
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        hints = get_type_hints(shape)
        problems = [f"{path}.{k}: missing" for k in hints if k not in value]
        problems += [f"{path}.{k}: not declared" for k in value if k not in hints]
        for key, hint in hints.items():
            if key in value:
                problems += _check(value[key], hint, f"{path}.{key}")
        return problems
    if shape is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean"]
    if shape is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{path}: expected an integer"]
    if shape is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string"]
    raise AssertionError(f"no check for {shape}")


def check_frame(frame: dict[str, Any]) -> None:
    shape = events.EVENT_SHAPES[frame["type"]]
    problems = _check(json.loads(json.dumps(frame)), shape, frame["type"])
    assert not problems, problems


def test_the_checker_catches_a_bad_frame() -> None:
    with pytest.raises(AssertionError):
        check_frame(
            {
                "id": None,
                "type": "labels.updated",
                "conversation_id": 1,
                "labels": [{"id": "1", "name": "x", "colour": "red"}],
            }
        )


async def test_a_mention_reaches_the_named_agent_live_and_nobody_else(live_db: World, temp_agent: Any) -> None:
    mia, _seat = await adb(temp_agent)()
    name = unique("Mia")
    mia.full_name = f"{name} Schulz"
    await adb(mia.save)(update_fields=["full_name"])
    customer = await adb(make_customer)("Lukas")
    business = live_db.business_a

    def conversation_id() -> int:
        with tenant_context(business):
            return message_send_customer(
                business=business, customer=customer, body="Seat change?"
            ).message.conversation_id

    cid = await adb(conversation_id)()
    start = await adb(last_event_id)(business)
    mia_ws, ok, _ = await ws_connect("/ws/inbox/", host=business.host, session=await adb(session_key)(user=mia))
    assert ok
    await resumed(mia_ws, start)
    other_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=business.host, session=await adb(session_key)(user=live_db.agent_a)
    )
    assert ok
    await resumed(other_ws, start)
    b_start = await adb(last_event_id)(live_db.business_b)
    b_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=live_db.business_b.host, session=await adb(session_key)(user=live_db.agent_b)
    )
    assert ok
    await resumed(b_ws, b_start)
    owner_ws, ok, _ = await ws_connect(
        "/ws/inbox/", host=business.host, session=await adb(session_key)(user=live_db.owner_a)
    )
    assert ok
    await resumed(owner_ws, start)

    await owner_ws.send_json_to(
        {
            "type": "send",
            "conversation_id": cid,
            "kind": "note",
            "body": f"@{name} can you take this?",
            "client_msg_id": unique("n"),
        }
    )
    await receive_until(owner_ws, "message.accepted")
    frame = await receive_until(mia_ws, "mention.created")
    check_frame(frame)
    assert frame["id"] is None and frame["unread"] == 1
    assert frame["notification"]["conversation_id"] == cid
    assert frame["notification"]["actor_name"] == live_db.owner_a.get_short_name()
    assert frame["notification"]["contact_name"] == "Lukas"
    assert all(f["type"] != "mention.created" for f in await drain(other_ws))

    # Business B's inbox hears nothing of A: at most its own agent coming online (its presence
    # and status frames, which may arrive after the resume).
    def about_b_itself(frame: dict[str, Any]) -> bool:
        if frame["type"] == "presence":
            return {p["id"] for p in frame["online"]} <= {live_db.agent_b.pk}
        return frame["type"] == "agent.status" and frame["user_id"] == live_db.agent_b.pk

    assert [f for f in await drain(b_ws) if not about_b_itself(f)] == []

    # A label change reaches every agent's inbox of this business, not business B's.
    def label_it() -> None:
        with tenant_context(business):
            label = Label.objects.create(name=unique("Seat"), colour="purple")
            services.conversation_labels_set(business=business, user=mia, conversation_id=cid, label_ids=[label.pk])

    await adb(label_it)()
    labels = await receive_until(other_ws, "labels.updated")
    check_frame(labels)
    assert labels["conversation_id"] == cid and labels["labels"][0]["colour"] == "purple"
    assert all(f["type"] != "labels.updated" for f in await drain(b_ws))

    def cleanup() -> None:
        with tenant_context(business):
            AgentNotification.objects.filter(user=mia).delete()

    await adb(cleanup)()
    for ws in (mia_ws, other_ws, b_ws, owner_ws):
        await ws.disconnect()
