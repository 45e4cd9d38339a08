"""A validly signed but malformed Stripe event is a 4xx, never a 500, and stores nothing
(issue 10, defect 10). The shapes here are the ones PostgreSQL or Python refuse late: a NUL in
a text column or in jsonb, a timestamp out of range, nesting deeper than the JSON parser goes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from billing.models import StripeEvent
from tests.billing.test_webhooks import event, post
from tests.conftest import World, public_client


@pytest.fixture(autouse=True)
def webhook_secret(settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test_parley"


def nested(depth: int) -> bytes:
    body = event("invoice.paid", {"id": "in_deep"})
    text = json.dumps(body)
    return text.replace('{"id": "in_deep"}', '{"id": "in_deep", "x": ' + "[" * depth + "]" * depth + "}").encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"id": "evt_nul\x00id"}, id="nul-in-id"),
        pytest.param({"type": "invoice.paid\x00"}, id="nul-in-type"),
        pytest.param({"data": {"object": {"id": "in_1", "memo": "a\x00b"}}}, id="nul-in-object"),
        pytest.param({"data": {"object": {"id": "in_1", "a\x00": 1}}}, id="nul-in-key"),
        pytest.param({"created": 10**20}, id="created-out-of-range"),
        pytest.param({"created": -(10**20)}, id="created-before-year-1"),
        pytest.param(b"deep", id="nested-past-the-parser"),
    ],
)
def test_signed_malformed_events_are_a_4xx_and_store_nothing(world: World, body: dict[str, Any] | bytes) -> None:
    before = StripeEvent.objects.count()
    payload = nested(100_000) if body == b"deep" else {**event("invoice.paid", {"id": "in_malformed"}), **body}
    response = post(public_client(), payload)
    assert response.status_code == 400, response.content[:300]
    assert "not a Stripe event" in response.json()["error"]
    assert StripeEvent.objects.count() == before
