"""In a browser: a note with an @mention reaches the other agent live (bell and list), a canned
reply expands from /shortcut with the contact's name, a macro runs in one click, labels show in
the list, and the search panel finds a message by a German word's stem."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django_tenants.utils import tenant_context
from playwright.sync_api import expect

from collab.models import AgentNotification, CannedReply, ConversationLabel, Label, Macro
from messaging.models import Conversation, Message
from messaging.services import message_send_customer
from tests.conftest import LiveServer, World, unique
from tests.messaging.conftest import make_customer, session_key
from tests.messaging.test_browser import signed_in_page


@pytest.mark.browser
def test_mention_canned_reply_macro_labels_and_search(
    live_db: World, live_server_process: LiveServer, browser: Any, temp_agent: Any
) -> None:
    business = live_db.business_a
    first, _ = temp_agent()
    second, _ = temp_agent()
    first.full_name, second.full_name = unique("Jonas "), unique("Mia ")
    first.save(update_fields=["full_name"])
    second.save(update_fields=["full_name"])
    contact_name = unique("Sophie ")
    customer = make_customer(contact_name)
    word = unique("zug")
    with tenant_context(business):
        result = message_send_customer(
            business=business, customer=customer, body=f"Mein Koffer ist nicht angekommen, Flüge {word}"
        )
        conversation_id = result.message.conversation_id
        label = Label.objects.create(name=unique("Gepäck"), colour="orange")
        reply = CannedReply.objects.create(
            shortcut=unique("bag"), title="Lost bag", body="Sorry {{first_name}}, we trace your bag."
        )
        macro = Macro.objects.create(
            name=unique("Trace "),
            actions={"labels": [label.pk], "canned_reply": None, "assign": "me", "status": "pending"},
        )
    contexts = []
    try:
        pages = []
        for agent in (first, second):
            context, page = signed_in_page(browser, session_key(user=agent))
            contexts.append(context)
            page.goto(live_server_process.business_url(business, f"/inbox/#c{conversation_id}"))
            pages.append(page)
        one, two = pages
        expect(one.locator("#thread")).to_contain_text("Koffer")
        expect(two.locator("#bell-count")).to_be_hidden()

        # @mention: type "@" and the start of the name, pick the suggestion, send as a note.
        one.locator("#composer-note").check()
        box = one.locator("#composer-body")
        box.click()
        box.press_sequentially("Bitte prüfen @" + second.full_name.split()[0][:3])
        expect(one.locator("#composer-suggest")).to_contain_text(second.full_name)
        box.press("Enter")
        expect(box).to_have_value(f"Bitte prüfen @{second.full_name} ")
        box.press("Enter")
        # ...reaches the other agent live: the bell counts it and lists it, no reload.
        expect(two.locator("#bell-count")).to_have_text("1")
        two.locator("#bell").click()
        expect(two.locator("#bell-pop")).to_contain_text(first.full_name)
        expect(two.locator("#bell-pop")).to_contain_text(contact_name)

        # Canned reply: /shortcut expands with the contact's first name.
        one.locator("#composer-note").uncheck()
        box.fill("")
        box.press_sequentially("/" + reply.shortcut[:5])
        option = one.locator("#composer-suggest li", has_text=reply.shortcut)
        expect(option).to_be_visible()
        option.click()
        expect(box).to_have_value(f"Sorry {contact_name.split()[0]}, we trace your bag.")
        box.press("Enter")

        def replies() -> int:
            with tenant_context(business):
                return Message.objects.filter(conversation_id=conversation_id, direction="out").count()

        deadline = time.monotonic() + 15
        while replies() == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert replies() == 1

        # Macro: one click labels, assigns and sets the status; the list shows the label (any
        # status: the list's default filter is "open" and the macro makes it pending).
        for page in pages:
            page.locator("#inbox-status").select_option("")
        one.locator("#macro-select").select_option(str(macro.pk))
        one.locator("#macro-apply").click()
        expect(one.locator("#macro-status")).not_to_have_text("…")
        expect(one.locator(f'#conv-list [data-conversation="{conversation_id}"] .label-chip')).to_have_text(label.name)
        expect(two.locator(f'#conv-list [data-conversation="{conversation_id}"] .label-chip')).to_have_text(label.name)
        with tenant_context(business):
            conversation = Conversation.objects.get(pk=conversation_id)
            assert conversation.status == "pending" and conversation.assignee_id == first.pk
            assert ConversationLabel.objects.filter(conversation=conversation, label=label).exists()

        # Search: a German plural finds the stem, filtered by the label.
        two.locator("#search-panel summary").click()
        two.locator("#search-q").fill(word)
        two.locator("#search-label").select_option(str(label.pk))
        two.locator("#search-form button[type=submit]").click()
        expect(two.locator(f'#search-list [data-conversation="{conversation_id}"]')).to_be_visible()
        two.locator(f'#search-list [data-conversation="{conversation_id}"]').click()
        expect(two.locator("#thread-h")).to_have_text(contact_name)
    finally:
        for context in contexts:
            context.close()
        with tenant_context(business):
            AgentNotification.objects.filter(user__in=[first, second]).delete()
