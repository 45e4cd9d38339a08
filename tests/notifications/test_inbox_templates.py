"""The inbox's template picker: a conversation whose 24-hour window has closed gets the approved
templates with their placeholders and the price of sending now, and sends one through the send
core (check_template_send → the writer), billed like any template."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import time_machine
from django.utils import timezone

from billing.models import UsageRecord
from customers.services import customer_mute_marketing
from messaging.models import Message
from messaging.services import message_send_customer
from tests.billing.test_per_message import per_message_card
from tests.conftest import World, business_client, in_business
from tests.messaging.test_api import make_customer
from tests.notifications.conftest import approved_template, template_content


def closed_conversation(world: World) -> tuple[Any, int]:
    """A customer who wrote more than 24 hours ago: the window is closed."""
    customer = make_customer("Picker")
    with time_machine.travel(timezone.now() - timedelta(hours=30)), in_business(world.business_a):
        sent = message_send_customer(business=world.business_a, customer=customer, body="Hallo?")
    return customer, sent.message.conversation_id


def post(client: Any, data: Any) -> Any:
    return client.post("/inbox/templates/send/", json.dumps(data), content_type="application/json")


def test_a_closed_conversation_offers_approved_templates_with_their_price(world: World) -> None:
    with in_business(world.business_a):
        approved_template(world.business_a, world.staff)
        from notifications import services

        services.template_create(business=world.business_a, actor=None, content=template_content(name="in_review"))
    customer, conversation_id = closed_conversation(world)
    agent = business_client(world.business_a, world.agent_a)
    body = agent.get(f"/inbox/templates/?conversation={conversation_id}").json()
    [choice] = body["templates"]  # the one in review is not offered
    assert choice["name"] == "flight_change" and choice["placeholders"] == ["flight", "time"]
    assert choice["price"] == {"amount": "0.0400", "currency": "EUR", "per": "conversation", "opens": True}

    sent = post(
        agent,
        {
            "conversation_id": conversation_id,
            "template_id": choice["id"],
            "parameters": {"flight": "LH 9", "time": "07:10"},
            "client_msg_id": "pick-1",
        },
    )
    assert sent.status_code == 201, sent.content
    assert sent.json()["price"] == {"amount": "0.0400", "currency": "EUR", "per": "conversation"}
    with in_business(world.business_a):
        message = Message.objects.get(pk=sent.json()["message_id"])
        assert (message.kind, message.author_kind, message.author_user_id) == ("template", "agent", world.agent_a.pk)
        assert message.template_name == "flight_change" and "LH 9" in message.body and "07:10" in message.body
    [record] = UsageRecord.objects.filter(business=world.business_a, customer_id=customer.pk)
    assert record.category == "utility" and record.unit_price == Decimal("0.0400")
    # The conversation is open now: the next template costs nothing more; a retry is no second send.
    again = agent.get(f"/inbox/templates/?conversation={conversation_id}").json()["templates"][0]
    assert again["price"]["amount"] == "0.0000" and not again["price"]["opens"]
    retry = post(
        agent,
        {
            "conversation_id": conversation_id,
            "template_id": choice["id"],
            "parameters": {"flight": "LH 9", "time": "07:10"},
            "client_msg_id": "pick-1",
        },
    )
    assert retry.json()["message_id"] == sent.json()["message_id"]


def test_per_message_pricing_is_quoted_per_message(world: World) -> None:
    per_message_card()
    with in_business(world.business_a):
        approved_template(world.business_a, world.staff, category="marketing")
    _customer, conversation_id = closed_conversation(world)
    agent = business_client(world.business_a, world.agent_a)
    [choice] = agent.get(f"/inbox/templates/?conversation={conversation_id}").json()["templates"]
    assert choice["price"] == {"amount": "0.1365", "currency": "EUR", "per": "message", "opens": False}


def test_bad_picks_are_clear_errors_and_send_nothing(world: World) -> None:
    with in_business(world.business_a):
        template = approved_template(world.business_a, world.staff, category="marketing")
    customer, conversation_id = closed_conversation(world)
    agent = business_client(world.business_a, world.agent_a)
    pick = {"conversation_id": conversation_id, "template_id": template.pk}
    missing = post(agent, {**pick, "parameters": {"flight": "LH 9"}})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_parameter"
    unknown = post(agent, {**pick, "conversation_id": 10**9, "parameters": {"flight": "x", "time": "y"}})
    assert unknown.status_code == 404
    assert post(agent, [1, 2]).status_code == 400
    assert agent.get("/inbox/templates/?conversation=nope").status_code == 404
    customer_mute_marketing(customer=customer, business=world.business_a)
    muted = post(agent, {**pick, "parameters": {"flight": "x", "time": "y"}})
    assert muted.status_code == 409 and muted.json()["error"]["code"] == "customer_opted_out"
    with in_business(world.business_a):
        assert not Message.objects.filter(conversation_id=conversation_id, kind="template").exists()
    assert not UsageRecord.objects.filter(business=world.business_a, customer_id=customer.pk).exists()


def test_another_business_sees_and_sends_nothing_of_it(world: World) -> None:
    with in_business(world.business_a):
        template = approved_template(world.business_a, world.staff)
    _customer, conversation_id = closed_conversation(world)
    # A's agent on B's host has no seat there; B's owner on B's host reads B's schema only.
    stranger = business_client(world.business_b, world.agent_a)
    assert stranger.get(f"/inbox/templates/?conversation={conversation_id}").status_code == 403
    assert post(stranger, {"conversation_id": conversation_id, "template_id": template.pk}).status_code == 403
    owner_b = business_client(world.business_b, world.owner_b)
    listed = owner_b.get(f"/inbox/templates/?conversation={conversation_id}")
    assert listed.status_code == 404 or all(t["name"] != "flight_change" for t in listed.json()["templates"])
    sent = post(
        owner_b,
        {"conversation_id": conversation_id, "template_id": template.pk, "parameters": {"flight": "x", "time": "y"}},
    )
    assert sent.status_code == 404
    with in_business(world.business_a):
        assert not Message.objects.filter(conversation_id=conversation_id, kind="template").exists()
