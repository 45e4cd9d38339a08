"""A customer and an agent in two browser contexts, talking live through the real server."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django_tenants.utils import tenant_context
from playwright.sync_api import expect

from messaging.services import message_send_customer
from tests.conftest import LiveServer, World, unique
from tests.messaging.conftest import make_customer, session_key


def signed_in_page(browser: Any, session: str) -> tuple[Any, Any]:
    context = browser.new_context()
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "domain": f".{settings.PARLEY_DOMAIN}", "path": "/"}]
    )
    page = context.new_page()
    page.set_default_timeout(15000)
    return context, page


@pytest.mark.browser
def test_customer_and_agent_chat_live_with_read_ticks(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    name = unique("Kundin ")
    customer = make_customer(name)
    customer_context, customer_page = signed_in_page(browser, session_key(customer=customer))
    agent_context, agent_page = signed_in_page(browser, session_key(user=live_db.agent_a))
    try:
        agent_page.goto(live_server_process.business_url(live_db.business_a, "/inbox/"))
        customer_page.goto(live_server_process.business_url(live_db.business_a, "/chat/"))
        assert customer_page.get_by_role("heading", name=live_db.business_a.display_name).is_visible()

        customer_page.get_by_role("textbox", name="Message").fill("Can I change my seat on AU 412?")
        customer_page.get_by_role("button", name="Send", exact=True).click()
        mine = customer_page.locator(".bubble.mine", has_text="Can I change my seat on AU 412?")
        # Accepted by the server (the agent's open inbox may already have marked it delivered).
        mine.locator(".ticks[data-status=sent], .ticks[data-status=delivered]").wait_for()

        # The agent sees it arrive live, without reloading, and opens it.
        row = agent_page.locator(".conv", has_text=name)
        row.wait_for()
        assert row.locator(".unread-count").inner_text() == "1"
        agent_page.get_by_label("Search conversations").fill(name)
        # expect(), not wait_for_function: the CSP forbids the eval a string predicate needs.
        expect(agent_page.locator("#conv-list .conv")).to_have_count(1, timeout=15000)
        row.click()
        agent_page.locator(".bubble.theirs", has_text="Can I change my seat on AU 412?").wait_for()

        # Opening it is reading it: the customer's ticks turn to "read".
        mine.locator(".ticks[data-status=read]").wait_for()

        agent_page.get_by_role("textbox", name="Message").fill("Yes, seat 3C is free. Shall I book it?")
        agent_page.get_by_role("button", name="Send", exact=True).click()
        customer_page.locator(".bubble.theirs", has_text="Shall I book it?").wait_for()
        # The customer's page shows it, so the agent sees it was read.
        agent_page.locator(".bubble.mine", has_text="Shall I book it?").locator(".ticks[data-status=read]").wait_for()

        # Reloading either page loses nothing.
        customer_page.reload()
        customer_page.locator(".bubble.mine", has_text="Can I change my seat").locator(
            ".ticks[data-status=read]"
        ).wait_for()
        customer_page.locator(".bubble.theirs", has_text="Shall I book it?").wait_for()
        agent_page.reload()
        agent_page.locator(".bubble.theirs", has_text="Can I change my seat").wait_for()
        agent_page.locator(".bubble.mine", has_text="Shall I book it?").wait_for()

        # And the conversation keeps going live after the reloads.
        customer_page.get_by_role("textbox", name="Message").fill("Yes please!")
        customer_page.keyboard.press("Enter")
        agent_page.locator(".bubble.theirs", has_text="Yes please!").wait_for()
    finally:
        customer_context.close()
        agent_context.close()


@pytest.mark.browser
# The customer writes from this process and the agent replies through the server, which keeps the
# real clock: travelled a day or more into the past (--today), the service window this process
# opened had already closed for the server, and the reply was refused.
@pytest.mark.real_clock
def test_me_page_lists_conversations_live(live_db: World, live_server_process: LiveServer, browser: Any) -> None:
    customer = make_customer(unique("Me "))
    with tenant_context(live_db.business_a):
        message = message_send_customer(
            business=live_db.business_a, customer=customer, body="Is gate B12 right?"
        ).message
    customer_context, customer_page = signed_in_page(browser, session_key(customer=customer))
    agent_context, agent_page = signed_in_page(browser, session_key(user=live_db.agent_a))
    try:
        customer_page.goto(live_server_process.public_url("/me/"))
        thread = customer_page.locator(f'#me-conversations li[data-business="{live_db.business_a.pk}"]')
        thread.wait_for()
        assert thread.locator(".unread-count").count() == 0

        agent_page.goto(live_server_process.business_url(live_db.business_a, f"/inbox/#c{message.conversation_id}"))
        agent_page.locator(".bubble.theirs", has_text="gate B12").wait_for()
        agent_page.get_by_role("textbox", name="Message").fill("Yes, B12, boarding at 9:50.")
        agent_page.keyboard.press("Enter")

        # No reload: the list updates itself, and keyboard focus on the link survives the swap.
        thread.get_by_role("link", name=live_db.business_a.display_name).focus()
        thread.locator(".unread-count", has_text="1 unread").wait_for()
        focused = customer_page.evaluate("document.activeElement.id")
        assert focused == f"thread-link-{live_db.business_a.pk}"
        thread.get_by_role("link", name=live_db.business_a.display_name).click()
        customer_page.locator(".bubble.theirs", has_text="boarding at 9:50").wait_for()
    finally:
        customer_context.close()
        agent_context.close()


@pytest.mark.browser
def test_inbox_keyboard_tabs_and_spoken_new_messages(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    customer = make_customer(unique("Ansage "))
    with tenant_context(live_db.business_a):
        message = message_send_customer(business=live_db.business_a, customer=customer, body="first").message
    agent_context, agent_page = signed_in_page(browser, session_key(user=live_db.agent_a))
    customer_context, customer_page = signed_in_page(browser, session_key(customer=customer))
    try:
        agent_page.goto(live_server_process.business_url(live_db.business_a, f"/inbox/#c{message.conversation_id}"))
        agent_page.locator(".bubble.theirs", has_text="first").wait_for()

        # The tab list is one tab stop; arrow keys move the selection.
        all_tab = agent_page.get_by_role("tab", name="All")
        assert all_tab.get_attribute("tabindex") == "0"
        all_tab.focus()
        agent_page.keyboard.press("ArrowLeft")
        unassigned = agent_page.get_by_role("tab", name="Unassigned")
        assert unassigned.get_attribute("aria-selected") == "true"
        assert agent_page.evaluate("document.activeElement.dataset.tab") == "unassigned"
        assert all_tab.get_attribute("tabindex") == "-1"

        # A message arriving live in the open conversation is spoken through the live region,
        # and re-rendering the list does not take keyboard focus away from its conversation.
        row = agent_page.locator(f'#conv-list [data-conversation="{message.conversation_id}"]')
        row.focus()
        customer_page.goto(live_server_process.business_url(live_db.business_a, "/chat/"))
        customer_page.get_by_role("textbox", name="Message").fill("second, live")
        customer_page.keyboard.press("Enter")
        agent_page.locator(".bubble.theirs", has_text="second, live").wait_for()
        row.locator(".conv-preview", has_text="second, live").wait_for()
        assert agent_page.evaluate("document.activeElement.dataset.conversation") == str(message.conversation_id)
        expect(agent_page.locator("#thread-announce")).to_contain_text("second, live", timeout=15000)
        assert agent_page.locator("#thread").get_attribute("aria-live") is None

        # The agent typing replaces the customer's verification line; only the typing text is live.
        # (Locator expectations, not wait_for_function: the page's CSP forbids evaluating strings.)
        agent_page.get_by_role("textbox", name="Message").fill("One moment")
        expect(customer_page.locator("#chat-typing")).to_contain_text("typing", timeout=15000)
        assert customer_page.locator("#chat-verified").is_hidden()
        customer_page.locator("#chat-verified").wait_for(state="visible", timeout=8000)
        assert customer_page.locator("#chat-typing").inner_text() == ""
    finally:
        agent_context.close()
        customer_context.close()
