"""Billing seen through messaging's real send path: replies and templates land in the ledger,
once per 24-hour conversation; blocked sends bill nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Customer
from billing.models import UsageRecord
from tests.conftest import World


@pytest.fixture
def customer(world: World) -> Customer:
    phone = "+43664" + "".join(random.choice("0123456789") for _ in range(7))
    return Customer.objects.create(
        phone_number=phone, display_name="Ida", country_code="AT", verified_at=timezone.now()
    )


def test_agent_replies_and_templates_are_billed_once_per_conversation(world: World, customer: Customer) -> None:
    from customers.services import customer_block
    from messaging.services import MessagingError, message_send_agent, message_send_customer, message_send_template

    business = world.business_a
    with time_machine.travel(datetime(2026, 7, 6, 8, 0, tzinfo=UTC), tick=False) as clock, tenant_context(business):
        sent = message_send_customer(business=business, customer=customer, body="Is my flight on time?")
        conversation_id = sent.message.conversation_id
        assert not UsageRecord.objects.filter(customer_id=customer.pk).exists()  # customers' messages are free

        for minutes in (1, 30, 600):
            clock.move_to(datetime(2026, 7, 6, 8, minutes % 60, tzinfo=UTC) + timedelta(hours=minutes // 60))
            message_send_agent(business=business, user=world.agent_a, conversation_id=conversation_id, body="Yes.")
        [record] = UsageRecord.objects.filter(business=business, customer_id=customer.pk)
        assert record.category == "service" and record.country == "AT" and record.conversation_id == conversation_id

        clock.move_to(datetime(2026, 7, 7, 9, 0, tzinfo=UTC))  # the billable conversation has ended
        message_send_template(
            business=business,
            customer=customer,
            template_name="flight_delay",
            body="Your flight OS 123 leaves 40 minutes late.",
            category="utility",
            author_key="api:test",
        )
        records = list(UsageRecord.objects.filter(business=business, customer_id=customer.pk).order_by("opened_at"))
        assert [r.category for r in records] == ["service", "utility"]
        assert records[1].chargeable and records[1].report_state == "pending"

        clock.move_to(datetime(2026, 7, 8, 12, 0, tzinfo=UTC))
        customer_block(customer=customer, business=business)
        with pytest.raises(MessagingError):
            message_send_template(
                business=business,
                customer=customer,
                template_name="offer",
                body="20% off",
                category="marketing",
                author_key="api:test",
            )
        assert UsageRecord.objects.filter(business=business, customer_id=customer.pk).count() == 2
