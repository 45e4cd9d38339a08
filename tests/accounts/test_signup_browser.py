"""Sign up → create a business → land on its dashboard at its own subdomain, logged in."""

from typing import Any

import pytest

from accounts.models import Membership, User
from tests.conftest import PASSWORD, LiveServer, World, unique


@pytest.mark.browser
def test_signup_create_business_and_land_on_dashboard(
    live_db: World, live_server_process: LiveServer, page: Any
) -> None:
    email = f"{unique('owner')}@example.com"
    slug = unique("shop-")

    page.goto(live_server_process.public_url("/"))
    page.get_by_role("link", name="Create your business").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Display name").fill("Kiosk Kim")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()

    # Mandatory email verification: the confirmation mail is read in the development mailbox.
    page.get_by_role("heading", name="Check your mail").wait_for()
    page.get_by_role("link", name="open the mailbox to read the confirmation mail").click()
    page.locator(".mail", has_text=email).first.get_by_role("link", name="/accounts/confirm-email/").click()
    page.get_by_role("button", name="Confirm").click()

    page.wait_for_url("**/start/")
    page.get_by_label("Business name").fill("Kiosk am Eck")
    page.get_by_label("Address").fill(slug)
    page.get_by_role("button", name="Create business").click()

    page.wait_for_url(f"http://{slug}.parley.localhost:{live_server_process.port}/")
    assert page.get_by_role("heading", name="Welcome to Kiosk am Eck").is_visible()
    assert email in page.content()
    assert User.objects.get(email=email).get_short_name() == "Kiosk Kim"
    # The dashboard shell lists every section for the owner.
    for section in ("Inbox", "Contacts", "Templates", "Verification", "Billing", "Team", "API"):
        assert page.get_by_role("navigation", name="Dashboard").get_by_role("link", name=section).is_visible()
    assert Membership.objects.get(business__slug=slug, user__email=email).role == "owner"


@pytest.mark.browser
def test_signup_form_shows_slug_errors_in_the_browser(
    live_db: World, live_server_process: LiveServer, page: Any
) -> None:
    page.goto(live_server_process.public_url("/accounts/login/"))
    page.get_by_label("Email").fill(live_db.owner_a.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(live_server_process.public_url("/start/"))
    page.get_by_label("Business name").fill("Admin Shop")
    page.get_by_label("Address").fill("admin")
    page.get_by_role("button", name="Create business").click()
    assert page.get_by_text("“admin” is reserved").is_visible()
