"""The notifications half end to end, in a browser against the real server: the owner creates a
template, staff approve it in the admin, the owner creates an API key, a plain HTTP call sends the
template, the customer's open chat page shows it live, and its price is on the owner's billing
page. Then an agent sends a second template from the inbox's picker (the window is closed)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import time_machine
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Customer, User
from billing.models import UsageRecord
from messaging.models import Conversation
from messaging.services import message_send_customer
from notifications.models import Template
from tenancy.services import business_create
from tests.conftest import LiveServer, World, fresh_mobile, unique
from tests.messaging.conftest import session_key
from tests.messaging.test_browser import signed_in_page


def customer_who_wrote_yesterday(business: Any) -> Customer:
    """A Parley customer whose 24-hour window with the business has closed: only a template
    reaches them now."""
    customer = Customer.objects.create(
        phone_number=fresh_mobile(), display_name=unique("Fluggast "), country_code="DE", verified_at=timezone.now()
    )
    with time_machine.travel(timezone.now() - timedelta(hours=30)), tenant_context(business):
        message_send_customer(business=business, customer=customer, body="Is my flight on time?")
    return customer


@pytest.mark.browser
def test_template_to_api_key_to_live_chat_to_the_bill(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    server = live_server_process
    owner = User.objects.create_user(f"{unique('owner')}@example.com", "x" * 16, full_name="Ola Owner")
    business = business_create(owner=owner, name="Polar Air", slug=unique("polar-"))
    customer = customer_who_wrote_yesterday(business)
    owner_context, owner_page = signed_in_page(browser, session_key(user=owner))
    staff_context, staff_page = signed_in_page(browser, session_key(user=live_db.staff))
    customer_context, chat = signed_in_page(browser, session_key(customer=customer))
    try:
        # --- the owner writes a template; it goes to staff review ---------------------------------
        owner_page.goto(server.business_url(business, "/templates/"))
        owner_page.get_by_label("Name").fill("gate_change")
        owner_page.get_by_label("Language").fill("en")
        owner_page.get_by_label("Category").select_option("utility")
        owner_page.get_by_label("Body").fill("Flight {{flight}} now boards at gate {{gate}}.")
        owner_page.get_by_role("button", name="Send to review").click()
        owner_page.get_by_text("gate_change").first.wait_for()
        with tenant_context(business):
            assert Template.objects.get(name="gate_change").status == "pending"

        # --- staff approve it in the admin's review queue ------------------------------------------
        staff_page.goto(server.public_url(f"/admin/template_reviews/templatereview/?q={business.slug}"))
        staff_page.locator("input[name=_selected_action]").check()
        staff_page.locator("select[name=action]").select_option("approve")
        # Each click waits for the page it submits to load: under a loaded machine a click on the
        # confirmation page while it was still loading once produced no POST at all.
        with staff_page.expect_navigation(wait_until="load"):
            staff_page.get_by_role("button", name="Run").click()
        with staff_page.expect_request(lambda request: request.method == "POST"):
            staff_page.locator("input[type=submit][value^=Confirm]").click()
        staff_page.get_by_text("1 template(s)").wait_for()
        with tenant_context(business):
            assert Template.objects.get(name="gate_change").status == "approved"

        # --- the owner creates an API key, shown once ---------------------------------------------
        owner_page.goto(server.business_url(business, "/developers/"))
        owner_page.get_by_label("Name").fill("Departure system")
        owner_page.get_by_role("button", name="Create key").click()
        secret = owner_page.get_by_test_id("new-api-key").inner_text().strip()
        assert secret.startswith("prl_")

        # --- the customer has the business's chat page open ---------------------------------------
        chat.goto(server.business_url(business, "/chat/"))
        chat.locator(".bubble", has_text="Is my flight on time?").wait_for()

        # --- a curl-like HTTP call sends the template -----------------------------------------------
        # (Python does not resolve *.localhost: connect to loopback and name the business's host.)
        response = httpx.post(
            f"http://127.0.0.1:{server.port}/api/v1/messages",
            headers={"Host": f"{business.host}:{server.port}", "Authorization": f"Bearer {secret}"},
            json={
                "to": customer.phone_number,
                "template": {"name": "gate_change", "parameters": {"flight": "PA 7", "gate": "B12"}},
            },
            timeout=30,
        )
        assert response.status_code == 201, response.text
        sent = response.json()
        assert sent["status"] == "sent" and sent["price"]["per"] == "conversation"
        price = Decimal(sent["price"]["amount"])
        assert price > 0

        # --- it appears on the open chat page at once, without a reload ---------------------------
        chat.locator(".bubble", has_text="Flight PA 7 now boards at gate B12.").wait_for()

        # --- and its price is on the owner's billing page -------------------------------------------
        owner_page.goto(server.business_url(business, "/billing/"))
        charges = owner_page.get_by_test_id("recent-charges")
        row = charges.get_by_role("row").filter(has_text="Utility")
        row.first.wait_for()
        assert f"€{price:.4f}" in row.first.inner_text()
        assert f"€{price:.2f}" in owner_page.get_by_test_id("cost").inner_text()
        [record] = UsageRecord.objects.filter(business=business, customer_id=customer.pk)
        assert record.unit_price == price and record.category == "utility"
    finally:
        owner_context.close()
        staff_context.close()
        customer_context.close()


@pytest.mark.browser
def test_inbox_offers_templates_with_their_price_when_the_window_is_closed(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    from tests.notifications.conftest import approved_template

    server = live_server_process
    business = live_db.business_a
    with tenant_context(business):
        if not Template.objects.filter(name="flight_change", language="en", status="approved").exists():
            Template.objects.filter(name="flight_change", language="en").delete()
            approved_template(business, live_db.staff)
    customer = customer_who_wrote_yesterday(business)
    with tenant_context(business):
        conversation_id = Conversation.objects.get(contact__customer=customer).pk
    agent_context, inbox = signed_in_page(browser, session_key(user=live_db.agent_a))
    customer_context, chat = signed_in_page(browser, session_key(customer=customer))
    try:
        chat.goto(server.business_url(business, "/chat/"))
        chat.locator(".bubble", has_text="Is my flight on time?").wait_for()
        inbox.goto(server.business_url(business, f"/inbox/#c{conversation_id}"))
        inbox.locator(".bubble.theirs", has_text="Is my flight on time?").wait_for()
        picker = inbox.locator("#template-picker")
        picker.wait_for()
        option = picker.locator("option", has_text="flight_change (en)")
        option.wait_for(state="attached")
        picker.get_by_label("Template").select_option(value=option.get_attribute("value"))
        price = picker.get_by_test_id("template-price")
        assert re.search(r"€0[.,]\d{4}: opens a 24-hour conversation", price.inner_text()), price.inner_text()
        picker.get_by_label("flight").fill("LH 44")
        picker.get_by_label("time").fill("18:20")
        assert "Your flight LH 44 now leaves at 18:20." in picker.locator("#template-picker-preview").inner_text()
        picker.get_by_role("button", name="Send template").click()
        picker.get_by_text("Template sent.").wait_for()
        inbox.locator(".bubble.mine", has_text="Your flight LH 44 now leaves at 18:20.").wait_for()
        chat.locator(".bubble", has_text="Your flight LH 44 now leaves at 18:20.").wait_for()
        # A billable conversation is open now: the next template costs nothing more, and says so.
        price.filter(has_text="Free").wait_for()
        assert UsageRecord.objects.filter(business=business, customer_id=customer.pk).count() == 1
    finally:
        agent_context.close()
        customer_context.close()
