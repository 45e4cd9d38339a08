"""Stripe webhooks: signature and age checked, every event stored first and applied once,
duplicates and out-of-order delivery handled."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client

from audit.models import AuditEvent
from billing import services
from billing.models import BillingAccount, Invoice, StripeEvent
from tests.conftest import World, public_client

SECRET = "whsec_test_parley"
URL = "/stripe/webhook/"


@pytest.fixture(autouse=True)
def webhook_secret(settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    settings.ADMINS = ["staff@parley.test"]


def sign(payload: bytes, *, secret: str = SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    signed = f"{timestamp}.".encode() + payload
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def event(kind: str, obj: dict[str, Any], *, created: int | None = None, event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_test_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": kind,
        "created": created or int(time.time()),
        "livemode": False,
        "api_version": "2025-01-01",
        "data": {"object": obj},
    }


def post(client: Client, body: dict[str, Any] | bytes, **sign_kwargs: Any) -> Any:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        URL, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(payload, **sign_kwargs)
    )


@pytest.fixture
def account(world: World) -> BillingAccount:
    account = services.billing_account_for(business=world.business_a)
    account.stripe_customer_id = f"cus_test_{uuid.uuid4().hex[:8]}"
    account.save()
    return account


def invoice(account: BillingAccount, *, invoice_id: str = "in_test_1", status: str = "open") -> dict[str, Any]:
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": account.stripe_customer_id,
        "number": "PARLEY-0001",
        "status": status,
        "currency": "eur",
        "amount_due": 12345,
        "amount_paid": 12345 if status == "paid" else 0,
        "hosted_invoice_url": "https://invoice.stripe.test/in_test_1",
        "period_start": int(time.time()) - 30 * 86400,
        "period_end": int(time.time()),
        "created": int(time.time()),
    }


def test_valid_checkout_completion_links_the_subscription(world: World, account: BillingAccount) -> None:
    body = event(
        "checkout.session.completed",
        {
            "id": "cs_test_1",
            "object": "checkout.session",
            "customer": account.stripe_customer_id,
            "subscription": "sub_test_1",
            "client_reference_id": str(world.business_a.pk),
        },
    )
    response = post(public_client(), body)
    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "processed"}
    account.refresh_from_db()
    assert account.subscription_id == "sub_test_1"
    stored = StripeEvent.objects.get(pk=body["id"])
    assert stored.processed_at is not None and stored.type == "checkout.session.completed"


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(lambda p: sign(p, secret="whsec_someone_else"), id="wrong-secret"),
        pytest.param(lambda p: sign(p, at=int(time.time()) - 301), id="stale-timestamp"),
        pytest.param(lambda p: "", id="no-signature"),
        pytest.param(lambda p: "t=abc,v1=nothex", id="garbage"),
    ],
)
def test_bad_signatures_are_refused_and_nothing_is_stored(
    world: World, account: BillingAccount, signature: Any
) -> None:
    body = event("invoice.payment_failed", invoice(account))
    payload = json.dumps(body).encode()
    response = public_client().post(
        URL, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature(payload)
    )
    assert response.status_code == 400
    assert "error" in response.json()
    assert not StripeEvent.objects.filter(pk=body["id"]).exists()
    account.refresh_from_db()
    assert account.grace_period_ends_at is None


def test_a_signature_within_the_tolerance_is_accepted(world: World, account: BillingAccount) -> None:
    body = event(
        "customer.subscription.updated", {"id": "sub_1", "customer": account.stripe_customer_id, "status": "active"}
    )
    assert post(public_client(), body, at=int(time.time()) - 290).status_code == 200


def test_unreadable_bodies_and_wrong_methods_get_4xx(world: World) -> None:
    assert post(public_client(), b"not json at all").status_code == 400
    assert post(public_client(), b'{"no": "id"}').status_code == 400
    assert public_client().get(URL).status_code == 405


def test_webhook_secret_missing_is_a_clear_400(world: World, settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = post(public_client(), event("invoice.paid", {"id": "in_x"}))
    assert response.status_code == 400
    assert "STRIPE_WEBHOOK_SECRET" in response.json()["error"]


def test_replayed_event_is_applied_once(
    world: World, account: BillingAccount, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    body = event("invoice.payment_failed", invoice(account))
    with django_capture_on_commit_callbacks(execute=True):
        first = post(public_client(), body)
        second = post(public_client(), body)
        third = post(public_client(), body)
    assert first.json()["outcome"] == "processed"
    assert second.json()["outcome"] == third.json()["outcome"] == "duplicate"
    assert StripeEvent.objects.get(pk=body["id"]).attempts == 1
    assert AuditEvent.objects.filter(action="billing.payment_failed", business=world.business_a).count() == 1
    assert len([m for m in mailoutbox if "Payment failed" in m.subject]) == 1


def test_failed_payment_starts_a_grace_period_then_blocks_until_paid(
    world: World, account: BillingAccount, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    start = datetime(2026, 5, 3, 10, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as clock:
        with django_capture_on_commit_callbacks(execute=True):
            post(public_client(), event("invoice.payment_failed", invoice(account)))
        account.refresh_from_db()
        assert account.grace_period_ends_at == start + timedelta(days=7)
        assert services.business_may_initiate(business=world.business_a)
        assert any(world.business_a.slug in m.subject and "Payment failed" in m.subject for m in mailoutbox)

        clock.shift(timedelta(days=3))  # a second failure does not extend the grace period
        post(public_client(), event("invoice.payment_failed", invoice(account)))
        account.refresh_from_db()
        assert account.grace_period_ends_at == start + timedelta(days=7)

        clock.shift(timedelta(days=4))
        assert not services.business_may_initiate(business=world.business_a)

        clock.shift(timedelta(days=1))
        with django_capture_on_commit_callbacks(execute=True):
            post(public_client(), event("invoice.paid", invoice(account, status="paid")))
        assert services.business_may_initiate(business=world.business_a)
        account.refresh_from_db()
        assert account.grace_period_ends_at is None
        assert Invoice.objects.get(pk="in_test_1").status == "paid"
        assert any("Payment recovered" in m.subject for m in mailoutbox)


def test_payment_failure_delivered_after_the_payment_changes_nothing(world: World, account: BillingAccount) -> None:
    now = int(time.time())
    paid = event("invoice.paid", invoice(account, status="paid"), created=now)
    failed = event("invoice.payment_failed", invoice(account), created=now - 60)
    assert post(public_client(), paid).status_code == 200
    assert post(public_client(), failed).json()["outcome"] == "processed"
    account.refresh_from_db()
    assert account.grace_period_ends_at is None
    assert Invoice.objects.get(pk="in_test_1").status == "paid"
    assert services.business_may_initiate(business=world.business_a)


def test_subscription_updates_out_of_order_keep_the_newest(world: World, account: BillingAccount) -> None:
    now = int(time.time())
    sub = {"id": "sub_test_9", "object": "subscription", "customer": account.stripe_customer_id}
    newer = event(
        "customer.subscription.updated", {**sub, "status": "active", "current_period_end": now + 86400}, created=now
    )
    older = event("customer.subscription.created", {**sub, "status": "incomplete"}, created=now - 30)
    post(public_client(), newer)
    post(public_client(), older)
    account.refresh_from_db()
    assert account.subscription_status == "active"
    assert account.current_period_end is not None
    deleted = event("customer.subscription.deleted", {**sub, "status": "canceled"}, created=now + 10)
    post(public_client(), deleted)
    account.refresh_from_db()
    assert account.subscription_status == "canceled"


def test_unknown_event_types_are_stored_and_acknowledged(world: World) -> None:
    body = event("customer.tax_id.created", {"id": "txi_1"})
    assert post(public_client(), body).json()["outcome"] == "processed"
    assert StripeEvent.objects.get(pk=body["id"]).processed_at is not None


def break_invoice_paid(monkeypatch: Any) -> None:
    """Applying invoice.paid fails (until monkeypatch.undo())."""

    def boom(obj: dict[str, Any], at: datetime) -> None:
        raise RuntimeError("database hiccup")

    monkeypatch.setitem(services._HANDLERS, "invoice.paid", boom)


def test_an_event_that_fails_to_apply_is_kept_and_retried_by_a_job(
    world: World, account: BillingAccount, monkeypatch: Any
) -> None:
    from procrastinate.contrib.django.models import ProcrastinateJob

    break_invoice_paid(monkeypatch)
    body = event("invoice.paid", invoice(account, status="paid"))
    response = post(public_client(), body)
    assert response.status_code == 200 and response.json()["outcome"] == "queued"
    stored = StripeEvent.objects.get(pk=body["id"])
    assert stored.processed_at is None and "database hiccup" in stored.error
    assert stored.attempts == 1  # the failed attempt counts, though what it applied was rolled back
    assert ProcrastinateJob.objects.filter(task_name="billing.process_stripe_event", args__event_id=body["id"]).exists()
    with pytest.raises(RuntimeError):  # as the retry job runs it: counted, error kept, raised for a retry
        services.stripe_event_process(event_id=body["id"])
    assert StripeEvent.objects.get(pk=body["id"]).attempts == 2
    monkeypatch.undo()
    assert services.stripe_event_process(event_id=body["id"]) is True
    assert services.stripe_event_process(event_id=body["id"]) is False
    stored.refresh_from_db()
    assert stored.attempts == 3 and stored.error == "" and stored.processed_at is not None


def test_finalized_invoice_shows_up_as_open(world: World, account: BillingAccount) -> None:
    post(public_client(), event("invoice.finalized", invoice(account, invoice_id="in_test_open")))
    stored = Invoice.objects.get(pk="in_test_open")
    assert stored.status == "open" and stored.amount_due == 12345 and stored.account == account


def test_grace_ends_when_the_failed_invoice_is_settled_not_when_a_new_one_opens(
    world: World, account: BillingAccount
) -> None:
    post(public_client(), event("invoice.payment_failed", invoice(account, invoice_id="in_failed")))
    post(public_client(), event("invoice.finalized", invoice(account, invoice_id="in_next_month")))
    post(public_client(), event("invoice.paid", invoice(account, invoice_id="in_next_month", status="paid")))
    account.refresh_from_db()
    assert account.grace_period_ends_at is not None  # the failed one is still owed
    post(public_client(), event("invoice.voided", invoice(account, invoice_id="in_failed", status="void")))
    account.refresh_from_db()
    assert account.grace_period_ends_at is None


def test_events_for_someone_elses_customer_change_nothing(world: World, account: BillingAccount) -> None:
    body = event(
        "customer.subscription.updated",
        {
            "id": "sub_other",
            "customer": "cus_someone_else",
            "status": "active",
            "metadata": {"parley_business_id": str(world.business_a.pk)},
        },
    )
    assert post(public_client(), body).json()["outcome"] == "processed"
    account.refresh_from_db()
    assert account.subscription_id == "" and account.stripe_customer_id.startswith("cus_test_")
    weird = event("checkout.session.completed", {"id": "cs_x", "customer": None, "client_reference_id": "not-a-number"})
    assert post(public_client(), weird).json()["outcome"] == "processed"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"created": "yesterday"}, id="created-not-a-timestamp"),
        pytest.param({"data": ["not", "an", "object"]}, id="data-not-an-object"),
        pytest.param({"data": {"object": "in_1"}}, id="object-not-an-object"),
        pytest.param({"id": {"nested": True}}, id="id-not-a-string"),
        pytest.param({"type": 42}, id="type-not-a-string"),
    ],
)
def test_signed_but_malformed_events_are_a_clear_400(world: World, change: dict[str, Any]) -> None:
    """Even with a valid signature, a body that is not shaped like a Stripe event is refused with a
    message, never a 500 and never stored to be retried forever."""
    body = {**event("invoice.paid", {"id": "in_malformed"}), **change}
    response = post(public_client(), body)
    assert response.status_code == 400
    assert "not a Stripe event" in response.json()["error"]
    assert not StripeEvent.objects.filter(type="invoice.paid", payload__data__object__id="in_malformed").exists()


def test_processing_a_failing_event_from_the_admin_reports_it_instead_of_a_500(
    world: World, account: BillingAccount, monkeypatch: Any
) -> None:
    break_invoice_paid(monkeypatch)
    body = event("invoice.paid", invoice(account, status="paid"))
    assert post(public_client(), body).json()["outcome"] == "queued"
    response = public_client(world.staff).post(
        "/admin/billing/stripeevent/", {"action": "process_now", "_selected_action": [body["id"]]}, follow=True
    )
    assert response.status_code == 200
    assert "1 event(s) failed again" in response.content.decode()
    assert StripeEvent.objects.get(pk=body["id"]).attempts == 2
