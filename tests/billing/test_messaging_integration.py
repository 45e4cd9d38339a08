"""Billing seen through messaging's real send path: replies and templates land in the ledger,
once per 24-hour conversation; blocked sends bill nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Customer
from billing.models import UsageRecord
from tests.conftest import World, unique


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


def _at_customer(name: str) -> Customer:
    phone = "+43664" + "".join(random.choice("0123456789") for _ in range(7))
    return Customer.objects.create(phone_number=phone, display_name=name, country_code="AT", verified_at=timezone.now())


def test_a_send_group_bills_with_the_windows_and_prices_it_read_behind_its_locks(world: World) -> None:
    """Issue 9: a send group locks and reads its customers' billing windows in its first round
    trip, behind the conversations' lock, before it knows which sends it bills; what it bills
    is priced as billing's own path prices it: an agent's reply by the customer's country (read
    with the free tier's count), a template by its category and the customer's country (read
    with the lock), and a reply inside an open billable conversation belongs to it."""
    from billing.models import Rate
    from messaging.group_commit import write_batch
    from messaging.sending import SendResult, check_agent_send, check_template_send
    from messaging.services import message_send_customer
    from tests.billing.conftest import active_card

    card = active_card("Windows", default_service="0.0300", default_utility="0.0400")
    Rate.objects.create(rate_card=card, category="service", country="AT", price=Decimal("0.0410"))
    Rate.objects.create(rate_card=card, category="utility", country="AT", price=Decimal("0.0520"))
    business = world.business_a
    asking, notified = _at_customer("Ida"), _at_customer("Jo")
    with tenant_context(business):
        conversation_id = message_send_customer(
            business=business, customer=asking, body="Gate?"
        ).message.conversation_id

        def reply() -> Any:
            return check_agent_send(
                business=business,
                user=world.agent_a,
                conversation_id=conversation_id,
                body="B12.",
                client_msg_id=unique("a"),
                defer_membership=True,
            )

        notice = check_template_send(
            customer=notified, template_name="gate", body="B12", category="utility", author_key="api:t"
        )
        answered, told = write_batch(business, [reply(), notice])  # told: a conversation made in the group
        assert isinstance(answered, SendResult) and isinstance(told, SendResult)
        assert answered.charge is not None and told.charge is not None
        assert answered.charge.opened and told.charge.opened
        opened = UsageRecord.objects.get(customer_id=asking.pk)
        assert (opened.category, opened.country, opened.unit_price) == ("service", "AT", Decimal("0.0410"))
        assert opened.conversation_id == conversation_id
        templated = UsageRecord.objects.get(customer_id=notified.pk)
        assert (templated.category, templated.country, templated.unit_price) == ("utility", "AT", Decimal("0.0520"))

        (again,) = write_batch(business, [reply()])
        assert isinstance(again, SendResult) and again.charge is not None
        assert again.charge.record is not None and again.charge.record.pk == opened.pk and not again.charge.opened
        assert UsageRecord.objects.filter(customer_id=asking.pk).count() == 1


def test_a_send_group_joins_the_billable_conversation_another_transaction_opened_meanwhile(
    billing_live: World,
) -> None:
    """The group's billing windows are locked behind its conversations' lock and looked up in a
    statement of their own: while another transaction holds a customer's window (it is opening
    a billable conversation), an agent's reply to that customer waits, then belongs to what the
    other one opened — a lookup in the lock's own statement would have seen the table as it was
    before the wait, and opened a second one."""
    import threading

    from django.db import connection, transaction

    from billing.services import conversation_charge_for_message
    from messaging.group_commit import write_batch
    from messaging.sending import SendResult, check_agent_send
    from messaging.services import message_send_customer
    from tests.messaging.conftest import make_customer

    world = billing_live
    business = world.business_a
    customer = make_customer("Waits")
    with tenant_context(business):
        conversation_id = message_send_customer(business=business, customer=customer, body="Hi").message.conversation_id
    connection.set_schema_to_public()
    opening, gate = threading.Event(), threading.Event()
    held: dict[str, Any] = {}

    def open_conversation() -> None:
        try:
            with tenant_context(business), transaction.atomic():
                held["record"] = conversation_charge_for_message(
                    business=business,
                    conversation_id=conversation_id,
                    customer_id=customer.pk,
                    customer_phone=customer.phone_number,
                    category="service",
                    sent_at=timezone.now(),
                )
                opening.set()
                gate.wait(10)
        finally:
            connection.close()

    def reply() -> None:
        try:
            with tenant_context(business):
                request = check_agent_send(
                    business=business,
                    user=world.agent_a,
                    conversation_id=conversation_id,
                    body="On time.",
                    client_msg_id="waits-1",
                    defer_membership=True,
                )
                held["outcome"] = write_batch(business, [request])[0]
        finally:
            connection.close()

    holder = threading.Thread(target=open_conversation, daemon=True)
    holder.start()
    try:
        assert opening.wait(10), "the other transaction did not open its billable conversation"
        replier = threading.Thread(target=reply, daemon=True)
        replier.start()
        replier.join(0.5)
        assert replier.is_alive(), "the reply did not wait for the customer's billing window"
    finally:
        gate.set()
    holder.join(10)
    replier.join(10)
    outcome = held["outcome"]
    assert isinstance(outcome, SendResult) and outcome.charge is not None and outcome.charge.record is not None
    assert outcome.charge.record.pk == held["record"].pk and not outcome.charge.opened
    assert UsageRecord.objects.filter(customer_id=customer.pk).count() == 1
