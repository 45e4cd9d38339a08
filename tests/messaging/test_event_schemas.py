"""Every event frame the services emit matches its declared shape (messaging.events.*Event).

Like Zulip's check of every event in its tests: a frame with a missing, extra or mistyped field
fails here before a client (the inbox, the chat page, /me/, later the API) trips over it."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import tenant_context

from assignment import services as assignment_services
from attachments.services import attachment_upload
from messaging import events, services
from messaging.models import Event
from tests.attachments.files import png
from tests.conftest import World
from tests.messaging.conftest import make_customer


def _check(value: Any, shape: Any, path: str) -> list[str]:
    origin = get_origin(shape)
    if shape is type(None):
        return [] if value is None else [f"{path}: expected null, got {value!r}"]
    if origin is Literal:
        return [] if value in get_args(shape) else [f"{path}: {value!r} is not one of {get_args(shape)}"]
    if origin in (Union, types.UnionType):
        options = [_check(value, option, path) for option in get_args(shape)]
        return [] if any(not problems for problems in options) else [f"{path}: {value!r} fits none of {shape}"]
    if typing.is_typeddict(shape):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        hints = get_type_hints(shape)
        required = shape.__required_keys__  # a total=False shape's keys may be left out
        problems = [f"{path}.{key}: missing" for key in hints if key not in value and key in required]
        problems += [f"{path}.{key}: not declared" for key in value if key not in hints]
        for key, hint in hints.items():
            if key in value:
                problems += _check(value[key], hint, f"{path}.{key}")
        return problems
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {value!r}"]
        (item,) = get_args(shape)
        return [problem for index, v in enumerate(value) for problem in _check(v, item, f"{path}[{index}]")]
    if shape is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected true or false, got {value!r}"]
    if shape is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an integer, got {value!r}"]
    if shape is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {value!r}"]
    if shape is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected true or false, got {value!r}"]
    raise AssertionError(f"no check for {shape}")


def check_frame(frame: str) -> dict[str, Any]:
    payload = json.loads(frame)
    shape = events.EVENT_SHAPES.get(payload.get("type"))
    assert shape is not None, f"undeclared event type in {frame}"
    problems = _check(payload, shape, payload["type"])
    assert not problems, "\n".join(problems)
    return payload


def test_the_checker_catches_a_bad_frame() -> None:
    good = {"id": 3, "type": "thread.updated", "business_id": 1, "unread": 0, "last_activity_at": "2026-12-01T10:00Z"}
    check_frame(json.dumps(good))
    for bad in ({**good, "unread": "0"}, {**good, "extra": 1}, {k: v for k, v in good.items() if k != "unread"}):
        with pytest.raises(AssertionError):
            check_frame(json.dumps(bad))


def test_every_frame_the_services_emit_has_its_declared_shape(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # What each publish will send, in publish order; a group numbered in its commit's round trip
    # (the send core) knows it once its writer has read the answer, so each is made at the end.
    publishes: list[Callable[[], tuple[list[events.StoredEvent], list[tuple[int, str]]]]] = []
    real, real_numbered = events.publish_on_commit, events.publish_numbered_on_commit

    def record(*, schema_name: str, events: list[Any], customer_updates: list[tuple[int, str]]) -> None:
        assert schema_name == world.business_a.schema_name  # every publish names its business
        publishes.append(lambda: (events, customer_updates))
        real(schema_name=schema_name, events=events, customer_updates=customer_updates)

    def record_numbered(*, schema_name: str, numbered: Callable[[], Any]) -> None:
        assert schema_name == world.business_a.schema_name
        publishes.append(numbered)
        real_numbered(schema_name=schema_name, numbered=numbered)

    monkeypatch.setattr(events, "publish_on_commit", record)
    monkeypatch.setattr(events, "publish_numbered_on_commit", record_numbered)
    business, agent = world.business_a, world.agent_a
    customer = make_customer("Schema")
    with tenant_context(business):
        first = services.message_send_customer(business=business, customer=customer, body="hi", client_msg_id="s1")
        conversation_id = first.message.conversation_id
        common = {"business": business, "user": agent, "conversation_id": conversation_id}
        reply = services.message_send_agent(**common, body="hello", client_msg_id="s2").message
        services.message_send_agent(**common, body="internal", kind="note")
        services.message_send_template(
            business=business,
            customer=customer,
            template_name="flight_change",
            body="Your flight moved.",
            category="utility",
            author_key="api:test",
        )
        services.messages_mark_by_customer(business=business, customer=customer, up_to=reply.pk, read=True)
        second = services.message_send_customer(business=business, customer=customer, body="ok").message
        services.messages_mark_by_agent(**common, up_to=second.pk, read=False)
        services.messages_mark_by_agent(**common, up_to=second.pk, read=True)
        # Rich messages (issue 13): a photo, a quoted reply with buttons, a tap, a reaction, an
        # edit and a delete.
        photo_file, _created = attachment_upload(
            business=business,
            uploader_key=f"customer:{customer.pk}",
            file=SimpleUploadedFile("p.png", png()),
        )
        photo = services.message_send_customer(
            business=business, customer=customer, body="", attachment_id=photo_file.pk
        ).message
        asked = services.message_send_agent(
            **common,
            body="Rebook?",
            reply_to=photo.pk,
            interactive={"type": "buttons", "options": [{"id": "rebook", "title": "Rebook"}]},
        ).message
        services.message_send_agent(
            **common, body="Seats", interactive={"type": "list", "options": [{"title": "12A", "description": "Window"}]}
        )
        services.message_send_customer(
            business=business, customer=customer, body="", choice={"message_id": asked.pk, "option_id": "rebook"}
        )
        services.reaction_set(business=business, message_id=photo.pk, emoji="👍", user=agent)
        services.message_edit(business=business, message_id=asked.pk, body="Rebook now?", user=agent)
        services.message_delete(business=business, message_id=photo.pk, customer=customer)
        services.conversation_assign(**common, assignee_id=None)
        # issue 12: assignment and lifecycle changes are narrated (conversation.activity).
        services.conversation_assign(**common, assignee_id=agent.pk, note="")
        assignment_services.conversation_snooze(**common, until=None)
        services.conversation_set_status(**common, status="resolved")
        services.contact_update(
            business=business, user=agent, contact_id=first.message.conversation.contact_id, name="N", notes=""
        )
        stored = list(Event.objects.filter(conversation_id=conversation_id).order_by("id"))

    published = [publish() for publish in publishes]
    frames = [e.frame for batch, _updates in published for e in batch]
    # Published frames are the stored ones, byte for byte, and every stored one was published.
    assert frames == [e.frame for e in stored]
    seen = {check_frame(frame)["type"] for frame in frames}
    assert seen == {
        events.MESSAGE_CREATED,
        events.MESSAGE_STATUS,
        events.CONVERSATION_UPDATED,
        events.MESSAGE_EDITED,
        events.MESSAGE_DELETED,
        events.REACTION_SET,
        events.CONVERSATION_ACTIVITY,
    }
    updates = [text for _batch, customer_updates in published for _cid, text in customer_updates]
    assert updates
    for text in updates:
        assert check_frame(text)["business_id"] == business.pk
    # Each stored event names the previous event of its conversation (any audience).
    chain = [e.prev_event_id for batch, _u in published for e in batch]
    assert chain[1:] == [e.id for e in stored][:-1]
