from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.humanize.templatetags.humanize import intcomma

from billing import demo, services
from billing.models import Rate, RateCard, UsageRecord
from billing.selectors import period_end
from tenancy.demo import DemoWorld
from tests.conftest import World, business_client, public_client


def test_demo_seed_is_idempotent_and_shows_on_the_pages(world: World) -> None:
    RateCard.objects.all().delete()
    demo_world = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    demo.seed(demo_world)
    counts = (RateCard.objects.count(), Rate.objects.count(), UsageRecord.objects.count())
    demo.seed(demo_world)
    assert (RateCard.objects.count(), Rate.objects.count(), UsageRecord.objects.count()) == counts
    assert {"DE", "AT", "CH", "US"} <= set(Rate.objects.values_list("country", flat=True))
    assert (
        UsageRecord.objects.filter(business=world.business_a).count()
        > UsageRecord.objects.filter(business=world.business_b).count()
        > 0
    )
    assert "CH" in public_client().get("/pricing/").content.decode()
    assert business_client(world.business_a, world.owner_a).get("/billing/").status_code == 200
    assert any("/billing/" in line for line in demo_world.lines)
    # Beside it, a per-message card staff can switch to; activated, the pages follow.
    per_message = RateCard.objects.get(name=demo.PER_MESSAGE_CARD)
    assert not per_message.is_active and per_message.pricing_model == "message"
    assert not Rate.objects.filter(rate_card=per_message, category="service").exists()
    services.rate_card_activate(card=per_message, actor=world.staff)
    assert "You pay per delivered template message" in public_client().get("/pricing/").content.decode()


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 12, 1, 0, 20, tzinfo=UTC),  # the first minutes of a month
        datetime(2026, 2, 15, 12, 0, tzinfo=UTC),
        datetime(2026, 3, 31, 23, 50, tzinfo=UTC),  # the last day of a long month
    ],
    ids=["first", "fifteenth", "last"],
)
def test_demo_usage_includes_today_and_a_full_previous_month(world: World, now: datetime) -> None:
    demo_world = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    with time_machine.travel(now, tick=False):
        demo.seed(demo_world)
        rows = UsageRecord.objects.filter(business=world.business_a, report_error="demo data")
        month = now.replace(day=1, hour=0, minute=0)
        last_month = (month - timedelta(days=1)).replace(day=1)
        days = {d.date() for d in rows.values_list("opened_at", flat=True)}
        assert now.date() in days
        assert not rows.filter(opened_at__gt=now).exists()
        expected = {last_month.date() + timedelta(days=n) for n in range((now.date() - last_month.date()).days + 1)}
        assert days == expected
        # The page opens on this month and shows the figure the seed prints.
        html = business_client(world.business_a, world.owner_a).get("/billing/").content.decode()
    this_month = UsageRecord.objects.filter(
        business=world.business_a, opened_at__gte=month, opened_at__lt=period_end(month)
    ).count()
    assert this_month > 0
    assert f'data-testid="conversations">{intcomma(this_month)}<' in html
    assert any(f"({this_month} conversations this month)" in line for line in demo_world.lines)


def test_subscription_status_says_stripe_is_not_connected_in_ledger_only_mode(world: World) -> None:
    demo.seed(DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b))
    html = business_client(world.business_a, world.owner_a).get("/billing/").content.decode()
    assert "Ledger-only mode." in html
    assert "Subscription" in html and 'data-testid="subscription-ledger-only"' in html
