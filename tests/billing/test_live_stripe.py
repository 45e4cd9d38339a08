"""Against Stripe's test mode, only when STRIPE_TEST_KEY is set (an sk_test_ key):

    STRIPE_TEST_KEY=sk_test_... pytest tests/billing/test_live_stripe.py -m live_stripe

It creates meters, products and prices (idempotently, with Parley's lookup keys), one customer
(deleted at the end) and a few meter events in that test-mode account.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from django.utils import timezone

from billing import services, stripe_gateway
from billing.models import BillingAccount, UsageRecord
from tests.conftest import World

KEY = os.environ.get("STRIPE_TEST_KEY", "")

pytestmark = [
    pytest.mark.live_stripe,
    pytest.mark.skipif(not KEY, reason="STRIPE_TEST_KEY is not set"),
]


@pytest.fixture
def live_stripe(billing_live: World, settings: Any) -> Iterator[World]:
    assert KEY.startswith(("sk_test_", "rk_test_")), "the live suite runs only against test mode"
    settings.STRIPE_SECRET_KEY = KEY
    settings.STRIPE_API_BASE = ""
    settings.STRIPE_TIMEOUT_SECONDS = 30
    settings.STRIPE_NETWORK_RETRIES = 2
    yield billing_live
    account = BillingAccount.objects.filter(business=billing_live.business_a).first()
    if account and account.stripe_customer_id:
        stripe.StripeClient(KEY).v1.customers.delete(account.stripe_customer_id)


def test_catalogue_customer_and_meter_events_in_test_mode(live_stripe: World) -> None:
    stripe_gateway.catalog_sync()
    second = stripe_gateway.catalog_sync()
    assert not [line for line in second if line.startswith("created")]
    assert set(stripe_gateway.price_ids()) == set(services.CATEGORIES)

    record = services.conversation_charge_for_message(
        business=live_stripe.business_a,
        conversation_id=1,
        customer_id=uuid.uuid4().int % 10**12,
        customer_phone="+4915112345678",
        category="marketing",
        sent_at=timezone.now(),
    )
    assert services.usage_record_report(record_id=str(record.pk)) == "reported"
    record.refresh_from_db()
    assert record.report_state == UsageRecord.ReportState.REPORTED

    # Stripe refuses a second event with the same identifier; the gateway reads that as "already there".
    account = BillingAccount.objects.get(business=live_stripe.business_a)
    accepted = stripe_gateway.meter_event_report(
        identifier=str(record.pk),
        category=record.category,
        customer_id=account.stripe_customer_id,
        value=record.meter_value,
        timestamp=record.opened_at,
    )
    assert accepted is False


def test_checkout_session_in_test_mode(live_stripe: World) -> None:
    stripe_gateway.catalog_sync()
    url = services.checkout_start(
        business=live_stripe.business_a, actor=live_stripe.owner_a, return_url="https://alpha.parley.example/billing/"
    )
    assert url.startswith("https://checkout.stripe.com/")
