"""The inbox's thread and composer in a browser: who a message is from, and the note toggle."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django_tenants.utils import tenant_context
from playwright.sync_api import expect

from messaging.group_commit import send_message
from messaging.sending import check_system_send
from messaging.services import message_send_customer, message_send_template
from tests.conftest import LiveServer, World, unique
from tests.messaging.conftest import make_customer, session_key
from tests.messaging.test_browser import signed_in_page


@pytest.mark.browser
def test_automatic_and_api_messages_are_not_labelled_you(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    business = live_db.business_a
    customer = make_customer(unique("Nachts "))
    with tenant_context(business):
        conversation_id = message_send_customer(
            business=business, customer=customer, body="Anyone there at night?"
        ).message.conversation_id
        # The away message goes out as the business's automatic reply (author_kind "system").
        away = check_system_send(
            conversation_id=conversation_id, body="We are closed. We reply from 8:00.", client_msg_id=unique("away:")
        )
        send_message(business=business, request=away)
        message_send_template(
            business=business,
            customer=customer,
            template_name="flight_update",
            body="AU 412 now leaves at 9:50.",
            category="utility",
            author_key="api:test",
        )
    context, page = signed_in_page(browser, session_key(user=live_db.agent_a))
    try:
        page.goto(live_server_process.business_url(business, f"/inbox/#c{conversation_id}"))
        author = ".bubble-meta > span:first-child"  # the author, then the time
        expect(page.locator(".bubble.mine", has_text="We are closed").locator(author)).to_have_text("Automatic reply")
        expect(page.locator(".bubble.mine", has_text="now leaves at 9:50").locator(author)).to_have_text("API")
        expect(page.locator(".bubble.theirs", has_text="Anyone there").locator(author)).to_have_text(
            customer.display_name
        )
        # The agent's own reply still carries their name.
        page.get_by_role("textbox", name="Message").fill("Good morning, how can I help?")
        page.keyboard.press("Enter")
        mine = page.locator(".bubble.mine", has_text="Good morning")
        mine.locator(".ticks[data-status=sent], .ticks[data-status=delivered], .ticks[data-status=read]").wait_for()
        expect(mine.locator(author)).to_have_text(live_db.agent_a.get_short_name())
        # A reply to the away message names it so, in the composer and in the sent reply's quote.
        page.locator(".bubble.mine", has_text="We are closed").get_by_role("button", name="Reply").click()
        expect(page.locator(".composer-quote")).to_contain_text("Replying to Automatic reply")
        page.get_by_role("textbox", name="Message").fill("We are open now.")
        page.keyboard.press("Enter")
        quote = page.locator(".bubble.mine", has_text="We are open now.").locator(".bubble-quote strong")
        expect(quote).to_have_text("Automatic reply")
    finally:
        context.close()


@pytest.mark.browser
def test_the_internal_note_toggle_resets_after_sending_a_note(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    business = live_db.business_a
    customer = make_customer(unique("Notiz "))
    with tenant_context(business):
        conversation_id = message_send_customer(
            business=business, customer=customer, body="Where is my refund?"
        ).message.conversation_id
    context, page = signed_in_page(browser, session_key(user=live_db.agent_a))
    try:
        page.goto(live_server_process.business_url(business, f"/inbox/#c{conversation_id}"))
        page.locator(".bubble.theirs", has_text="Where is my refund?").wait_for()
        note_toggle = page.get_by_label("Internal note")
        note_toggle.check()
        page.get_by_role("textbox", name="Message").fill("Refund approved by finance yesterday.")
        page.keyboard.press("Enter")
        expect(page.locator(".bubble.note", has_text="Refund approved")).to_have_count(1)
        expect(note_toggle).not_to_be_checked()
        # So the next message reaches the customer.
        page.get_by_role("textbox", name="Message").fill("Your refund is on its way.")
        page.keyboard.press("Enter")
        reply = page.locator(".bubble.mine", has_text="Your refund is on its way.")
        reply.locator(".ticks[data-status=sent], .ticks[data-status=delivered], .ticks[data-status=read]").wait_for()
        expect(reply).not_to_have_class(re.compile(r"\bnote\b"))
    finally:
        context.close()
