"""Every webhook body the services queue matches its declared shape
(notifications.webhooks.*Body), as tests/messaging/test_event_schemas.py does for the realtime
frames: a missing, extra or mistyped field fails here before a receiver trips over it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from messaging import services as messaging
from notifications import services, webhooks
from notifications.models import WebhookDelivery, WebhookEndpoint
from template_reviews.models import TemplateReview
from template_reviews.services import template_review_approve, template_review_reject
from tests.conftest import World, in_business
from tests.messaging.conftest import make_customer
from tests.messaging.test_event_schemas import _check
from tests.notifications.conftest import template_content


def check_body(body: str) -> dict[str, Any]:
    payload = json.loads(body)
    shape = webhooks.WEBHOOK_SHAPES.get(payload.get("type"))
    assert shape is not None, f"undeclared webhook type in {body}"
    problems = _check(payload, shape, payload["type"])
    assert not problems, "\n".join(problems)
    return payload


def test_every_event_type_an_endpoint_can_choose_has_a_shape() -> None:
    assert set(webhooks.WEBHOOK_SHAPES) == set(WebhookEndpoint.EventType.values)


def test_the_checker_catches_a_bad_body() -> None:
    good = {
        "id": "2f1c",
        "type": "template.status",
        "created_at": "2026-12-02T10:00:00Z",
        "business": "acme",
        "event_id": None,
        "data": {"template": {"id": 1, "name": "x", "language": "en", "status": "approved", "reason": ""}},
    }
    check_body(json.dumps(good))
    bad_template = {**good["data"]["template"], "status": "maybe"}  # type: ignore[index]
    for bad in ({**good, "event_id": "1"}, {**good, "extra": 1}, {**good, "data": {"template": bad_template}}):
        with pytest.raises(AssertionError):
            check_body(json.dumps(bad))


def test_every_body_the_services_queue_has_its_declared_shape(world: World, settings: Any) -> None:
    settings.PARLEY_WEBHOOKS_ALLOW_PRIVATE = True
    business, agent = world.business_a, world.agent_a
    customer = make_customer("Hooks")
    with in_business(business):
        endpoint = webhooks.webhook_endpoint_create(
            business=business,
            actor=world.owner_a,
            url="http://127.0.0.1:9/hooks",
            event_types=list(WebhookEndpoint.EventType.values),
        )
        first = messaging.message_send_customer(business=business, customer=customer, body="Where is my bag?")
        conversation_id = first.message.conversation_id
        common = {"business": business, "user": agent, "conversation_id": conversation_id}
        reply = messaging.message_send_agent(**common, body="On its way.").message
        messaging.messages_mark_by_customer(business=business, customer=customer, up_to=reply.pk, read=True)
        messaging.conversation_set_status(**common, status="resolved")
        approved = services.template_create(business=business, actor=None, content=template_content())
        template_review_approve(
            review=TemplateReview.objects.get(business=business, template_id=approved.pk), reviewer=world.staff
        )
        rejected = services.template_create(business=business, actor=None, content=template_content(name="promo"))
        template_review_reject(
            review=TemplateReview.objects.get(business=business, template_id=rejected.pk),
            reviewer=world.staff,
            reason="Too vague",
        )
        webhooks.webhook_dispatch_stream(business=business)
        bodies = list(WebhookDelivery.objects.filter(endpoint=endpoint).order_by("id").values_list("body", flat=True))

    checked = [check_body(body) for body in bodies]
    assert {body["type"] for body in checked} == set(webhooks.WEBHOOK_SHAPES)
    assert all(body["business"] == business.slug for body in checked)
    statuses = [b["data"] for b in checked if b["type"] == "message.status"]
    assert {(s["direction"], s["status"]) for s in statuses} >= {("in", "read"), ("out", "read")}
    decisions = {b["data"]["template"]["status"] for b in checked if b["type"] == "template.status"}
    assert decisions == {"approved", "rejected"}
