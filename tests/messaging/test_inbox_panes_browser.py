"""The inbox's panes in Chromium: nothing half-drawn before a conversation is open, no `null`
for a contact without notes, numbers written for people, times in the page's language."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django_tenants.utils import tenant_context

from messaging.services import message_send_customer
from tests.conftest import LiveServer, World, unique
from tests.messaging.conftest import make_customer, session_key
from tests.messaging.test_browser import signed_in_page
from verification.phone import phone_display


@pytest.mark.browser
def test_inbox_panes_before_and_after_opening_a_new_customer(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    customer = make_customer("")  # a new customer: no name, and the contact has no notes
    with tenant_context(live_db.business_a):
        message_send_customer(business=live_db.business_a, customer=customer, body="Hallo, ist mein Flug pünktlich?")
    formatted = phone_display(customer.phone_number)
    assert formatted != customer.phone_number

    context, page = signed_in_page(browser, session_key(user=live_db.agent_a))
    try:
        page.goto(live_server_process.business_url(live_db.business_a, "/inbox/"))
        # Nothing open yet: no empty Claim/Resolve buttons, no empty assignee menu.
        assert page.locator("#conv-list .conv").first.is_visible()
        assert not page.locator("#btn-claim").is_visible()
        assert not page.locator("#btn-resolve").is_visible()
        assert not page.locator("#assign-select").is_visible()

        # The new customer is listed by their number as people write it.
        row = page.locator(".conv", has_text=formatted)
        row.wait_for()
        assert customer.phone_number not in page.locator("#conv-list").inner_text()
        row.click()
        page.locator(".bubble.theirs", has_text="pünktlich").wait_for()
        details = page.locator("#details")
        assert formatted in details.inner_text()
        assert "null" not in details.inner_text()
        assert "undefined" not in page.locator("#inbox").inner_text()
        assert page.locator("#btn-claim").is_visible() and page.locator("#btn-claim").inner_text().strip()
        assert page.locator("#btn-resolve").is_visible() and page.locator("#btn-resolve").inner_text().strip()
    finally:
        context.close()


@pytest.mark.browser
def test_inbox_times_follow_the_page_language_not_the_browser(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    name = unique("Zeit ")
    customer = make_customer(name)
    with tenant_context(live_db.business_a):
        message_send_customer(business=live_db.business_a, customer=customer, body="Wann landet AU 7?")
    # An English-speaking browser (12-hour clock) reading the German page.
    context = browser.new_context(locale="en-US")
    context.add_cookies(
        signed_in_page_cookies(session_key(user=live_db.agent_a))
        + [{"name": settings.LANGUAGE_COOKIE_NAME, "value": "de", "domain": f".{settings.PARLEY_DOMAIN}", "path": "/"}]
    )
    page = context.new_page()
    page.set_default_timeout(15000)
    try:
        page.goto(live_server_process.business_url(live_db.business_a, "/inbox/"))
        assert page.locator("html").get_attribute("lang") == "de"
        time_label = page.locator(".conv", has_text=name).locator(".conv-time")
        time_label.wait_for()
        text = time_label.inner_text()
        assert not re.search(r"AM|PM", text), text
        assert re.search(r"\d{2}:\d{2}", text), text
    finally:
        context.close()


def signed_in_page_cookies(session: str) -> list[dict[str, str]]:
    return [
        {"name": settings.SESSION_COOKIE_NAME, "value": session, "domain": f".{settings.PARLEY_DOMAIN}", "path": "/"}
    ]
