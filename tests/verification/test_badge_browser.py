"""End to end in Chromium: an owner verifies the business number (code read from the outbox),
turns on TOTP, applies for the badge; staff approve in Django admin; a customer signing in at
/me/ sees the badge next to that business."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

from accounts.models import Customer, User
from customers.services import customer_contact_record
from tenancy.models import Business
from tenancy.services import business_create
from tests.conftest import PASSWORD, STAFF_TOTP_SECRET, LiveServer, World, unique
from tests.verification.conftest import PNG, fresh_mobile, run_sms_jobs
from verification.models import BadgeApplication, SmsMessage


def code_from_outbox(number: str) -> str:
    """Run the queued SMS jobs (as a worker would), then read the newest text to `number`."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        run_sms_jobs()
        message = SmsMessage.objects.filter(to=number).order_by("-created_at", "-id").first()
        if message is not None:
            match = re.search(r"\b(\d{6})\b", message.body)
            assert match, message.body
            return match.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no SMS to {number} in the outbox")


def log_in(page: Any, server: LiveServer, email: str, totp_secret: str | None = None) -> None:
    page.goto(server.public_url("/accounts/login/"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    if totp_secret is not None:  # the second factor (staff: the admin needs it)
        page.wait_for_url(lambda url: "/2fa/authenticate/" in url)
        if time.time() % 30 > 25:  # a code typed in a step's last seconds may reach the server in the next
            time.sleep(30 - time.time() % 30)
        page.locator("input[name=code]").fill(format_hotp_value(hotp_value(totp_secret, int(time.time()) // 30)))
        page.locator("input[name=code]").press("Enter")
        page.wait_for_url(lambda url: "/2fa/authenticate/" not in url)


@pytest.mark.browser
# The server process seals the code's text with the real clock and this process's worker opens it
# (a 10-minute seal): travelled a month away (--today) every text looked expired and was dropped.
@pytest.mark.real_clock
def test_owner_earns_badge_and_customer_sees_it(
    live_db: World, live_server_process: LiveServer, page: Any, browser: Any
) -> None:
    server = live_server_process
    email = f"{unique('owner')}@example.com"
    owner = User.objects.create_user(email, PASSWORD, full_name="Olga Owner")
    EmailAddress.objects.create(user=owner, email=email, verified=True, primary=True)
    slug = unique("verif-")
    business = business_create(owner=owner, name="Nordlicht Reisen GmbH", slug=slug, display_name="Nordlicht Reisen")

    # --- the owner completes the profile and verifies the number --------------------------------
    log_in(page, server, email)
    page.goto(server.business_url(business, "/verification/"))
    page.get_by_label("Description").fill(
        "Travel agency in Hamburg: trips to Scandinavia, booked and answered by people."
    )
    page.get_by_label("Category").select_option("travel")
    page.get_by_label("Contact email").fill("hallo@nordlicht.example")
    page.get_by_label("Website").fill("https://nordlicht.example")
    page.get_by_label("Postal address").fill("Jungfernstieg 1, 20095 Hamburg")
    page.get_by_label("Logo", exact=True).set_input_files({"name": "logo.png", "mimeType": "image/png", "buffer": PNG})
    page.get_by_role("button", name="Save profile").click()
    page.get_by_text("Profile 100% complete").wait_for()

    number = fresh_mobile()
    page.get_by_label("Country").select_option("DE")
    page.get_by_role("textbox", name="Phone number").fill("0" + number[3:])  # typed the national way
    page.get_by_role("button", name="Send code").click()
    page.get_by_text("Enter the code we sent to").wait_for()
    page.get_by_label("6-digit code").fill(code_from_outbox(number))
    page.get_by_role("button", name="Verify number").click()
    page.get_by_text("Your phone number is verified.").wait_for()
    assert page.locator("#verified-number").inner_text().replace(" ", "") == number

    # --- two-factor authentication through allauth ----------------------------------------------
    page.goto(server.public_url("/accounts/2fa/totp/activate/"))
    if "/reauthenticate/" in page.url:  # allauth asks for the password again before 2FA changes
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
    secret = page.locator("#authenticator_secret").input_value()
    if time.time() % 30 > 25:  # a code typed in a step's last seconds may reach the server in the next
        time.sleep(30 - time.time() % 30)
    page.locator("input[name=code]").fill(format_hotp_value(hotp_value(secret, int(time.time()) // 30)))
    page.get_by_role("button", name="Activate").click()
    # The activation is a form POST: wait for its answer to leave the page (load_state returned at
    # once, before the POST was handled, under a loaded machine's CI run).
    page.wait_for_url(lambda url: "/totp/activate/" not in url)
    assert owner.authenticator_set.filter(type="totp").exists()  # type: ignore[attr-defined]

    # --- apply ----------------------------------------------------------------------------------
    page.goto(server.business_url(business, "/verification/"))
    page.get_by_label("Company registration number").fill("HRB 4711 Hamburg")
    page.get_by_role("button", name="Apply for the badge").click()
    page.get_by_text("Our team is reviewing your application").wait_for()
    application = BadgeApplication.objects.get(business=business)
    assert application.status == "submitted"

    # --- staff approve in Django admin ------------------------------------------------------------
    staff_context = browser.new_context()
    staff = staff_context.new_page()
    staff.set_default_timeout(15000)
    log_in(staff, server, live_db.staff.email, totp_secret=STAFF_TOTP_SECRET)
    staff.goto(server.public_url(f"/admin/verification/badgeapplication/?q={slug}"))
    staff.locator("input[name=_selected_action]").check()
    staff.locator("select[name=action]").select_option("approve")
    staff.get_by_role("button", name="Run").click()
    staff.get_by_label("Reason (sent to the business)").fill("Register entry HRB 4711 matches.")
    staff.locator("input[type=submit][value^=Confirm]").click()
    staff.get_by_text("1 application(s): Approve.").wait_for()
    staff_context.close()
    application.refresh_from_db()
    assert application.status == "approved" and application.reviewed_by == live_db.staff
    assert Business.objects.get(pk=business.pk).badge_visible

    # The owner's dashboard shows the decision.
    page.goto(server.business_url(business, "/verification/"))
    page.get_by_text("Your green badge is live").wait_for()

    # --- a customer the business wrote to signs in at /me/ and sees the badge -------------------
    customer_number = fresh_mobile()
    customer = Customer.objects.create(phone_number=customer_number, country_code="DE")
    customer_contact_record(customer_id=customer.pk, business_id=business.pk)
    customer_context = browser.new_context()
    me = customer_context.new_page()
    me.set_default_timeout(15000)
    me.goto(server.public_url("/me/"))
    me.get_by_label("Phone number").fill(customer_number)
    me.get_by_role("button", name="Text me a code").click()
    me.get_by_label("6-digit code").fill(code_from_outbox(customer_number))
    me.get_by_role("button", name="Sign in").click()
    me.get_by_role("heading", name="Businesses that contacted you").wait_for()
    row = me.locator(".biz-list > li", has_text="Nordlicht Reisen")
    assert row.get_by_role("img", name="Verified business").is_visible()
    customer_context.close()
