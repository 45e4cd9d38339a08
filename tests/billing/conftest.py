from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from billing import stripe_gateway
from billing.models import LAUNCH_PRICES, BillingAccount, Invoice, RateCard, StripeEvent, UsageCounter, UsageRecord
from tests.billing.fake_stripe import FakeStripe, running
from tests.conftest import World


def wipe_billing() -> None:
    """Committed billing rows and queued billing jobs: gone, so a live test sees only what it
    made. Every business's, not only the session's two: live tests elsewhere (notifications)
    commit businesses of their own with usage, and the reconciliation reads the whole platform."""
    UsageRecord.objects.all().delete()
    UsageCounter.objects.all().delete()
    Invoice.objects.all().delete()
    BillingAccount.objects.all().delete()
    StripeEvent.objects.filter(id__startswith="evt_test_").delete()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_jobs WHERE queue_name = 'billing' AND status IN ('todo', 'doing')")


def active_card(name: str, **prices: str) -> RateCard:
    """A new active rate card (the others retired) with the launch prices, except those given,
    e.g. active_card("Spring", default_service="0.0310")."""
    RateCard.objects.update(is_active=False)
    defaults = {f"default_{category}": price for category, price in LAUNCH_PRICES.items()}
    return RateCard.objects.create(
        name=name, is_active=True, **defaults | {key: Decimal(value) for key, value in prices.items()}
    )


@pytest.fixture
def billing_live(live_db: World) -> Iterator[World]:
    wipe_billing()
    yield live_db
    wipe_billing()


@pytest.fixture
def fake_stripe(settings: Any) -> Iterator[FakeStripe]:
    """A local Stripe the real SDK talks to, with the catalogue already synced."""
    with running(FakeStripe()) as fake:
        settings.STRIPE_SECRET_KEY = "sk_test_fake"
        settings.STRIPE_API_BASE = fake.url
        settings.STRIPE_TIMEOUT_SECONDS = 0.5
        settings.STRIPE_NETWORK_RETRIES = 0
        settings.BILLING_RETRY_BASE_SECONDS = 0
        stripe_gateway.catalog_sync()
        fake.requests.clear()
        yield fake
