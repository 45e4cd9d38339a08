"""Per-message pricing (WhatsApp's July 2025 model), a rate-card mode beside per-conversation:
each template message is one ledger row priced by category and country; service replies are
free, and so are utility templates inside an open service window. Through the real send core,
the API, the pages and Stripe (the real SDK against the local fake)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.utils import timezone
from django_tenants.utils import tenant_context
from procrastinate.contrib.django.models import ProcrastinateJob

from accounts.models import Customer
from billing.models import Rate, RateCard, UsageRecord
from billing.services import charge_for_message
from messaging.models import Message
from tests.billing.conftest import active_card
from tests.billing.fake_stripe import FakeStripe
from tests.billing.test_reporting import assert_reported_exactly_once, run_until_reported
from tests.conftest import World, business_client, public_client


def per_message_card(name: str = "Per message 2026") -> RateCard:
    card = active_card(name, default_utility="0.0400", default_marketing="0.0700")
    card.pricing_model = "message"
    card.save()
    Rate.objects.create(rate_card=card, category="marketing", country="DE", price=Decimal("0.1365"))
    return card


def german_customer() -> Customer:
    phone = "+49151" + "".join(random.choice("0123456789") for _ in range(8))
    return Customer.objects.create(
        phone_number=phone, display_name="Lea", country_code="DE", verified_at=timezone.now()
    )


def report_jobs(record: UsageRecord) -> int:
    return ProcrastinateJob.objects.filter(
        task_name="billing.report_usage_record", args__record_id=str(record.pk)
    ).count()


def template(business: Any, customer: Customer, category: str) -> Any:
    from messaging.services import message_send_template

    return message_send_template(
        business=business,
        customer=customer,
        template_name=f"{category}_test",
        body=f"A {category} message.",
        category=category,
        author_key="api:test",
    )


def test_each_template_message_is_charged_and_service_replies_are_free(world: World) -> None:
    from messaging.services import message_send_agent, message_send_customer

    per_message_card()
    business, customer = world.business_a, german_customer()
    with time_machine.travel(datetime(2026, 9, 1, 8, 0, tzinfo=UTC), tick=False) as clock, tenant_context(business):
        conversation_id = message_send_customer(business=business, customer=customer, body="Hi").message.conversation_id

        reply = message_send_agent(business=business, user=world.agent_a, conversation_id=conversation_id, body="Hello")
        assert reply.charge is not None and reply.charge.record is None and reply.charge.price == 0
        assert not UsageRecord.objects.filter(customer_id=customer.pk).exists()  # free, nothing to report

        # Utility inside the open service window: recorded, free, never reported.
        clock.shift(timedelta(minutes=5))
        utility = template(business, customer, "utility")
        assert utility.charge is not None and utility.charge.price == 0
        free = UsageRecord.objects.get(customer_id=customer.pk, category="utility")
        assert (free.unit, free.free, free.report_state) == ("message", True, "not_billed")
        assert free.message_id == utility.message.pk and free.conversation_id == conversation_id
        assert report_jobs(free) == 0

        # Marketing is charged whatever the window, at the customer's country's rate, per message.
        first = template(business, customer, "marketing")
        second = template(business, customer, "marketing")
        records = list(UsageRecord.objects.filter(customer_id=customer.pk, category="marketing").order_by("opened_at"))
        assert len(records) == 2 and {r.message_id for r in records} == {first.message.pk, second.message.pk}
        assert all(r.unit == "message" and r.country == "DE" and r.unit_price == Decimal("0.1365") for r in records)
        assert all(r.chargeable and r.report_state == "pending" and report_jobs(r) == 1 for r in records)
        assert first.charge is not None and first.charge.price == Decimal("0.1365")
        assert second.charge is not None and second.charge.price == Decimal("0.1365")

        # Once the service window has closed, a utility template costs its price.
        clock.shift(timedelta(hours=25))
        late = template(business, customer, "utility")
        assert late.charge is not None and late.charge.price == Decimal("0.0400")
        charged = UsageRecord.objects.get(customer_id=customer.pk, category="utility", free=False)
        assert charged.message_id == late.message.pk and report_jobs(charged) == 1

        with tenant_context(business):
            assert Message.objects.filter(conversation_id=conversation_id, direction="out").count() == 5


def test_a_blocked_send_is_not_charged_per_message(world: World) -> None:
    from customers.services import customer_block
    from messaging.services import MessagingError

    per_message_card()
    business, customer = world.business_a, german_customer()
    customer_block(customer=customer, business=business)
    with tenant_context(business), pytest.raises(MessagingError):
        template(business, customer, "marketing")
    assert not UsageRecord.objects.filter(customer_id=customer.pk).exists()


def test_switching_models_keeps_each_row_in_its_own_model(world: World) -> None:
    """A conversation opened per conversation stays one; per-message rows may overlap it (the
    database refuses overlapping conversations only)."""
    active_card("Per conversation")
    business, customer = world.business_a, german_customer()
    with time_machine.travel(datetime(2026, 9, 2, 8, 0, tzinfo=UTC), tick=False) as clock, tenant_context(business):
        opened = template(business, customer, "marketing")
        assert opened.charge is not None and opened.charge.opened and opened.charge.unit == "conversation"
        per_message_card("Switched")
        clock.shift(timedelta(hours=1))
        charged = template(business, customer, "marketing")
        assert charged.charge is not None and charged.charge.unit == "message" and charged.charge.price > 0
        active_card("Back again")
        clock.shift(timedelta(hours=1))
        joined = template(business, customer, "marketing")
        assert joined.charge is not None and not joined.charge.opened and joined.charge.price == 0
    units = sorted(UsageRecord.objects.filter(customer_id=customer.pk).values_list("unit", flat=True))
    assert units == ["conversation", "message"]


def test_the_api_answer_carries_the_price_of_each_message(world: World) -> None:
    from tests.conftest import in_business
    from tests.messaging.test_api import api_for, send_flight
    from tests.notifications.conftest import approved_template

    per_message_card()
    with in_business(world.business_a):
        approved_template(world.business_a, world.staff)
    api = api_for(world)
    customer = german_customer()
    first = send_flight(api, customer.phone_number).json()
    second = send_flight(api, customer.phone_number).json()
    for body in (first, second):
        assert body["status"] == "sent"
        assert body["price"] == {"amount": "0.0400", "currency": "EUR", "per": "message"}
    assert UsageRecord.objects.filter(customer_id=customer.pk, unit="message", free=False).count() == 2


def test_pricing_and_billing_pages_show_the_model_that_applies(world: World) -> None:
    per_conversation = public_client().get("/pricing/").content.decode()
    assert "You pay per conversation" in per_conversation
    per_message_card()
    html = public_client().get("/pricing/").content.decode()
    assert "You pay per delivered template message" in html
    assert "Price per template message (EUR)" in html and "€0.1365" in html and "Free" in html

    business, customer = world.business_a, german_customer()
    with tenant_context(business):
        template(business, customer, "marketing")
    page = business_client(business, world.owner_a).get("/billing/").content.decode()
    assert "charges per delivered template message" in page
    assert 'data-testid="recent-charges"' in page and "€0.1365" in page and "Message" in page
    # Another business's page shows none of it.
    other = business_client(world.business_b, world.owner_b).get("/billing/").content.decode()
    assert "€0.1365" not in other


def test_per_message_rows_reach_stripe_once_each(billing_live: World, fake_stripe: FakeStripe) -> None:
    """Ledger rows → meter events whose identifier is the row's id, through the real SDK and job
    queue; a worker running the queue twice reports nothing twice."""
    world = billing_live
    was_active = RateCard.objects.get(is_active=True)
    card = per_message_card("Stripe per message")
    try:
        records = []
        for index, category in enumerate(["marketing", "marketing", "authentication", "utility"]):
            charge = charge_for_message(
                business=world.business_a,
                conversation_id=900 + index,
                customer_id=77_000 + index % 2,  # two rows for one customer at once: per message
                customer_phone="+4915112345678",
                category=category,
                sent_at=timezone.now() - timedelta(seconds=10 - index),
            )
            assert charge.record is not None and charge.record.unit == "message"
            records.append(charge.record)
        run_until_reported(records)
        run_until_reported(records)
        assert_reported_exactly_once(fake_stripe, records)
        assert fake_stripe.meter_events[str(records[0].pk)]["payload"]["value"] == "1365"
    finally:
        RateCard.objects.filter(pk=card.pk).delete()
        RateCard.objects.filter(pk=was_active.pk).update(is_active=True)
