"""Conversation windows, categories, prices and the free tier, with a moving clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from billing import services
from billing.models import (
    FREE_SERVICE_CONVERSATIONS_PER_MONTH,
    LAUNCH_PRICES,
    Rate,
    RateCard,
    UsageCounter,
    UsageRecord,
)
from billing.prices import price_for
from billing.services import conversation_charge_for_message
from tests.billing.conftest import active_card, wipe_billing
from tests.conftest import Concurrently, World

DE_PHONE = "+4915112345678"
AT_PHONE = "+436641234567"
US_PHONE = "+12025550123"


@pytest.fixture
def card(world: World) -> RateCard:
    card = active_card(
        "Test card",
        default_service="0.0300",
        default_utility="0.0400",
        default_marketing="0.0700",
        default_authentication="0.0350",
    )
    Rate.objects.create(rate_card=card, category="marketing", country="DE", price=Decimal("0.1365"))
    Rate.objects.create(rate_card=card, category="service", country="DE", price=Decimal("0.0450"))
    Rate.objects.create(rate_card=card, category="utility", country="AT", price=Decimal("0.0550"))
    return card


def charge(
    world: World, *, customer: int, category: str = "service", phone: str = DE_PHONE, conversation: int = 1
) -> UsageRecord:
    return conversation_charge_for_message(
        business=world.business_a,
        conversation_id=conversation,
        customer_id=customer,
        customer_phone=phone,
        category=category,
        sent_at=timezone.now(),
    )


def customer_id() -> int:
    return uuid.uuid4().int % 10**12


def jobs_for(record: UsageRecord) -> int:
    return ProcrastinateJob.objects.filter(
        task_name="billing.report_usage_record", args__record_id=str(record.pk)
    ).count()


def test_messages_within_24_hours_are_one_conversation(world: World, card: RateCard) -> None:
    customer = customer_id()
    with time_machine.travel(datetime(2026, 3, 10, 9, 0, tzinfo=UTC), tick=False) as clock:
        first = charge(world, customer=customer)
        clock.shift(timedelta(hours=3))
        second = charge(world, customer=customer)
        clock.shift(timedelta(hours=20, minutes=59))
        third = charge(world, customer=customer, category="marketing")
    assert first.pk == second.pk == third.pk
    assert UsageRecord.objects.filter(business=world.business_a, customer_id=customer).count() == 1
    assert first.window_ends_at == first.opened_at + timedelta(hours=24)


def test_message_after_the_window_opens_a_new_conversation(world: World, card: RateCard) -> None:
    customer = customer_id()
    with time_machine.travel(datetime(2026, 3, 10, 9, 0, tzinfo=UTC), tick=False) as clock:
        first = charge(world, customer=customer)
        clock.shift(timedelta(hours=24))  # the window is [opened, opened + 24 h)
        second = charge(world, customer=customer, category="utility", phone=AT_PHONE)
        clock.shift(timedelta(hours=1))
        third = charge(world, customer=customer)
    assert first.pk != second.pk
    assert second.pk == third.pk
    assert second.category == "utility" and second.unit_price == Decimal("0.0550")
    assert second.opened_at == first.window_ends_at


def test_conversations_are_per_customer_and_per_business(world: World, card: RateCard) -> None:
    one, two = customer_id(), customer_id()
    a = charge(world, customer=one)
    b = charge(world, customer=two)
    c = conversation_charge_for_message(
        business=world.business_b,
        conversation_id=9,
        customer_id=one,
        customer_phone=DE_PHONE,
        category="service",
        sent_at=timezone.now(),
    )
    assert len({a.pk, b.pk, c.pk}) == 3


@pytest.mark.parametrize(
    ("category", "phone", "country", "price", "free"),
    [
        ("service", DE_PHONE, "DE", Decimal("0.0450"), True),
        ("utility", AT_PHONE, "AT", Decimal("0.0550"), False),
        ("utility", DE_PHONE, "DE", Decimal("0.0400"), False),
        ("marketing", DE_PHONE, "DE", Decimal("0.1365"), False),
        ("marketing", US_PHONE, "US", Decimal("0.0700"), False),
        ("authentication", US_PHONE, "US", Decimal("0.0350"), False),
        ("authentication", "not a phone number", "", Decimal("0.0350"), False),
    ],
)
def test_category_country_and_price(
    world: World, card: RateCard, category: str, phone: str, country: str, price: Decimal, free: bool
) -> None:
    record = charge(world, customer=customer_id(), category=category, phone=phone)
    record.refresh_from_db()
    assert record.category == category
    assert record.unit_price == price
    assert record.free is free
    assert record.country == country
    # Only chargeable conversations go to Stripe; each has exactly one report queued with it.
    assert jobs_for(record) == (0 if free else 1)
    assert record.report_state == ("not_billed" if free else "pending")


def test_unknown_category_is_refused(world: World, card: RateCard) -> None:
    with pytest.raises(ValueError, match="category"):
        charge(world, customer=customer_id(), category="promotional")


def test_a_send_that_fails_bills_nothing(world: World, card: RateCard) -> None:
    """Messaging charges inside the send's transaction: a blocked or failed send rolls back and
    takes the usage record and its queued report with it."""
    customer = customer_id()

    class Blocked(Exception):
        pass

    with pytest.raises(Blocked), transaction.atomic():
        record = charge(world, customer=customer, category="marketing")
        assert jobs_for(record) == 1
        raise Blocked
    assert not UsageRecord.objects.filter(customer_id=customer).exists()
    assert not ProcrastinateJob.objects.filter(args__record_id=str(record.pk)).exists()
    # The next delivered message opens the conversation: nothing was left half-open.
    assert charge(world, customer=customer, category="marketing").pk != record.pk


def test_a_message_that_fails_after_commit_is_voided(world: World, card: RateCard) -> None:
    customer = customer_id()
    record = charge(world, customer=customer, category="utility")
    services.conversation_charge_void(record_id=record.pk, reason="delivery failed")
    record.refresh_from_db()
    assert record.voided_at is not None and record.report_state == "not_billed" and record.amount == 0
    # A voided conversation is not open: the next delivered message opens (and bills) a new one.
    again = charge(world, customer=customer, category="utility")
    assert again.pk != record.pk and again.chargeable
    assert services.usage_record_report(record_id=str(record.pk)) == "skipped"


def test_free_tier_covers_the_first_1000_service_conversations_of_a_month(world: World, card: RateCard) -> None:
    march = datetime(2026, 3, 1, tzinfo=UTC)
    bulk = FREE_SERVICE_CONVERSATIONS_PER_MONTH - 2
    UsageRecord.objects.bulk_create(
        UsageRecord(
            business=world.business_a,
            conversation_id=i,
            customer_id=10**13 + i,
            category="service",
            country="DE",
            opened_at=march + timedelta(minutes=i),
            window_ends_at=march + timedelta(minutes=i, hours=24),
            unit_price=Decimal("0.0450"),
            free=True,
            report_state="not_billed",
        )
        for i in range(bulk)
    )
    assert services.usage_counter_rebuild(business=world.business_a, month=march) == bulk
    with time_machine.travel(datetime(2026, 3, 20, 12, 0, tzinfo=UTC), tick=False) as clock:
        marketing = charge(world, customer=customer_id(), category="marketing")
        n999 = charge(world, customer=customer_id())
        n1000 = charge(world, customer=customer_id())
        n1001 = charge(world, customer=customer_id())
        n1002 = charge(world, customer=customer_id(), phone=US_PHONE)
        clock.move_to(datetime(2026, 4, 1, 0, 0, tzinfo=UTC))
        april = charge(world, customer=customer_id())
    assert not marketing.free  # the free tier is for service conversations only
    assert n999.free and n1000.free
    assert not n1001.free and not n1002.free
    assert n1001.amount == Decimal("0.0450") and n1002.amount == Decimal("0.0300")
    assert april.free  # a new calendar month starts a new free tier
    march_free = UsageRecord.objects.filter(
        business=world.business_a,
        category="service",
        free=True,
        opened_at__gte=march,
        opened_at__lt=datetime(2026, 4, 1, tzinfo=UTC),
    ).count()
    assert march_free == FREE_SERVICE_CONVERSATIONS_PER_MONTH


def test_the_database_refuses_overlapping_windows(world: World, card: RateCard) -> None:
    record = charge(world, customer=customer_id())
    with pytest.raises(IntegrityError), transaction.atomic():
        UsageRecord.objects.create(
            business=world.business_a,
            conversation_id=2,
            customer_id=record.customer_id,
            category="utility",
            opened_at=record.opened_at + timedelta(hours=1),
            window_ends_at=record.opened_at + timedelta(hours=25),
            unit_price=Decimal("0.04"),
        )


def test_concurrent_sends_open_one_conversation(billing_live: World, concurrently: Concurrently) -> None:
    """Eight threads send to the same customer at once, each in its own transaction."""
    world = billing_live
    customer = customer_id()
    results: list[str] = []

    def send() -> None:
        with transaction.atomic():
            record = charge(world, customer=customer, category="marketing")
        results.append(str(record.pk))

    concurrently(8, send)
    assert len(set(results)) == 1
    assert UsageRecord.objects.filter(customer_id=customer).count() == 1
    wipe_billing()


def test_business_may_initiate_until_the_grace_period_ends(world: World) -> None:
    account = services.billing_account_for(business=world.business_a)
    assert services.business_may_initiate(business=world.business_a)
    account.grace_period_ends_at = timezone.now() + timedelta(days=1)
    account.save()
    assert services.business_may_initiate(business=world.business_a)
    account.grace_period_ends_at = timezone.now() - timedelta(seconds=1)
    account.save()
    assert not services.business_may_initiate(business=world.business_a)


def test_the_free_tier_boundary_holds_under_concurrent_sends(billing_live: World, concurrently: Concurrently) -> None:
    """Sends to different customers at once, around the 1,000th service conversation: exactly
    1,000 are free, however the transactions interleave."""
    world = billing_live
    with transaction.atomic():
        UsageCounter.objects.update_or_create(
            business=world.business_a,
            month=services.month_start(timezone.now()).date(),
            category="service",
            defaults={"count": FREE_SERVICE_CONVERSATIONS_PER_MONTH - 5},
        )

    def send() -> None:
        for _ in range(3):
            with transaction.atomic():
                charge(world, customer=customer_id())

    concurrently(6, send)
    records = UsageRecord.objects.filter(business=world.business_a, category="service")
    assert records.count() == 18
    assert records.filter(free=True).count() == 5
    assert jobs_for_all(records.filter(free=False)) == 13
    wipe_billing()


def jobs_for_all(records: Any) -> int:
    ids = [str(pk) for pk in records.values_list("pk", flat=True)]
    return ProcrastinateJob.objects.filter(task_name="billing.report_usage_record", args__record_id__in=ids).count()


def statements(ctx: CaptureQueriesContext) -> list[str]:
    # django-tenants may repeat `SET search_path` before each statement; count the work itself.
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith("SET search_path")]


@pytest.mark.parametrize(("category", "budget"), [("service", 4), ("utility", 4)])
def test_the_send_path_stays_within_its_query_budget(world: World, card: RateCard, category: str, budget: int) -> None:
    """It runs inside every business message send: lock, look for the open conversation, and only
    for a new one count the free tier (service) or queue the report (chargeable), and insert the
    row with its price read in the same statement."""
    customer = customer_id()
    with transaction.atomic():
        with CaptureQueriesContext(connection) as opening:
            record = charge(world, customer=customer, category=category, phone=AT_PHONE)
        with CaptureQueriesContext(connection) as inside:
            assert charge(world, customer=customer, category=category, phone=AT_PHONE).pk == record.pk
    assert len(statements(opening)) == budget, statements(opening)
    assert len(statements(inside)) == 2, statements(inside)
    assert record.unit_price == (Decimal("0.0550") if category == "utility" else Decimal("0.0300"))


def test_without_an_active_card_the_launch_prices_apply(world: World) -> None:
    RateCard.objects.update(is_active=False)
    record = charge(world, customer=customer_id(), category="marketing")
    record.refresh_from_db()
    assert record.unit_price == LAUNCH_PRICES["marketing"] == Decimal("0.0700")
    assert price_for(category="marketing", country="DE") == Decimal("0.0700")


def test_the_stored_country_prices_without_parsing_the_number(
    world: World, card: RateCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send core hands billing the customer's stored country (read from their number when
    they verified it): that prices the message, and the number is parsed only without one."""
    parsed: list[str] = []

    def country_for_phone(phone: str) -> str:
        parsed.append(phone)
        return "AT"

    monkeypatch.setattr(services, "country_for_phone", country_for_phone)
    stored, unknown = services.charges_for_messages(
        business=world.business_a,
        requests=[
            services.ChargeRequest(1, customer_id(), DE_PHONE, "marketing", customer_country="DE"),
            services.ChargeRequest(2, customer_id(), AT_PHONE, "utility"),
        ],
        sent_at=timezone.now(),
    )
    assert stored.record is not None and unknown.record is not None
    assert (stored.record.country, stored.record.unit_price) == ("DE", Decimal("0.1365"))
    assert (unknown.record.country, unknown.record.unit_price) == ("AT", Decimal("0.0550"))
    assert parsed == [AT_PHONE]
