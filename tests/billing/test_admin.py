from __future__ import annotations

import re
import uuid
from datetime import timedelta

from django.utils import timezone

from billing import services
from billing.models import BillingAccount, Rate, RateCard, StripeEvent
from billing.services import conversation_charge_for_message
from tests.conftest import World, public_client


def test_staff_see_every_business_usage(world: World) -> None:
    for business in (world.business_a, world.business_b):
        conversation_charge_for_message(
            business=business,
            conversation_id=1,
            customer_id=uuid.uuid4().int % 10**12,
            customer_phone="+4915112345678",
            category="utility",
            sent_at=timezone.now(),
        )
    client = public_client(world.staff)
    html = client.get("/admin/billing/usagerecord/").content.decode()
    assert str(world.business_a) in html and str(world.business_b) in html
    for path in ["/admin/billing/ratecard/", "/admin/billing/billingaccount/", "/admin/billing/stripeevent/"]:
        assert client.get(path).status_code == 200
    assert client.get("/admin/billing/usagerecord/add/").status_code == 403  # the ledger is written by services only
    assert public_client(world.owner_a).get("/admin/billing/usagerecord/").status_code == 302


def test_activating_a_rate_card_in_admin_retires_the_old_one(world: World) -> None:
    old = services.active_rate_card()
    client = public_client(world.staff)
    data = {
        "name": "Summer 2026",
        "is_active": "on",
        # Staff choose how the card charges: WhatsApp's 2025 model, per template message.
        "pricing_model": "message",
        "default_service": "0.0310",
        "default_utility": "0.0410",
        "default_marketing": "0.0710",
        "default_authentication": "0.0360",
        "rates-TOTAL_FORMS": "1",
        "rates-INITIAL_FORMS": "0",
        "rates-0-category": "marketing",
        "rates-0-country": "de",
        "rates-0-price": "0.1400",
    }
    response = client.post("/admin/billing/ratecard/add/", data)
    assert response.status_code == 200
    assert "Another rate card is active" in response.content.decode()  # a clear form error, not a 500

    del data["is_active"]
    response = client.post("/admin/billing/ratecard/add/", data)
    assert response.status_code == 302, re.findall(r"errorlist[^>]*>(.*?)</ul>", response.content.decode(), re.S)
    new = RateCard.objects.get(name="Summer 2026")
    response = client.post(
        "/admin/billing/ratecard/", {"action": "make_active", "_selected_action": [str(new.pk)]}, follow=True
    )
    assert "is now the active rate card" in response.content.decode()
    new.refresh_from_db()
    old.refresh_from_db()
    assert new.is_active and not old.is_active
    assert new.pricing_model == "message"
    assert Rate.objects.get(rate_card=new).country == "DE"


def test_admin_lists_accounts_and_events(world: World) -> None:
    BillingAccount.objects.create(business=world.business_a, stripe_customer_id="cus_admin")
    StripeEvent.objects.create(id="evt_test_admin", type="invoice.paid", payload={"id": "evt_test_admin"})
    client = public_client(world.staff)
    assert "cus_admin" in client.get("/admin/billing/billingaccount/").content.decode()
    assert "evt_test_admin" in client.get("/admin/billing/stripeevent/").content.decode()
    account = BillingAccount.objects.get(business=world.business_a)
    assert client.get(f"/admin/billing/billingaccount/{account.pk}/change/").status_code == 200


def test_staff_edits_of_a_billing_account_are_audited(world: World) -> None:
    from audit.models import AuditEvent

    account = BillingAccount.objects.create(
        business=world.business_a,
        stripe_customer_id="cus_edit",
        grace_period_ends_at=timezone.now() - timedelta(days=1),
    )
    client = public_client(world.staff)
    url = f"/admin/billing/billingaccount/{account.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields}
    data.update(
        {
            "grace_period_ends_at_0": "",
            "grace_period_ends_at_1": "",
            "payment_failed_at_0": "",
            "payment_failed_at_1": "",
        }
    )
    data.update({"current_period_end_0": "", "current_period_end_1": ""})
    data.update({"invoices-TOTAL_FORMS": "0", "invoices-INITIAL_FORMS": "0"})
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.grace_period_ends_at is None
    entry = AuditEvent.objects.get(action="billing.account_edited", business=world.business_a)
    assert entry.actor_id == world.staff.pk and entry.data["grace_period_ends_at"] == "None"
