"""Billing demo data: the rate card, a month of usage for the airline and the bakery, and a paid
subscription with invoices for the airline. Idempotent: ids are derived from the day and index."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.models import (
    CATEGORIES,
    FREE_SERVICE_CONVERSATIONS_PER_MONTH,
    BillingAccount,
    Invoice,
    PricingModel,
    Rate,
    RateCard,
    UsageRecord,
)
from billing.prices import price_for
from billing.selectors import period_end
from billing.services import WINDOW, active_rate_card, month_start, usage_counter_rebuild
from tenancy.demo import DemoWorld
from tenancy.models import Business

# Per conversation, EUR: service, utility, marketing, authentication (modelled on WhatsApp's 2023 card).
RATES = {
    "DE": ("0.0450", "0.0550", "0.1365", "0.0768"),
    "AT": ("0.0420", "0.0500", "0.1300", "0.0700"),
    "CH": ("0.0480", "0.0580", "0.1400", "0.0800"),
    "FR": ("0.0400", "0.0300", "0.1432", "0.0685"),
    "NL": ("0.0400", "0.0500", "0.1597", "0.0750"),
    "IT": ("0.0300", "0.0300", "0.0691", "0.0378"),
    "ES": ("0.0300", "0.0200", "0.0615", "0.0342"),
    "GB": ("0.0350", "0.0220", "0.0705", "0.0358"),
    "US": ("0.0088", "0.0040", "0.0250", "0.0135"),
    "IN": ("0.0040", "0.0014", "0.0099", "0.0014"),
}
PHONES = {
    "DE": "+4915112345678",
    "AT": "+436641234567",
    "CH": "+41791234567",
    "US": "+12025550123",
    "GB": "+447700900123",
}
NAMESPACE = uuid.UUID("7b0a4a56-9d43-4a7e-9a53-3f1f1e0b6a11")


def seed_rate_card() -> RateCard:
    """Country rates on the active card (created if there is none); prices staff have edited stay."""
    card = active_rate_card()
    for country, prices in RATES.items():
        for category, price in zip(CATEGORIES, prices, strict=True):
            Rate.objects.get_or_create(
                rate_card=card, category=category, country=country, defaults={"price": Decimal(price)}
            )
    return card


# The same prices as a per-message card (WhatsApp's July 2025 model), ready for staff to activate
# in the admin ("Make the selected rate card active") to show the other pricing model.
PER_MESSAGE_CARD = "Parley per message 2026"


def seed_per_message_card() -> RateCard:
    """An inactive per-message card beside the active per-conversation one (never activated
    here: the demo's ledger and pages stay per conversation unless staff switch)."""
    active = active_rate_card()
    card, created = RateCard.objects.get_or_create(
        name=PER_MESSAGE_CARD,
        defaults={
            "is_active": False,
            "pricing_model": PricingModel.MESSAGE,
            **{f"default_{c}": active.default_for(c) for c in CATEGORIES},
        },
    )
    if created:
        Rate.objects.bulk_create(
            Rate(rate_card=card, category=category, country=country, price=Decimal(price))
            for country, prices in RATES.items()
            for category, price in zip(CATEGORIES, prices, strict=True)
            if category != "service"  # free under per-message pricing
        )
    return card


def usage_days(now: datetime) -> list[date]:
    """The demo's history: every day from the first of last month through today, so the month
    /billing/ opens on always has data (today's included) and "previous month" is a full one."""
    today = now.astimezone(UTC).date()
    first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    return [first + timedelta(days=n) for n in range((today - first).days + 1)]


def _usage(business: Business, *, per_day: int, mix: tuple[int, int, int, int], countries: list[str]) -> int:
    """Usage from the first of last month until now. Demo rows are history: nothing is queued
    for Stripe."""
    rng = random.Random(business.slug)
    now = timezone.now().astimezone(UTC)
    today = now.date()
    rows: list[UsageRecord] = []
    prices = {(c, k): price_for(category=c, country=k) for c in CATEGORIES for k in countries}
    for day in usage_days(now):
        weekday_factor = 0.5 if day.weekday() >= 5 else 1.0
        count = max(1, int(rng.gauss(per_day, per_day / 4) * weekday_factor))
        midnight = datetime.combine(day, time(0), tzinfo=UTC)
        if day == today:
            # Today so far: a share of the day's conversations, all opened before now.
            elapsed = max(1, int((now - midnight).total_seconds() // 60))
            count = max(1, count * elapsed // (24 * 60))
        for n in range(count):
            category = rng.choices(CATEGORIES, weights=mix)[0]
            country = rng.choice(countries)
            if day == today:
                opened = midnight + timedelta(minutes=rng.randrange(elapsed))
            else:
                opened = midnight + timedelta(hours=7, minutes=rng.randrange(14 * 60))
            key = f"demo:{business.slug}:{day.isoformat()}:{n}"
            rows.append(
                UsageRecord(
                    id=uuid.uuid5(NAMESPACE, key),
                    business=business,
                    conversation_id=0,
                    # Synthetic customers, far above real ids, one per demo conversation.
                    customer_id=9_000_000_000 + uuid.uuid5(NAMESPACE, key).int % 1_000_000_000,
                    category=category,
                    country=country,
                    opened_at=opened,
                    window_ends_at=opened + WINDOW,
                    unit_price=prices[(category, country)],
                    report_state=UsageRecord.ReportState.NOT_BILLED,
                    report_error="demo data",
                )
            )
    # The free tier is decided in order of opening, as it would have been live.
    rows.sort(key=lambda r: r.opened_at)
    existing = set(UsageRecord.objects.filter(pk__in=[r.pk for r in rows]).values_list("pk", flat=True))
    counts: dict[datetime, int] = {}
    for row in rows:
        if row.category == "service":
            month = month_start(row.opened_at)
            counts[month] = counts.get(month, 0) + 1
            row.free = counts[month] <= FREE_SERVICE_CONVERSATIONS_PER_MONTH
    new = [r for r in rows if r.pk not in existing]
    UsageRecord.objects.bulk_create(new, ignore_conflicts=True, batch_size=1000)
    for month in {month_start(r.opened_at) for r in rows}:
        usage_counter_rebuild(business=business, month=month)
    return len(new)


def _airline_subscription(business: Business) -> None:
    account, _created = BillingAccount.objects.get_or_create(business=business)
    if not account.subscription_status:
        account.subscription_status = "active"
        account.subscription_id = "sub_demo_aurora"
        account.current_period_end = month_start(timezone.now()) + timedelta(days=32)
        account.save()
    start = month_start(timezone.now())
    for months_back, amount in ((1, 18_940), (2, 17_215)):
        period_end = start
        for _ in range(months_back - 1):
            period_end = month_start(period_end - timedelta(days=1))
        period_start = month_start(period_end - timedelta(days=1))
        Invoice.objects.get_or_create(
            id=f"in_demo_aurora_{period_start:%Y%m}",
            defaults={
                "account": account,
                "number": f"DEMO-{period_start:%Y%m}",
                "status": "paid",
                "amount_due": amount,
                "amount_paid": amount,
                "period_start": period_start,
                "period_end": period_end,
                "created": period_end + timedelta(hours=2),
            },
        )


def seed(world: DemoWorld) -> None:
    with transaction.atomic():
        seed_rate_card()
        seed_per_message_card()
        airline = _usage(world.airline, per_day=40, mix=(60, 30, 5, 5), countries=["DE", "AT", "CH", "US", "GB"])
        bakery = _usage(world.bakery, per_day=4, mix=(85, 10, 5, 0), countries=["DE", "DE", "AT"])
        _airline_subscription(world.airline)
    this_month = month_start(timezone.now())
    # The figures /billing/ opens on: this month so far (the seed also fills last month).
    airline_month, bakery_month = (
        UsageRecord.objects.filter(
            business=business, opened_at__gte=this_month, opened_at__lt=period_end(this_month), voided_at__isnull=True
        ).count()
        for business in (world.airline, world.bakery)
    )
    world.lines.append(
        f"Billing: {world.airline.absolute_url('/billing/')} ({airline_month} conversations this month), "
        f"{world.bakery.absolute_url('/billing/')} ({bakery_month}); last month is filled in too"
        f" ({airline + bakery} new demo conversations)"
    )
    world.lines.append(
        f"Rate cards: per conversation (active) and “{PER_MESSAGE_CARD}” (per template message): "
        "activate it in the admin under Billing → Rate cards to see /pricing/ and /billing/ switch"
    )
