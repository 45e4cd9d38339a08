"""A tap is a press and a release on the same element. The inbox redraws its list and thread
when a frame comes (several times a second on a busy day); a redraw between the press and the
release replaced the pressed element and the browser dropped the click, so the agent's tap did
nothing (and a CI run's phone test failed when its tap met the page's first presence frame).
While a pointer is pressed, the redraw now waits for the release (realtime.js `pressHold`)."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import tenant_context

from messaging.services import message_send_customer
from tests.conftest import LiveServer, World, unique
from tests.messaging.conftest import make_customer, session_key
from tests.messaging.test_browser import signed_in_page

# Every row and bubble drawn now carries a mark a redraw would lose.
MARK = "() => document.querySelectorAll('#conv-list .conv, #thread .bubble').forEach((e) => { e.dataset.drawn = 'before'; })"


def _press(page: Any, locator: Any) -> None:
    # Pressed once the page's own loads are done: the details pane's macros, labels and SLA
    # arrive after the thread and push it down, and a release must land where the press did.
    page.wait_for_load_state("networkidle")
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()


def _conversation(world: World, name: str, body: str) -> tuple[Any, int]:
    customer = make_customer(name)
    with tenant_context(world.business_a):
        sent = message_send_customer(business=world.business_a, customer=customer, body=body)
    return customer, sent.message.conversation_id


@pytest.mark.browser
def test_a_tap_on_a_conversation_opens_it_though_the_list_redraws_between_press_and_release(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    name = unique("Tap ")
    _customer, conversation_id = _conversation(live_db, name, "Is my flight on time?")
    context, page = signed_in_page(browser, session_key(user=live_db.agent_a))
    other = None
    try:
        page.goto(live_server_process.business_url(live_db.business_a, "/inbox/"))
        page.wait_for_function("() => document.getElementById('inbox-online').textContent !== ''")
        row = page.locator(f'#conv-list .conv[data-conversation="{conversation_id}"]')
        online = page.locator("#inbox-online").inner_text()
        page.evaluate(MARK)
        _press(page, row)
        # The owner opens the inbox elsewhere: the agent's page gets a presence frame, which
        # redraws the list. Released once the page has handled it (its online line changed).
        other, owner_page = signed_in_page(browser, session_key(user=live_db.owner_a))
        owner_page.goto(live_server_process.business_url(live_db.business_a, "/inbox/"))
        page.wait_for_function("(before) => document.getElementById('inbox-online').textContent !== before", arg=online)
        page.mouse.up()

        page.locator(".bubble.theirs", has_text="Is my flight on time?").wait_for()
        assert page.locator("#thread-h").inner_text() == name
        # The redraw that waited ran after the release: the row is drawn anew, marked as open.
        page.locator(f'#conv-list .conv[data-conversation="{conversation_id}"][aria-current="true"]').wait_for()
        assert row.get_attribute("data-drawn") is None
    finally:
        if other is not None:
            other.close()
        context.close()


@pytest.mark.browser
def test_a_tap_on_reply_takes_though_a_new_message_redraws_the_thread_between_press_and_release(
    live_db: World, live_server_process: LiveServer, browser: Any
) -> None:
    customer, conversation_id = _conversation(live_db, unique("Reply Tap "), "First question")
    context, page = signed_in_page(browser, session_key(user=live_db.agent_a))
    try:
        page.goto(live_server_process.business_url(live_db.business_a, f"/inbox/#c{conversation_id}"))
        bubble = page.locator(".bubble.theirs", has_text="First question")
        bubble.wait_for()
        # Opened by its link, the thread has collab.js's parts too (macros, labels, SLA): that
        # module once missed the conversation opened before it listened, and drew them with the
        # next update instead, pushing the thread down under the agent's pointer.
        page.wait_for_load_state("networkidle")
        assert page.locator("#collab-thread").get_attribute("hidden") is None
        page.evaluate(MARK)
        _press(page, bubble.get_by_role("button", name="Reply"))
        with tenant_context(live_db.business_a):
            message_send_customer(business=live_db.business_a, customer=customer, body="Second question")
        # The page has handled the new message's frame once it announced it to screen readers.
        page.locator("#thread-announce", has_text="Second question").wait_for(state="attached")
        page.mouse.up()

        page.locator(".composer-quote", has_text="First question").wait_for()
        page.locator(".bubble.theirs", has_text="Second question").wait_for()
        assert page.locator(".bubble.theirs", has_text="First question").get_attribute("data-drawn") is None
    finally:
        context.close()
