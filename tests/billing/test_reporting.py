"""Usage records reach Stripe as meter events through the real SDK, the real job queue and a
local fake Stripe, exactly once per identifier, whatever fails in between."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing import services, stripe_gateway
from billing.models import BillingAccount, UsageRecord
from billing.services import conversation_charge_for_message
from tests.billing.fake_stripe import FakeStripe
from tests.conftest import World
from tests.jobs import run_queued_jobs

PHONES = {
    "service": "+4915112345678",
    "utility": "+436641234567",
    "marketing": "+41791234567",
    "authentication": "+12025550123",
}


def open_conversations(
    world: World, n: int, *, categories: tuple[str, ...] = ("utility", "marketing", "authentication")
) -> list[UsageRecord]:
    records = []
    for i in range(n):
        category = categories[i % len(categories)]
        records.append(
            conversation_charge_for_message(
                business=world.business_a if i % 3 else world.business_b,
                conversation_id=i + 1,
                customer_id=uuid.uuid4().int % 10**12,
                customer_phone=PHONES[category],
                category=category,
                sent_at=timezone.now() - timedelta(minutes=n - i),
            )
        )
    return records


def run_until_reported(records: list[UsageRecord], rounds: int = 30) -> None:
    ids = [r.pk for r in records]
    for _ in range(rounds):
        run_queued_jobs(queues=["billing"])
        if not UsageRecord.objects.filter(pk__in=ids, report_state="pending").exists():
            return
    raise AssertionError("records still pending after all rounds")


def assert_reported_exactly_once(fake: FakeStripe, records: list[UsageRecord]) -> None:
    accounts = {a.business_id: a.stripe_customer_id for a in BillingAccount.objects.all()}
    assert len(fake.meter_events) == len(records)
    for record in records:
        record.refresh_from_db()
        assert record.report_state == "reported", record.report_error
        event = fake.meter_events[str(record.pk)]
        assert event["identifier"] == str(record.pk)
        assert event["event_name"] == f"parley_{record.category}_conversations"
        assert event["payload"]["stripe_customer_id"] == accounts[record.business_id]
        assert event["payload"]["value"] == str(record.meter_value)
        assert event["timestamp"] == int(record.opened_at.timestamp())
    # One Stripe customer per business, however many records and retries.
    created = Counter(
        r.params.get("metadata", {}).get("parley_business_id")
        for r in fake.calls("POST", "/v1/customers")
        if r.outcome.startswith("200")
    )
    assert set(fake.customers) == {accounts[r.business_id] for r in records}
    # Every business with records got its customer created (counts are >= 1 by construction).
    assert set(created) == {str(r.business_id) for r in records}


def test_each_record_is_one_meter_event_for_its_customer(billing_live: World, fake_stripe: FakeStripe) -> None:
    records = open_conversations(billing_live, 6)
    run_until_reported(records)
    assert_reported_exactly_once(fake_stripe, records)
    posts = fake_stripe.calls("POST", "/v1/billing/meter_events")
    assert len(posts) == 6  # nothing failed, nothing was sent twice
    assert all(r.headers["authorization"] == "Bearer sk_test_fake" for r in posts)
    assert sorted(c["name"] for c in fake_stripe.customers.values()) == sorted(
        [billing_live.business_a.name, billing_live.business_b.name]
    )


@pytest.mark.real_clock  # retries are scheduled in Python and picked up by PostgreSQL's now()
def test_flaky_stripe_still_gets_every_record_exactly_once(billing_live: World, fake_stripe: FakeStripe) -> None:
    fake_stripe.failure_rate = 0.3
    fake_stripe.delay_seconds = 0.8
    records = open_conversations(billing_live, 40)
    run_until_reported(records)
    assert_reported_exactly_once(fake_stripe, records)
    outcomes = Counter(r.outcome for r in fake_stripe.calls("POST", "/v1/billing/meter_events"))
    # The failures really happened, of every kind, and some retries found the event already there.
    assert outcomes["500"] and outcomes["429"] and outcomes["timeout_before"] and outcomes["200 then timeout"]
    assert outcomes["400"] >= outcomes["200 then timeout"] - outcomes["400 then timeout"]
    assert outcomes["200"] + outcomes["200 then timeout"] == len(records)


# Retries are scheduled in Python and picked up by PostgreSQL's now(): travelled into the past,
# every retry of a report that cannot succeed without a key is due at once, and the worker
# never runs out of due jobs (it looped on one job 10,000 times under --today 2026-12-01).
@pytest.mark.real_clock
def test_without_a_key_reports_wait_in_the_queue_until_one_is_set(billing_live: World, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    settings.BILLING_RETRY_BASE_SECONDS = 60
    records = open_conversations(billing_live, 3)
    run_queued_jobs(queues=["billing"])
    assert set(UsageRecord.objects.filter(pk__in=[r.pk for r in records]).values_list("report_state", flat=True)) == {
        "pending"
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'billing.report_usage_record' AND status = 'todo'"
        )
        assert cursor.fetchone()[0] == 3  # retried later, not dropped

    from tests.billing.fake_stripe import running

    with running(FakeStripe()) as fake:
        settings.STRIPE_SECRET_KEY = "sk_test_fake"
        settings.STRIPE_API_BASE = fake.url
        settings.STRIPE_NETWORK_RETRIES = 0
        stripe_gateway.catalog_sync()
        with connection.cursor() as cursor:  # the backoff has passed
            cursor.execute(
                "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE queue_name = 'billing' AND status = 'todo'"
            )
        run_until_reported(records)
        assert_reported_exactly_once(fake, records)


def test_a_refused_report_is_kept_tells_staff_and_can_be_sent_again(
    billing_live: World, fake_stripe: FakeStripe, settings: Any, mailoutbox: list[Any]
) -> None:
    settings.ADMINS = ["staff@parley.test"]
    meters = dict(fake_stripe.meters)
    fake_stripe.meters.clear()  # Stripe answers 400: no meter for this event name
    [record] = open_conversations(billing_live, 1)
    run_queued_jobs(queues=["billing"])
    record.refresh_from_db()
    assert record.report_state == "failed" and "No active meter" in record.report_error
    assert any("refused a usage record" in m.subject for m in mailoutbox)

    fake_stripe.meters.update(meters)
    assert services.usage_reports_requeue(record_ids=[str(record.pk)]) == 1
    run_until_reported([record])
    assert_reported_exactly_once(fake_stripe, [record])


def test_voiding_a_reported_record_cancels_its_meter_event(billing_live: World, fake_stripe: FakeStripe) -> None:
    [record] = open_conversations(billing_live, 1)
    run_until_reported([record])
    services.conversation_charge_void(record_id=record.pk, reason="delivery failed")
    run_queued_jobs(queues=["billing"])
    assert fake_stripe.cancelled == {str(record.pk)}
    record.refresh_from_db()
    assert record.report_state == "not_billed"


def test_stripe_sync_is_idempotent(live_db: World, fake_stripe: FakeStripe, capsys: Any) -> None:
    call_command("stripe_sync")
    out = capsys.readouterr().out
    assert "created" not in out
    assert not [r for r in fake_stripe.requests if r.method == "POST"]
    assert len(fake_stripe.meters) == len(fake_stripe.prices) == len(fake_stripe.products) == 4
    price = next(p for p in fake_stripe.prices.values() if p["lookup_key"] == "parley_marketing_conversation_v1")
    assert price["recurring"] == {
        "interval": "month",
        "usage_type": "metered",
        "meter": next(
            m["id"] for m in fake_stripe.meters.values() if m["event_name"] == "parley_marketing_conversations"
        ),
    }
    assert price["currency"] == "eur" and price["unit_amount_decimal"] == "0.01"


def test_reconcile_prints_differences(billing_live: World, fake_stripe: FakeStripe, capsys: Any) -> None:
    records = open_conversations(billing_live, 6)
    run_until_reported(records)
    period = f"{timezone.now():%Y-%m}"
    if any(f"{r.opened_at:%Y-%m}" != period for r in records):
        pytest.skip("ran across a month boundary; nothing meaningful to compare")  # visible, not a silent pass
    fake_stripe.requests.clear()
    call_command("billing_reconcile", "--period", period)
    assert "Ledger and Stripe agree." in capsys.readouterr().out
    listed = [r for r in fake_stripe.calls("GET", "/v1/billing/meters") if r.path == "/v1/billing/meters"]
    assert len(listed) == 1  # once for the whole run (two businesses), not once per business

    lost = fake_stripe.meter_events.pop(str(records[1].pk))
    call_command("billing_reconcile", "--period", period)
    out = capsys.readouterr().out
    assert "1 difference(s) found." in out
    assert f"difference +{lost['payload']['value']}" in out


def test_the_safety_net_requeues_only_records_without_a_waiting_job(
    billing_live: World, fake_stripe: FakeStripe
) -> None:
    records = open_conversations(billing_live, 3)
    # One job got lost (say, deleted by hand); the others are still waiting in the queue.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_jobs WHERE args->>'record_id' = %s", [str(records[0].pk)])
    UsageRecord.objects.filter(pk__in=[r.pk for r in records]).update(created_at=timezone.now() - timedelta(hours=1))
    assert services.usage_reports_requeue() == 1
    assert services.usage_reports_requeue() == 0
    # Asked by id, a record whose job is waiting is left alone, without breaking the transaction.
    assert services.usage_reports_requeue(record_ids=[str(records[1].pk)]) == 0
    run_until_reported(records)
    assert_reported_exactly_once(fake_stripe, records)


def test_a_refused_cancellation_tells_staff_instead_of_retrying_forever(
    billing_live: World, fake_stripe: FakeStripe, settings: Any, mailoutbox: list[Any]
) -> None:
    settings.ADMINS = ["staff@parley.test"]
    [record] = open_conversations(billing_live, 1)
    run_until_reported([record])
    fake_stripe.refuse_cancels = True
    services.conversation_charge_void(record_id=record.pk, reason="delivery failed")
    run_queued_jobs(queues=["billing"])
    record.refresh_from_db()
    assert record.report_state == "reported" and "24 hours" in record.report_error  # still billed in Stripe
    assert any("refused to cancel" in m.subject for m in mailoutbox)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'billing.cancel_usage_record' AND status = 'todo'"
        )
        assert cursor.fetchone()[0] == 0  # not waiting to be retried


def test_a_refused_stripe_customer_fails_the_report_instead_of_retrying_forever(
    billing_live: World, fake_stripe: FakeStripe, settings: Any, mailoutbox: list[Any], monkeypatch: Any
) -> None:
    settings.ADMINS = ["staff@parley.test"]

    def refuse(**kwargs: Any) -> str:
        raise stripe_gateway.StripePermanentError("400: Invalid email address")

    monkeypatch.setattr(stripe_gateway, "customer_create", refuse)
    [record] = open_conversations(billing_live, 1)
    run_queued_jobs(queues=["billing"])
    record.refresh_from_db()
    assert record.report_state == "failed" and "Invalid email" in record.report_error
    assert any("refused a usage record" in m.subject for m in mailoutbox)
    assert not fake_stripe.meter_events


def open_group(world: World, n: int, category: str = "utility") -> list[UsageRecord]:
    """What one send group (a delivery job's chunk) bills: n new conversations in one call."""
    requests = [services.ChargeRequest(i + 1, uuid.uuid4().int % 10**12, PHONES[category], category) for i in range(n)]
    charges = services.charges_for_messages(business=world.business_a, requests=requests, sent_at=timezone.now())
    return [c.record for c in charges if c.record is not None]


def report_jobs() -> list[tuple[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT task_name, args FROM procrastinate_jobs WHERE task_name LIKE 'billing.report_usage_record%%' "
            "AND status = 'todo' ORDER BY id"
        )
        return list(cursor.fetchall())


def test_a_group_queues_one_report_job_that_reports_each_record_exactly_once(
    billing_live: World, fake_stripe: FakeStripe
) -> None:
    records = open_group(billing_live, 5)
    assert len(records) == 5
    [(task, args)] = report_jobs()
    assert task == "billing.report_usage_records"
    # Django's connection hands jsonb back as text.
    assert json.loads(args)["record_ids"] == [str(r.pk) for r in records]
    run_until_reported(records)
    assert_reported_exactly_once(fake_stripe, records)
    assert len(fake_stripe.calls("POST", "/v1/billing/meter_events")) == 5


@pytest.mark.real_clock  # retries are scheduled in Python and picked up by PostgreSQL's now()
def test_a_group_job_retries_only_what_failed(billing_live: World, fake_stripe: FakeStripe) -> None:
    fake_stripe.failure_rate = 0.4
    records = open_group(billing_live, 12, category="marketing")
    run_until_reported(records, rounds=60)
    assert_reported_exactly_once(fake_stripe, records)


def test_the_safety_net_leaves_records_of_a_waiting_group_job_alone(
    billing_live: World, fake_stripe: FakeStripe
) -> None:
    records = open_group(billing_live, 3)
    UsageRecord.objects.filter(pk__in=[r.pk for r in records]).update(created_at=timezone.now() - timedelta(hours=1))
    assert services.usage_reports_requeue() == 0
    assert services.usage_reports_requeue(record_ids=[str(records[0].pk)]) == 0
    # The group's job got lost: then each record is queued again on its own.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_jobs WHERE task_name = 'billing.report_usage_records'")
    assert services.usage_reports_requeue() == 3
    run_until_reported(records)
    assert_reported_exactly_once(fake_stripe, records)
