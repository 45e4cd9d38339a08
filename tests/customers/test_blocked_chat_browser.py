"""A blocked business's chat page in a browser: the history, no composer, and the unblock."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from customers.models import Block
from customers.services import customer_block
from tests.conftest import LiveServer, World, unique
from tests.customers.conftest import make_customer, talk
from tests.messaging.conftest import session_key
from tests.messaging.test_browser import signed_in_page


@pytest.mark.browser
def test_blocked_chat_page_offers_the_unblock_and_comes_back_writable(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    business = live_db.business_a
    customer = make_customer(unique("Blockiert "))
    talk(business, customer, "Please stop the newsletter.")
    customer_block(customer=customer, business=business)
    context, page = signed_in_page(browser, session_key(customer=customer))
    try:
        chat_url = live_server_process.business_url(business, "/chat/")
        page.goto(chat_url)
        page.locator(".bubble.mine", has_text="Please stop the newsletter.").wait_for()  # the history still shows
        expect(page.get_by_role("textbox", name="Message")).to_be_hidden()
        expect(page.get_by_text("may send you offers.")).to_have_count(0)
        # The unblock (a form to the public host) brings the customer back here, able to write.
        page.get_by_role("button", name=f"Unblock {business.display_name}").click()
        page.wait_for_url(chat_url)
        expect(page.get_by_role("textbox", name="Message")).to_be_visible()
        expect(page.locator('[data-testid="chat-blocked"]')).to_have_count(0)
        assert not Block.objects.filter(customer=customer, business=business).exists()
    finally:
        context.close()
        Block.objects.filter(customer=customer).delete()  # committed (live_db): leave no block behind
